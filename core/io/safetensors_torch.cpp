#include "core/io/safetensors_torch.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "core/common/error.h"

namespace hedgelab::io {

namespace {

// c10 messages carry a backtrace on later lines; keep the first.
std::string first_line(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  for (char& c : line) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return line;
}

std::string errno_text(int err) {
  return std::strerror(err);
}

// Writes all of [p, p+n), retrying short writes and EINTR; returns 0 or an errno.
int write_all(int fd, const char* p, uint64_t n) {
  while (n > 0) {
    const std::size_t chunk = static_cast<std::size_t>(std::min<uint64_t>(n, uint64_t{1} << 30));
    const ssize_t w = ::write(fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    n -= static_cast<uint64_t>(w);
  }
  return 0;
}

// The temporary file: removed on destruction unless committed by a successful rename.
class TempFile {
 public:
  TempFile(const std::filesystem::path& target) {
    static std::atomic<uint64_t> counter{0};
    const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
    std::random_device rd;
    for (int attempt = 0; attempt < 100; ++attempt) {
      path_ = dir / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                     std::to_string(counter++) + "-" + std::to_string(rd() % 1000000));
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) return;
      if (errno != EEXIST) break;
    }
    const int err = errno;
    throw Error(dir.string(), "cannot create a file in this directory (" + errno_text(err) + ")");
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  int fd() const { return fd_; }
  const std::filesystem::path& path() const { return path_; }
  // Closes and reports the errno of close (delayed write errors surface there), 0 on success.
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }
  void commit() { committed_ = true; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

c10::ScalarType scalar_type_of(DType dtype, const std::string& where) {
  switch (dtype) {
    case DType::F64:
      return at::kDouble;
    case DType::F32:
      return at::kFloat;
    case DType::F16:
      return at::kHalf;
    case DType::BF16:
      return at::kBFloat16;
    case DType::I64:
      return at::kLong;
    case DType::I32:
      return at::kInt;
    case DType::I16:
      return at::kShort;
    case DType::I8:
      return at::kChar;
    case DType::U8:
      return at::kByte;
    case DType::BOOL:
      return at::kBool;
    default:
      break;
  }
  throw Error(
      where,
      std::string("dtype ") + dtype_name(dtype) +
          " is not supported for loading, expected F64, F32, F16, BF16, I64, I32, I16, I8, U8 or BOOL");
}

DType dtype_of(c10::ScalarType type, const std::string& where) {
  switch (type) {
    case at::kDouble:
      return DType::F64;
    case at::kFloat:
      return DType::F32;
    case at::kHalf:
      return DType::F16;
    case at::kBFloat16:
      return DType::BF16;
    case at::kLong:
      return DType::I64;
    case at::kInt:
      return DType::I32;
    case at::kShort:
      return DType::I16;
    case at::kChar:
      return DType::I8;
    case at::kByte:
      return DType::U8;
    case at::kBool:
      return DType::BOOL;
    default:
      break;
  }
  throw Error(where, std::string("dtype ") + c10::toString(type) +
                         " cannot be stored, expected float64/32/16, bfloat16, int64/32/16/8, uint8 or bool");
}

at::Tensor read_tensor(const SafetensorsFile& file, const TensorInfo& info, c10::ScalarType out) {
  const std::string where = file.path().string() + ": tensor " + quote_tensor_name(info.name);
  const c10::ScalarType stored = scalar_type_of(info.dtype, where);
  const std::byte* src = file.data(info);  // checks the span lies inside this file
  // Bools are read as bytes first: a byte other than 0/1 in a torch bool tensor is undefined behaviour.
  const c10::ScalarType raw_type = stored == at::kBool ? at::kByte : stored;
  at::Tensor raw = at::empty(info.shape, at::TensorOptions().dtype(raw_type));
  if (static_cast<uint64_t>(raw.numel()) * raw.element_size() != info.nbytes()) {
    throw Error(where, "span of " + std::to_string(info.nbytes()) + " bytes does not match shape " +
                           format_shape(info.shape) + " of " + dtype_name(info.dtype));
  }
  if (info.nbytes() > 0) std::memcpy(raw.data_ptr(), src, static_cast<std::size_t>(info.nbytes()));
  try {
    if (stored == at::kBool) raw = raw.ne(0);
    return raw.to(out);
  } catch (const c10::Error& e) {
    throw Error(where, std::string("cannot convert ") + dtype_name(info.dtype) + " to " + c10::toString(out) +
                           ": " + first_line(e.what()));
  }
}

void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& named,
                      const std::map<std::string, std::string>& metadata) {
  using nlohmann::json;
  const std::string file = path.string();

  // Prepare everything that can fail before touching the disk.
  struct Item {
    const std::string* name;
    at::Tensor tensor;
    DType dtype;
  };
  std::vector<Item> items;
  items.reserve(named.size());
  std::set<std::string> seen;
  for (const auto& [name, tensor] : named) {
    const std::string where = file + ": tensor " + quote_tensor_name(name);
    if (name == "__metadata__") throw Error(where, "the name __metadata__ is reserved by the format");
    if (!seen.insert(name).second) throw Error(where, "given twice, expected unique tensor names");
    if (!tensor.defined()) throw Error(where, "undefined tensor, expected a tensor with data");
    if (tensor.layout() != at::kStrided || tensor.is_quantized()) {
      throw Error(where, "expected a dense (strided, non-quantized) tensor");
    }
    const DType dtype = dtype_of(tensor.scalar_type(), where);
    at::Tensor cpu;
    try {
      cpu = tensor.detach().to(at::kCPU).contiguous();
    } catch (const c10::Error& e) {
      throw Error(where, "cannot copy to a contiguous CPU tensor: " + first_line(e.what()));
    }
    items.push_back({&name, std::move(cpu), dtype});
  }
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return *a.name < *b.name; });

