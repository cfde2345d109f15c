// safetensors files, read through a read-only memory map and validated in full before any tensor is used:
// 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data area. Torch-free; the LibTorch
// bridge (read into an at::Tensor, write a file) is safetensors_torch.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hedgelab::io {

// The element types of the safetensors format that HedgeLab recognises. F8_* and U16/U32/U64 are accepted in
// a header (so a file holding them still opens) but refused when a tensor of that type is loaded.
enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2, U16, U32, U64 };

// The format's spelling ("F32", "BF16", ...).
const char* dtype_name(DType dtype);
// nullopt for a name the format does not define (or HedgeLab does not know).
std::optional<DType> dtype_from_name(std::string_view name);
// Bytes per element.
std::size_t dtype_itemsize(DType dtype);
// Whether read_tensor can turn this dtype into an at::Tensor.
bool dtype_loadable(DType dtype);
bool dtype_is_floating(DType dtype);
// PyTorch's spelling ("float16", "bfloat16", "int64", ...), for summaries shown to users.
const char* dtype_torch_name(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data area, [begin, end)
  uint64_t end = 0;

  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// Upper bound on the header length, as the reference implementation uses: a larger one is refused unread.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;
// Deepest JSON nesting accepted in a header (a valid one needs 3: header, tensor entry, shape).
inline constexpr int kSafetensorsMaxHeaderDepth = 8;

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws hedgelab::Error naming the file (and tensor) on any inconsistency.
  static SafetensorsFile open(const std::filesystem::path& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::filesystem::path& path() const { return path_; }
  // Sorted by name.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorInfo* find(std::string_view name) const;
  // The tensor's first byte inside the mapping (not aligned in general); valid while this object lives.
  const std::byte* data(const TensorInfo& info) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t header_size() const { return header_size_; }  // N
  uint64_t data_size() const { return data_size_; }      // bytes after the header
  uint64_t file_size() const { return file_size_; }

 private:
  SafetensorsFile() = default;
  void unmap() noexcept;

  std::filesystem::path path_;
  const std::byte* map_ = nullptr;
  uint64_t file_size_ = 0;
  uint64_t header_size_ = 0;
  uint64_t data_size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A tensor name as it appears in messages: JSON-quoted, so control characters cannot break the line.
std::string quote_tensor_name(std::string_view name);
// "[4, 4]"
std::string format_shape(const std::vector<int64_t>& shape);

}  // namespace hedgelab::io
