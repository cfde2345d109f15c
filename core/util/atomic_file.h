// Writing a file so that a crash never leaves a half-written file under its final name.
#pragma once

#include <filesystem>
#include <functional>
#include <ostream>
#include <string>

namespace hedgelab::util {

// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs the folder.
// Throws hedgelab::Error naming the path when any step fails; the temporary file is removed then.
void write_file_atomically(const std::filesystem::path& path, const std::string& bytes);

// Same, streaming: `write` fills the stream; nothing appears under `path` unless it returns normally.
void write_file_atomically(const std::filesystem::path& path,
                           const std::function<void(std::ostream&)>& write);

}  // namespace hedgelab::util