  json header = json::object();
  json meta = json::object();
  for (const auto& [k, v] : metadata)
    meta[k] = v;
  if (!meta.contains("format")) meta["format"] = "pt";
  header["__metadata__"] = std::move(meta);
  uint64_t offset = 0;
  for (const Item& item : items) {
    const uint64_t bytes = static_cast<uint64_t>(item.tensor.numel()) * item.tensor.element_size();
    json entry = json::object();
    entry["dtype"] = dtype_name(item.dtype);
    entry["shape"] = item.tensor.sizes().vec();
    entry["data_offsets"] = {offset, offset + bytes};
    header[*item.name] = std::move(entry);
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    throw Error(file, "a tensor name or metadata entry is not valid UTF-8");
  }
  // Spaces after the JSON keep the data area 8-byte aligned (8 + N is a multiple of 8), as the format
  // advises.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string prefix(8, '\0');
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i)
    prefix[i] = static_cast<char>((n >> (8 * i)) & 0xff);

  TempFile tmp(path);
  const auto fail = [&](const std::string& what, int err) {
    throw Error(file, what + " (" + errno_text(err) + ")");
  };
  if (int err = write_all(tmp.fd(), prefix.data(), prefix.size())) fail("cannot write", err);
  if (int err = write_all(tmp.fd(), text.data(), text.size())) fail("cannot write", err);
  for (const Item& item : items) {
    const uint64_t bytes = static_cast<uint64_t>(item.tensor.numel()) * item.tensor.element_size();
    if (bytes == 0) continue;
    if (int err = write_all(tmp.fd(), static_cast<const char*>(item.tensor.data_ptr()), bytes)) {
      fail("cannot write tensor " + quote_tensor_name(*item.name), err);
    }
  }
  if (::fsync(tmp.fd()) != 0) fail("cannot fsync", errno);
  if (int err = tmp.close()) fail("cannot close", err);
  if (::rename(tmp.path().c_str(), path.c_str()) != 0)
    fail("cannot rename the temporary file over it", errno);
  tmp.commit();
  // Persist the rename itself; failure here cannot be undone, and the file is already complete.
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace hedgelab::io
