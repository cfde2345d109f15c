// Internal to sessions/ (never included by a public header): owning handles over HDF5 ids, calls whose
// failure becomes a one-line hedgelab::Error carrying HDF5's own reason, and the few dataset operations the
// writer and the reader share (extendible tables, row appends, attributes).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace hedgelab::sessions::h5 {

// Owns one HDF5 id and closes it with the matching H5?close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }
  // Closes now; returns false when HDF5 reported a failure (a close that flushes can fail on a full disk).
  bool reset() {
    bool ok = true;
    if (id_ >= 0 && close_) ok = close_(id_) >= 0;
    id_ = H5I_INVALID_HID;
    return ok;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

// Turns off HDF5's printing of its error stack to stderr; errors reach the caller as hedgelab::Error.
void silence_errors();
// HDF5's reasons for the failure just reported, innermost first, as one line ("" when the stack is empty).
std::string error_reason();
// Throw Error(where, what + " (" + HDF5's reason + ")") when the call failed.
hid_t check_id(hid_t id, const std::string& where, const std::string& what);
void check(herr_t status, const std::string& where, const std::string& what);

// Makes the Handle of one kind of id: file_handle(id) closes it with H5Fclose, and so on.
template <herr_t (*Close)(hid_t)>
struct HandleOf {
  Handle operator()(hid_t id) const { return Handle(id, Close); }
};
inline constexpr HandleOf<H5Fclose> file_handle{};
inline constexpr HandleOf<H5Gclose> group_handle{};
inline constexpr HandleOf<H5Dclose> dataset_handle{};
inline constexpr HandleOf<H5Tclose> type_handle{};
inline constexpr HandleOf<H5Sclose> space_handle{};
inline constexpr HandleOf<H5Pclose> plist_handle{};
inline constexpr HandleOf<H5Aclose> attribute_handle{};

// A fixed-length, null-padded string type of `bytes` bytes.
Handle string_type(size_t bytes);
// Copies `value` into a fixed-length field, zero-padded; Error(where, "...") when it does not fit.
void put_name(char* field, size_t field_bytes, const std::string& value, const std::string& where);
std::string get_name(const char* field, size_t field_bytes);

// Datasets growing along the first axis: [rows, dims...], chunked (chunk_rows × chunk_dims...). An empty
// `chunk_dims` means the whole row. `deflate` > 0 adds shuffle + deflate at that level: only for chunks
// written whole, once (a filtered chunk rewritten with more rows changes size and moves in the file).
struct TableSpec {
  std::vector<hsize_t> dims;  // shape of one row
  hsize_t chunk_rows = 256;
  std::vector<hsize_t> chunk_dims;  // chunk shape inside a row, same rank as dims
  int deflate = 0;
};
inline TableSpec table_spec(std::vector<hsize_t> dims, hsize_t chunk_rows) {
  TableSpec spec;
  spec.dims = std::move(dims);
  spec.chunk_rows = chunk_rows;
  return spec;
}
Handle create_table(hid_t loc, const std::string& name, hid_t file_type, const TableSpec& spec,
                    const std::string& where);
// A dataset of fixed shape `dims` (contiguous, space allocated at once) for values rewritten in place.
Handle create_fixed(hid_t loc, const std::string& name, hid_t file_type, const std::vector<hsize_t>& dims,
                    const std::string& where);
// A fixed one-dimensional dataset holding `bytes` (uint8), written once.
void write_bytes_dataset(hid_t loc, const std::string& name, const std::string& bytes,
                         const std::string& where);
std::string read_bytes_dataset(hid_t loc, const std::string& name, const std::string& where);

std::vector<hsize_t> shape(hid_t dataset, const std::string& where);
hsize_t rows(hid_t dataset, const std::string& where);
// Grows `dataset` to `first + count` rows when it is shorter, then writes rows [first, first + count).
void write_rows(hid_t dataset, hid_t mem_type, hsize_t first, hsize_t count, const void* data,
                const std::string& where);
// Reads rows [first, first + count) in full; `out` holds count × (product of the row shape) elements.
void read_rows(hid_t dataset, hid_t mem_type, hsize_t first, hsize_t count, void* out,
               const std::string& where);
// Reads column `column` of rows [first, first + count) of a two-dimensional dataset.
void read_column(hid_t dataset, hid_t mem_type, hsize_t first, hsize_t count, hsize_t column, void* out,
                 const std::string& where);

void write_attribute(hid_t loc, const std::string& name, const std::string& value, const std::string& where);
void write_attribute(hid_t loc, const std::string& name, int64_t value, const std::string& where);
std::optional<std::string> read_string_attribute(hid_t loc, const std::string& name,
                                                 const std::string& where);
std::optional<int64_t> read_int_attribute(hid_t loc, const std::string& name, const std::string& where);

bool exists(hid_t loc, const std::string& path);  // every link on the way exists

std::string library_version();  // "1.10.8"

}  // namespace hedgelab::sessions::h5
