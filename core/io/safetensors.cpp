#include "core/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/common/error.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors stores little-endian data; HedgeLab reads it in place on little-endian hosts only"
#endif

namespace hedgelab::io {

namespace {

using nlohmann::json;

struct DTypeRow {
  DType dtype;
  const char* name;
  const char* torch_name;
  std::size_t itemsize;
  bool loadable;
  bool floating;
};

constexpr DTypeRow kDTypes[] = {
    {DType::F64, "F64", "float64", 8, true, true},
    {DType::F32, "F32", "float32", 4, true, true},
    {DType::F16, "F16", "float16", 2, true, true},
    {DType::BF16, "BF16", "bfloat16", 2, true, true},
    {DType::I64, "I64", "int64", 8, true, false},
    {DType::I32, "I32", "int32", 4, true, false},
    {DType::I16, "I16", "int16", 2, true, false},
    {DType::I8, "I8", "int8", 1, true, false},
    {DType::U8, "U8", "uint8", 1, true, false},
    {DType::BOOL, "BOOL", "bool", 1, true, false},
    {DType::F8_E4M3, "F8_E4M3", "float8_e4m3fn", 1, false, true},
    {DType::F8_E5M2, "F8_E5M2", "float8_e5m2", 1, false, true},
    {DType::U16, "U16", "uint16", 2, false, false},
    {DType::U32, "U32", "uint32", 4, false, false},
    {DType::U64, "U64", "uint64", 8, false, false},
};

const DTypeRow& row(DType dtype) {
  for (const auto& r : kDTypes) {
    if (r.dtype == dtype) return r;
  }
  throw Error("safetensors", "internal: unknown DType value " + std::to_string(static_cast<int>(dtype)));
}

// nlohmann's messages may quote raw input (newlines, control bytes); keep the report on one line.
std::string one_line(std::string s) {
  if (s.rfind("[json.exception.", 0) == 0 && s.find("] ") != std::string::npos) s.erase(0, s.find("] ") + 2);
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return s;
}

std::string errno_text(int err) {
  return std::strerror(err);
}

uint64_t read_u64_le(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i)
    v = (v << 8) | static_cast<uint64_t>(std::to_integer<uint8_t>(p[i]));
  return v;
}

// A JSON value that is a non-negative integer (nlohmann keeps integers written without '.'/exponent as ints).
std::optional<uint64_t> as_unsigned(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i >= 0) return static_cast<uint64_t>(i);
  }
  return std::nullopt;
}

std::string where_tensor(const std::string& file, const std::string& name) {
  return file + ": tensor " + quote_tensor_name(name);
}

TensorInfo parse_entry(const std::string& file, const std::string& name, const json& entry) {
  const std::string where = where_tensor(file, name);
  if (!entry.is_object()) {
    throw Error(where, std::string("entry must be an object {\"dtype\", \"shape\", \"data_offsets\"}, got ") +
                           entry.type_name());
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) throw Error(where, std::string("missing \"") + key + "\"");
  }
  TensorInfo info;
  info.name = name;

  const json& dtype = entry.at("dtype");
  if (!dtype.is_string()) {
    throw Error(where, std::string("dtype must be a string such as \"F32\", got ") + dtype.type_name());
  }
  const auto parsed = dtype_from_name(dtype.get_ref<const std::string&>());
  if (!parsed) {
    throw Error(where, "unknown dtype " + quote_tensor_name(dtype.get_ref<const std::string&>()) +
                           ", expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL");
  }
  info.dtype = *parsed;

  const json& shape = entry.at("shape");
  const char* shape_expected = "shape must be an array of non-negative integers";
  if (!shape.is_array()) throw Error(where, std::string(shape_expected) + ", got " + shape.type_name());
  uint64_t numel = 1;
  bool numel_overflow = false;
  for (const json& d : shape) {
    const auto dim = as_unsigned(d);
    if (!dim) throw Error(where, std::string(shape_expected) + ", got " + one_line(shape.dump()));
    if (*dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw Error(where, "shape dimension " + std::to_string(*dim) + " does not fit in int64");
    }
    info.shape.push_back(static_cast<int64_t>(*dim));
    if (__builtin_mul_overflow(numel, *dim, &numel)) numel_overflow = true;
  }
  uint64_t expected_bytes = 0;
  if (numel_overflow || numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_itemsize(info.dtype)), &expected_bytes)) {
    throw Error(where,
                "shape " + format_shape(info.shape) + " overflows: its byte size does not fit in 64 bits");
  }

  const json& offsets = entry.at("data_offsets");
  const char* offsets_expected = "data_offsets must be [begin, end], two non-negative integers";
  if (!offsets.is_array() || offsets.size() != 2) {
    throw Error(where, std::string(offsets_expected) + ", got " + one_line(offsets.dump()));
  }
  const auto begin = as_unsigned(offsets[0]);
  const auto end = as_unsigned(offsets[1]);
  if (!begin || !end) throw Error(where, std::string(offsets_expected) + ", got " + one_line(offsets.dump()));
  if (*begin > *end) {
    throw Error(where, "data_offsets [" + std::to_string(*begin) + ", " + std::to_string(*end) +
                           "] has begin > end, expected begin <= end");
  }
  info.begin = *begin;
  info.end = *end;
  if (info.end - info.begin != expected_bytes) {
    throw Error(where, "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                           "] span " + std::to_string(info.end - info.begin) + " bytes, expected " +
                           std::to_string(expected_bytes) + " (shape " + format_shape(info.shape) + " of " +
                           dtype_name(info.dtype) + ")");
  }
  return info;
}

}  // namespace

