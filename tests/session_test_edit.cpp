#include "tests/session_test_edit.h"

#include "sessions/hdf5_support.h"

namespace hedgelab::sessions::edit {

namespace {

h5::Handle open_for_edit(const std::filesystem::path& file) {
  h5::silence_errors();
  return h5::file_handle(h5::check_id(H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), file.string(),
                                      "cannot open for editing"));
}

}  // namespace

void set_int_attribute(const std::filesystem::path& file, const std::string& object, const std::string& name,
                       int64_t value) {
  h5::Handle f = open_for_edit(file);
  h5::Handle o = h5::Handle(
      h5::check_id(H5Oopen(f.get(), object.c_str(), H5P_DEFAULT), file.string(), "cannot open " + object),
      H5Oclose);
  h5::write_attribute(o.get(), name, value, file.string());
}

void remove_object(const std::filesystem::path& file, const std::string& object) {
  h5::Handle f = open_for_edit(file);
  h5::check(H5Ldelete(f.get(), object.c_str(), H5P_DEFAULT), file.string(), "cannot remove " + object);
}

}  // namespace hedgelab::sessions::edit
