#include "sessions/hdf5_support.h"

#include <algorithm>
#include <cstring>

#include "core/common/error.h"

namespace hedgelab::sessions::h5 {

namespace {

struct Reasons {
  std::vector<std::string> lines;
};

herr_t collect_reason(unsigned n, const H5E_error2_t* e, void* data) {
  auto* r = static_cast<Reasons*>(data);
  if (n >= 8 || !e->desc) return 0;
  std::string line = e->desc;
  std::replace(line.begin(), line.end(), '\n', ' ');
  if (!line.empty() && std::find(r->lines.begin(), r->lines.end(), line) == r->lines.end())
    r->lines.push_back(line);
  return 0;
}

}  // namespace

void silence_errors() {
  // The error stack (and its auto-print setting) is per thread in a thread-safe HDF5.
  thread_local bool done = false;
  if (done) return;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  done = true;
}

std::string error_reason() {
  Reasons r;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_reason, &r);
  H5Eclear2(H5E_DEFAULT);
  std::string out;
  for (size_t i = 0; i < r.lines.size() && i < 3; ++i)
    out += (i ? "; " : "") + r.lines[i];
  return out;
}

hid_t check_id(hid_t id, const std::string& where, const std::string& what) {
  if (id < 0) {
    const std::string reason = error_reason();
    throw Error(where, reason.empty() ? what : what + " (HDF5: " + reason + ")");
  }
  return id;
}

void check(herr_t status, const std::string& where, const std::string& what) {
  if (status < 0) check_id(H5I_INVALID_HID, where, what);
}

Handle string_type(size_t bytes) {
  Handle t = type_handle(check_id(H5Tcopy(H5T_C_S1), "HDF5", "cannot make a string type"));
  check(H5Tset_size(t.get(), std::max<size_t>(bytes, 1)), "HDF5", "cannot size a string type");
  check(H5Tset_strpad(t.get(), H5T_STR_NULLPAD), "HDF5", "cannot pad a string type");
  return t;
}

void put_name(char* field, size_t field_bytes, const std::string& value, const std::string& where) {
  if (value.size() >= field_bytes)
    throw Error(where, "'" + value + "' is longer than " + std::to_string(field_bytes - 1) + " bytes");
  std::memset(field, 0, field_bytes);
  std::memcpy(field, value.data(), value.size());
}

std::string get_name(const char* field, size_t field_bytes) {
  return std::string(field, strnlen(field, field_bytes));
}

namespace {

// Creates dataset `name` of shape `dims` (growing up to `max_dims`, nullptr: fixed) with the creation
// properties `dcpl`.
Handle create_dataset(hid_t loc, const std::string& name, hid_t file_type, const std::vector<hsize_t>& dims,
                      const hsize_t* max_dims, const Handle& dcpl, const std::string& where,
                      const std::string& what) {
  Handle space = space_handle(
      check_id(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), max_dims), where, what));
  return dataset_handle(
      check_id(H5Dcreate2(loc, name.c_str(), file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
               where, what));
}

}  // namespace

Handle create_table(hid_t loc, const std::string& name, hid_t file_type, const TableSpec& spec,
                    const std::string& where) {
  const std::string what = "cannot create dataset " + name;
  std::vector<hsize_t> dims{0}, max_dims{H5S_UNLIMITED}, chunk{spec.chunk_rows};
  dims.insert(dims.end(), spec.dims.begin(), spec.dims.end());
  max_dims.insert(max_dims.end(), spec.dims.begin(), spec.dims.end());
  const std::vector<hsize_t>& inner = spec.chunk_dims.empty() ? spec.dims : spec.chunk_dims;
  chunk.insert(chunk.end(), inner.begin(), inner.end());
  Handle dcpl = plist_handle(check_id(H5Pcreate(H5P_DATASET_CREATE), where, what));
  check(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), where, what);
  if (spec.deflate > 0) {
    check(H5Pset_shuffle(dcpl.get()), where, what);
    check(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(spec.deflate)), where, what);
  }
  // Rows past the committed count are never read, so the library need not write fill values.
  check(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), where, what);
  return create_dataset(loc, name, file_type, dims, max_dims.data(), dcpl, where, what);
}

Handle create_fixed(hid_t loc, const std::string& name, hid_t file_type, const std::vector<hsize_t>& dims,
                    const std::string& where) {
  const std::string what = "cannot create dataset " + name;
  Handle dcpl = plist_handle(check_id(H5Pcreate(H5P_DATASET_CREATE), where, what));
  check(H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS), where, what);
  check(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY), where, what);
  return create_dataset(loc, name, file_type, dims, nullptr, dcpl, where, what);
}