// ---- dtype helpers -------------------------------------------------------------------------------------

const char* dtype_name(DType dtype) {
  return row(dtype).name;
}
const char* dtype_torch_name(DType dtype) {
  return row(dtype).torch_name;
}
std::size_t dtype_itemsize(DType dtype) {
  return row(dtype).itemsize;
}
bool dtype_loadable(DType dtype) {
  return row(dtype).loadable;
}
bool dtype_is_floating(DType dtype) {
  return row(dtype).floating;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& r : kDTypes) {
    if (name == r.name) return r.dtype;
  }
  return std::nullopt;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;  // cannot overflow: open() checked the product
  return n;
}

std::string quote_tensor_name(std::string_view name) {
  return json(std::string(name)).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string format_shape(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// ---- SafetensorsFile -------------------------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept {
  *this = std::move(other);
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    file_size_ = std::exchange(other.file_size_, 0);
    header_size_ = std::exchange(other.header_size_, 0);
    data_size_ = std::exchange(other.data_size_, 0);
    tensors_ = std::move(other.tensors_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  unmap();
}

void SafetensorsFile::unmap() noexcept {
  if (map_) ::munmap(const_cast<std::byte*>(map_), static_cast<std::size_t>(file_size_));
  map_ = nullptr;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return (it != tensors_.end() && it->name == name) ? &*it : nullptr;
}

const std::byte* SafetensorsFile::data(const TensorInfo& info) const {
  // Guards against an info from another file, whose span might lie outside this mapping.
  if (info.begin > info.end || info.end > data_size_) {
    throw Error(where_tensor(path_.string(), info.name),
                "span [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                    "] lies outside this file's data area (" + std::to_string(data_size_) + " bytes)");
  }
  return map_ + 8 + header_size_ + info.begin;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string file = path.string();
  SafetensorsFile f;
  f.path_ = path;

  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw Error(file, "no such file or directory");
    throw Error(file, "cannot open for reading (" + errno_text(err) + ")");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(file, "cannot stat (" + errno_text(err) + ")");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(file, S_ISDIR(st.st_mode) ? "is a directory, expected a .safetensors file"
                                          : "is not a regular file, expected a .safetensors file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw Error(file, "file is " + std::to_string(size) +
                          " bytes, expected at least 8 (the header length) for a safetensors file");
  }
  void* m = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (m == MAP_FAILED) throw Error(file, "cannot memory-map (" + errno_text(map_err) + ")");
  f.map_ = static_cast<const std::byte*>(m);
  f.file_size_ = size;

  // From here on `f` unmaps on any throw.
  const uint64_t n = read_u64_le(f.map_);
  if (n > kSafetensorsMaxHeaderBytes) {
    throw Error(file, "header length " + std::to_string(n) + " exceeds the limit of " +
                          std::to_string(kSafetensorsMaxHeaderBytes) +
                          " bytes (corrupt or not safetensors?)");
  }
  if (n > size - 8) {
    throw Error(file, "header length " + std::to_string(n) + " needs " + std::to_string(n + 8) +
                          " bytes but the file has " + std::to_string(size) + " (truncated?)");
  }
  f.header_size_ = n;
  f.data_size_ = size - 8 - n;

  // Parse with a depth cap and duplicate-key detection; the callback throws before anything deep is built.
  std::set<std::string> top_keys;
  const auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= kSafetensorsMaxHeaderDepth) {
      throw Error(file, "header JSON is nested deeper than " + std::to_string(kSafetensorsMaxHeaderDepth) +
                            " levels, expected {name: {dtype, shape, data_offsets}}");
    }
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!top_keys.insert(parsed.get<std::string>()).second) {
        throw Error(file, "header has a duplicate key " + quote_tensor_name(parsed.get<std::string>()));
      }
    }
    return true;
  };
  const char* text = reinterpret_cast<const char*>(f.map_ + 8);
  json header;
  try {
    header = json::parse(text, text + n, callback, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::parse_error& e) {
    throw Error(file, "header is not valid JSON (byte " + std::to_string(e.byte) + " of " +
                          std::to_string(n) + "): " + one_line(e.what()));
  } catch (const json::exception& e) {
    throw Error(file, "header is not valid JSON: " + one_line(e.what()));
  }
  if (!header.is_object()) {
    throw Error(file, std::string("header must be a JSON object of tensors, got ") + header.type_name());
  }

  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      const json& meta = it.value();
      if (meta.is_null()) continue;
      if (!meta.is_object()) {
        throw Error(file + ": __metadata__",
                    std::string("expected an object of string to string, got ") + meta.type_name());
      }
      for (auto m = meta.begin(); m != meta.end(); ++m) {
        if (!m.value().is_string()) {
          throw Error(file + ": __metadata__." + one_line(m.key()),
                      std::string("expected a string value, got ") + m.value().type_name());
        }
        f.metadata_.emplace(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    f.tensors_.push_back(parse_entry(file, it.key(), it.value()));
  }
  std::sort(f.tensors_.begin(), f.tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });

  for (const TensorInfo& t : f.tensors_) {
    if (t.end > f.data_size_) {
      throw Error(where_tensor(file, t.name), "data_offsets [" + std::to_string(t.begin) + ", " +
                                                  std::to_string(t.end) + "] end past the data area (" +
                                                  std::to_string(f.data_size_) + " bytes; file truncated?)");
    }
  }

  // The data area must be tiled exactly: sorted spans start at 0, touch, and the last ends at the file's end.
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : f.tensors_)
    by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return std::tie(a->begin, a->end, a->name) < std::tie(b->begin, b->end, b->name);
  });
  uint64_t cursor = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo* t : by_offset) {
    if (t->begin < cursor) {
      throw Error(
          where_tensor(file, t->name),
          "data_offsets [" + std::to_string(t->begin) + ", " + std::to_string(t->end) + "] overlap " +
              (previous ? "tensor " + quote_tensor_name(previous->name) : std::string("another tensor")) +
              " (which ends at " + std::to_string(cursor) + "), expected contiguous spans");
    }
    if (t->begin > cursor) {
      throw Error(where_tensor(file, t->name), "data_offsets begin at " + std::to_string(t->begin) +
                                                   ", leaving a gap of " + std::to_string(t->begin - cursor) +
                                                   " bytes after offset " + std::to_string(cursor) +
                                                   ", expected contiguous spans");
    }
    cursor = t->end;
    previous = t;
  }
  if (cursor != f.data_size_) {
    throw Error(file, std::to_string(f.data_size_ - cursor) +
                          " trailing bytes after the last tensor (data area " + std::to_string(f.data_size_) +
                          " bytes, tensors cover " + std::to_string(cursor) + "), expected none");
  }
  return f;
}

}  // namespace hedgelab::io
