// Progress for long work in a terminal: a bar with rate and ETA redrawn in place on a TTY, and a plain line
// every few seconds when stderr is a file or pipe (CI logs, GPU servers).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace hedgelab::util {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, std::string unit = "", std::FILE* out = stderr);
  ~ProgressBar();

  // Sets the amount done; redraws at most every 100 ms on a TTY, every 5 s otherwise.
  void update(int64_t done, const std::string& suffix = "");
  void finish(const std::string& suffix = "");
  void set_enabled(bool enabled) { enabled_ = enabled; }

  // "1:02:03" / "02:03"; exposed for tests.
  static std::string format_duration(double seconds);
  // The text of one redraw, without terminal control characters; exposed for tests.
  std::string render(int64_t done, double elapsed_seconds, const std::string& suffix) const;

 private:
  void draw(bool final);
  std::string label_, unit_, suffix_;
  int64_t total_ = 0, done_ = 0;
  std::FILE* out_;
  bool tty_ = false, enabled_ = true, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace hedgelab::util