void write_bytes_dataset(hid_t loc, const std::string& name, const std::string& bytes,
                         const std::string& where) {
  TableSpec spec;
  spec.chunk_rows = 65536;
  spec.deflate = 4;  // written once, before SWMR writing starts
  Handle d = create_table(loc, name, H5T_STD_U8LE, spec, where);
  write_rows(d.get(), H5T_NATIVE_UINT8, 0, bytes.size(), bytes.data(), where);
}

std::string read_bytes_dataset(hid_t loc, const std::string& name, const std::string& where) {
  Handle d =
      dataset_handle(check_id(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), where, "missing dataset " + name));
  std::string out(rows(d.get(), where + ": " + name), '\0');
  read_rows(d.get(), H5T_NATIVE_UINT8, 0, out.size(), out.data(), where + ": " + name);
  return out;
}

std::vector<hsize_t> shape(hid_t dataset, const std::string& where) {
  Handle space = space_handle(check_id(H5Dget_space(dataset), where, "cannot read the dataset's shape"));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) check_id(H5I_INVALID_HID, where, "cannot read the dataset's shape");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0)
    check(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), where,
          "cannot read the dataset's shape");
  return dims;
}

hsize_t rows(hid_t dataset, const std::string& where) {
  const std::vector<hsize_t> dims = shape(dataset, where);
  if (dims.empty()) throw Error(where, "expected a dataset with at least one axis, found a scalar");
  return dims[0];
}

namespace {

// The file and memory dataspaces of rows [first, first + count) in full, of a dataset of shape `dims`.
struct RowSelection {
  Handle file_space, mem_space;
};
RowSelection select_rows(hid_t dataset, const std::vector<hsize_t>& dims, hsize_t first, hsize_t count,
                         const std::string& where, const std::string& what) {
  RowSelection sel;
  sel.file_space = space_handle(check_id(H5Dget_space(dataset), where, what));
  std::vector<hsize_t> start(dims.size(), 0), counts = dims;
  start[0] = first;
  counts[0] = count;
  check(H5Sselect_hyperslab(sel.file_space.get(), H5S_SELECT_SET, start.data(), nullptr, counts.data(),
                            nullptr),
        where, "cannot select rows");
  sel.mem_space = space_handle(
      check_id(H5Screate_simple(static_cast<int>(counts.size()), counts.data(), nullptr), where, what));
  return sel;
}

}  // namespace

void write_rows(hid_t dataset, hid_t mem_type, hsize_t first, hsize_t count, const void* data,
                const std::string& where) {
  if (count == 0) return;
  std::vector<hsize_t> dims = shape(dataset, where);
  if (dims.empty()) throw Error(where, "expected a dataset with at least one axis, found a scalar");
  if (first + count > dims[0]) {
    dims[0] = first + count;
    check(H5Dset_extent(dataset, dims.data()), where, "cannot grow the dataset");
  }
  const RowSelection sel = select_rows(dataset, dims, first, count, where, "cannot write rows");
  check(H5Dwrite(dataset, mem_type, sel.mem_space.get(), sel.file_space.get(), H5P_DEFAULT, data), where,
        "cannot write rows (disk full or file not writable?)");
}

void read_rows(hid_t dataset, hid_t mem_type, hsize_t first, hsize_t count, void* out,
               const std::string& where) {
  if (count == 0) return;
  const std::vector<hsize_t> dims = shape(dataset, where);
  if (dims.empty() || first + count > dims[0])
    throw Error(where, "expected at least " + std::to_string(first + count) + " rows, the dataset has " +
                           std::to_string(dims.empty() ? 0 : dims[0]));
  const RowSelection sel = select_rows(dataset, dims, first, count, where, "cannot read rows");
  check(H5Dread(dataset, mem_type, sel.mem_space.get(), sel.file_space.get(), H5P_DEFAULT, out), where,
        "cannot read rows (damaged file?)");
}

