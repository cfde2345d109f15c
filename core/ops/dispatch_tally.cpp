#include "core/ops/dispatch_tally.h"

#include <map>
#include <mutex>
#include <string_view>
#include <utility>

#include "core/ops/hedge_mamba_scan.h"

namespace hedgelab::ops {

namespace {

struct Tally {
  std::mutex mutex;
  // Keyed by the op's literal (its text, so that two copies of one literal count as one op) and the path.
  std::map<std::pair<std::string_view, KernelPath>, int64_t> counts;
};

Tally& tally() {
  static Tally t;
  return t;
}

}  // namespace

const char* kernel_path_name(KernelPath path) {
  switch (path) {
    case KernelPath::kFused:
      return "fused";
    case KernelPath::kReference:
      return "reference";
    case KernelPath::kSwitchedOff:
      return "switched off";
    case KernelPath::kUnsupported:
      return "unsupported";
  }
  return "?";
}

bool take_fused(const char* op, bool prefer, bool supported) {
  const KernelPath path = use_reference_scan() ? KernelPath::kReference
                          : !prefer            ? KernelPath::kSwitchedOff
                          : !supported         ? KernelPath::kUnsupported
                                               : KernelPath::kFused;
  Tally& t = tally();
  {
    std::lock_guard<std::mutex> lock(t.mutex);
    ++t.counts[{std::string_view(op), path}];
  }
  return path == KernelPath::kFused;
}

std::vector<DispatchCount> dispatch_tally() {
  Tally& t = tally();
  std::lock_guard<std::mutex> lock(t.mutex);
  std::vector<DispatchCount> out;
  out.reserve(t.counts.size());
  for (const auto& [key, calls] : t.counts)
    out.push_back({std::string(key.first), key.second, calls});
  return out;
}

void reset_dispatch_tally() {
  Tally& t = tally();
  std::lock_guard<std::mutex> lock(t.mutex);
  t.counts.clear();
}

namespace {

std::string describe(const std::vector<DispatchCount>& counts, bool misses_only) {
  std::string out;
  for (const DispatchCount& c : counts) {
    if (misses_only && c.path == KernelPath::kFused) continue;
    if (!out.empty()) out += ", ";
    out += c.op + " " + kernel_path_name(c.path) + " " + std::to_string(c.calls);
  }
  return out;
}

}  // namespace

std::string describe_dispatch_tally(const std::vector<DispatchCount>& counts) {
  const std::string out = describe(counts, /*misses_only=*/false);
  return out.empty() ? "none" : out;
}

std::string describe_kernel_misses(const std::vector<DispatchCount>& counts) {
  return describe(counts, /*misses_only=*/true);
}

}  // namespace hedgelab::ops
