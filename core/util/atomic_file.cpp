#include "core/util/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>

#include "core/common/error.h"

namespace hedgelab::util {

namespace {

void fsync_path(const std::filesystem::path& p, int flags) {
  const int fd = ::open(p.c_str(), flags);
  if (fd < 0) return;  // best effort for folders on filesystems that refuse O_RDONLY opens
  ::fsync(fd);
  ::close(fd);
}

std::filesystem::path temporary_beside(const std::filesystem::path& path) {
  std::random_device rd;
  return path.parent_path() /
         ("." + path.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
}

}  // namespace

void write_file_atomically(const std::filesystem::path& path,
                           const std::function<void(std::ostream&)>& write) {
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const std::filesystem::path tmp = temporary_beside(dir / path.filename());
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) throw Error(path.string(), std::string("cannot write here: ") + std::strerror(errno));
      write(out);
      out.flush();
      if (!out) throw Error(path.string(), "write failed (disk full?)");
    }
    fsync_path(tmp, O_RDONLY);
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) throw Error(path.string(), "cannot replace the file: " + ec.message());
    fsync_path(dir, O_RDONLY | O_DIRECTORY);
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
}

void write_file_atomically(const std::filesystem::path& path, const std::string& bytes) {
  write_file_atomically(
      path, [&](std::ostream& out) { out.write(bytes.data(), static_cast<std::streamsize>(bytes.size())); });
}

}  // namespace hedgelab::util