void read_column(hid_t dataset, hid_t mem_type, hsize_t first, hsize_t count, hsize_t column, void* out,
                 const std::string& where) {
  if (count == 0) return;
  const std::vector<hsize_t> dims = shape(dataset, where);
  if (dims.size() != 2 || first + count > dims[0] || column >= dims[1])
    throw Error(where, "expected a table of at least " + std::to_string(first + count) + " rows and " +
                           std::to_string(column + 1) + " columns");
  Handle file_space = space_handle(check_id(H5Dget_space(dataset), where, "cannot read a column"));
  const hsize_t start[2] = {first, column}, counts[2] = {count, 1};
  check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, counts, nullptr), where,
        "cannot select a column");
  Handle mem_space =
      space_handle(check_id(H5Screate_simple(2, counts, nullptr), where, "cannot read a column"));
  check(H5Dread(dataset, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out), where,
        "cannot read a column (damaged file?)");
}

namespace {

// Attribute `name` of `loc` opened with its type, or nothing when `loc` has no such attribute.
struct OpenAttribute {
  Handle attribute, type;
};
std::optional<OpenAttribute> open_attribute(hid_t loc, const std::string& name, const std::string& where,
                                            const std::string& what) {
  if (H5Aexists(loc, name.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  OpenAttribute a;
  a.attribute = attribute_handle(check_id(H5Aopen(loc, name.c_str(), H5P_DEFAULT), where, what));
  a.type = type_handle(check_id(H5Aget_type(a.attribute.get()), where, what));
  return a;
}

Handle fresh_attribute(hid_t loc, const std::string& name, hid_t type, const std::string& where) {
  if (H5Aexists(loc, name.c_str()) > 0) H5Adelete(loc, name.c_str());
  Handle space = space_handle(check_id(H5Screate(H5S_SCALAR), where, "cannot write attribute " + name));
  return attribute_handle(check_id(H5Acreate2(loc, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                                   where, "cannot write attribute " + name));
}

}  // namespace

void write_attribute(hid_t loc, const std::string& name, const std::string& value, const std::string& where) {
  Handle type = string_type(value.size());
  Handle a = fresh_attribute(loc, name, type.get(), where);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  check(H5Awrite(a.get(), type.get(), padded.data()), where, "cannot write attribute " + name);
}

void write_attribute(hid_t loc, const std::string& name, int64_t value, const std::string& where) {
  Handle a = fresh_attribute(loc, name, H5T_STD_I64LE, where);
  check(H5Awrite(a.get(), H5T_NATIVE_INT64, &value), where, "cannot write attribute " + name);
}

std::optional<std::string> read_string_attribute(hid_t loc, const std::string& name,
                                                 const std::string& where) {
  const std::string what = "cannot read attribute " + name;
  std::optional<OpenAttribute> opened = open_attribute(loc, name, where, what);
  if (!opened) return std::nullopt;
  const Handle &a = opened->attribute, &type = opened->type;
  if (H5Tget_class(type.get()) != H5T_STRING) throw Error(where, "attribute " + name + ": expected a string");
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle mem = type_handle(check_id(H5Tcopy(H5T_C_S1), where, what));
    check(H5Tset_size(mem.get(), H5T_VARIABLE), where, what);
    char* p = nullptr;
    check(H5Aread(a.get(), mem.get(), &p), where, what);
    std::string out = p ? p : "";
    H5free_memory(p);
    return out;
  }
  const size_t n = H5Tget_size(type.get());
  std::string buffer(n, '\0');
  Handle mem = string_type(n);
  check(H5Aread(a.get(), mem.get(), buffer.data()), where, what);
  return get_name(buffer.data(), n);
}

std::optional<int64_t> read_int_attribute(hid_t loc, const std::string& name, const std::string& where) {
  const std::string what = "cannot read attribute " + name;
  std::optional<OpenAttribute> opened = open_attribute(loc, name, where, what);
  if (!opened) return std::nullopt;
  const Handle &a = opened->attribute, &type = opened->type;
  Handle space = space_handle(check_id(H5Aget_space(a.get()), where, what));
  if (H5Tget_class(type.get()) != H5T_INTEGER || H5Sget_simple_extent_npoints(space.get()) != 1)
    throw Error(where, "attribute " + name + ": expected one integer");
  int64_t v = 0;
  check(H5Aread(a.get(), H5T_NATIVE_INT64, &v), where, what);
  return v;
}

bool exists(hid_t loc, const std::string& path) {
  size_t pos = 0;
  while (pos < path.size()) {
    size_t next = path.find('/', pos + 1);
    if (next == std::string::npos) next = path.size();
    const std::string prefix = path.substr(0, next);
    if (!prefix.empty() && prefix != "/" && H5Lexists(loc, prefix.c_str(), H5P_DEFAULT) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    pos = next;
  }
  return true;
}

std::string library_version() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release);
}

}  // namespace hedgelab::sessions::h5
