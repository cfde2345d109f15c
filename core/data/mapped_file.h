// A read-only memory map of a whole file (pre-tokenized .bin corpora and token caches).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>

namespace hedgelab::data {

class MappedFile {
 public:
  // Throws hedgelab::Error naming the file when it cannot be opened or mapped. An empty file maps to nothing.
  explicit MappedFile(const std::filesystem::path& path);
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace hedgelab::data
