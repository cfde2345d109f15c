// Deliberate edits of a closed session file, for tests of how the reader refuses files it must not trust
// (a newer schema_version, a missing dataset). Test-only: a session edited this way is damaged.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace hedgelab::sessions::edit {

// Sets integer attribute `name` of `object` ("/" for the root) to `value`.
void set_int_attribute(const std::filesystem::path& file, const std::string& object, const std::string& name,
                       int64_t value);
// Unlinks `object` (a dataset or group path) from the file.
void remove_object(const std::filesystem::path& file, const std::string& object);

}  // namespace hedgelab::sessions::edit
