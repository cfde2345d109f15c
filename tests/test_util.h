// Small helpers shared by the Qt Test suites.
#pragma once

#include <unistd.h>
#include <QTest>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/common/error.h"

namespace hedgelab::testing {

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    auto base = std::filesystem::temp_directory_path();
    for (int i = 0;; ++i) {
      path_ = base / ("hedgelab-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++) +
                      "-" + std::to_string(i));
      if (std::filesystem::create_directories(path_)) break;
    }
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::filesystem::path fixtures_dir() {
  return HEDGELAB_FIXTURES_DIR;
}

}  // namespace hedgelab::testing

// Runs `statement`, which must throw hedgelab::Error whose one-line message contains every one of the
// given fragments (typically the file name and the field or the expectation).
#define HL_EXPECT_ERROR(statement, ...)                                                          \
  do {                                                                                           \
    bool hl_thrown = false;                                                                      \
    try {                                                                                        \
      statement;                                                                                 \
    } catch (const hedgelab::Error& e) {                                                         \
      hl_thrown = true;                                                                          \
      const std::string hl_msg = e.what();                                                       \
      QVERIFY2(hl_msg.find('\n') == std::string::npos, ("multi-line error: " + hl_msg).c_str()); \
      for (const char* hl_frag : {__VA_ARGS__}) {                                                \
        QVERIFY2(hl_msg.find(hl_frag) != std::string::npos,                                      \
                 ("error '" + hl_msg + "' lacks '" + hl_frag + "'").c_str());                    \
      }                                                                                          \
    }                                                                                            \
    QVERIFY2(hl_thrown, "expected hedgelab::Error from " #statement);                            \
  } while (0)
