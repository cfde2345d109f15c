#include "core/util/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace hedgelab::util {

ProgressBar::ProgressBar(std::string label, int64_t total, std::string unit, std::FILE* out)
    : label_(std::move(label)), unit_(std::move(unit)), total_(std::max<int64_t>(total, 0)), out_(out) {
  tty_ = out_ != nullptr && ::isatty(::fileno(out_));
  start_ = std::chrono::steady_clock::now();
  last_draw_ = start_ - std::chrono::hours(1);
}

ProgressBar::~ProgressBar() {
  if (!finished_ && tty_ && enabled_ && done_ > 0) std::fputc('\n', out_);
}

std::string ProgressBar::format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>((s / 60) % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  return buf;
}

std::string ProgressBar::render(int64_t done, double elapsed, const std::string& suffix) const {
  const double frac =
      total_ > 0 ? std::clamp(static_cast<double>(done) / static_cast<double>(total_), 0.0, 1.0) : 0.0;
  constexpr int kWidth = 28;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(filled, '#');
  bar += std::string(kWidth - filled, '.');
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
  const double eta = (rate > 0 && total_ > 0) ? static_cast<double>(total_ - done) / rate : -1.0;
  char head[256];
  std::snprintf(head, sizeof head, "%s [%s] %3d%% %lld/%lld%s%s %.1f%s/s elapsed %s ETA %s", label_.c_str(),
                bar.c_str(), static_cast<int>(frac * 100.0), static_cast<long long>(done),
                static_cast<long long>(total_), unit_.empty() ? "" : " ", unit_.c_str(), rate,
                unit_.empty() ? "" : (" " + unit_).c_str(), format_duration(elapsed).c_str(),
                format_duration(eta).c_str());
  std::string line = head;
  if (!suffix.empty()) line += " | " + suffix;
  return line;
}

void ProgressBar::draw(bool final) {
  if (!enabled_ || out_ == nullptr) return;
  const auto now = std::chrono::steady_clock::now();
  const double since_draw = std::chrono::duration<double>(now - last_draw_).count();
  if (!final && since_draw < (tty_ ? 0.1 : 5.0)) return;
  last_draw_ = now;
  const std::string line = render(done_, std::chrono::duration<double>(now - start_).count(), suffix_);
  if (tty_)
    std::fprintf(out_, "\r\033[2K%s%s", line.c_str(), final ? "\n" : "");
  else
    std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
}

void ProgressBar::update(int64_t done, const std::string& suffix) {
  done_ = done;
  suffix_ = suffix;
  draw(false);
}

void ProgressBar::finish(const std::string& suffix) {
  if (finished_) return;
  if (!suffix.empty()) suffix_ = suffix;
  done_ = std::max(done_, total_);
  draw(true);
  finished_ = true;
}

}  // namespace hedgelab::util
