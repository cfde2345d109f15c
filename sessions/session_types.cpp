#include "sessions/session_types.h"

#include <torch/version.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <set>

#include "core/common/error.h"
#include "core/common/version.h"
#include "sessions/hdf5_support.h"

namespace hedgelab::sessions {

void SessionLayout::validate(const std::string& where) const {
  const std::pair<const char*, int64_t> sizes[] = {{"layers", layers},
                                                   {"heads", heads},
                                                   {"probe_tokens", probe_tokens},
                                                   {"feature_dim", feature_dim},
                                                   {"head_size", head_size},
                                                   {"state_size", state_size},
                                                   {"width", width},
                                                   {"conv_width", conv_width}};
  for (const auto& [name, value] : sizes)
    if (value < 0 || value > (int64_t{1} << 24))
      throw Error(where, std::string("session layout: ") + name + ": expected a size in [0, 2^24], got " +
                             std::to_string(value));
  std::set<std::string> seen;
  for (const std::string& name : part_names) {
    if (name.empty() || name.size() > kMaxNameBytes)
      throw Error(where, "session layout: part name '" + name + "': expected 1 to " +
                             std::to_string(kMaxNameBytes) + " bytes");
    if (!seen.insert(name).second) throw Error(where, "session layout: part name '" + name + "' given twice");
  }
}

std::vector<std::string> standard_part_names(int64_t layers) {
  std::vector<std::string> names;
  for (const char* prefix : {"cosine.layers.", "attn_ce.layers."})
    for (int64_t l = 0; l < layers; ++l)
      names.push_back(prefix + std::to_string(l));
  names.push_back("ce");
  names.push_back("kd");
  for (int64_t l = 0; l < layers; ++l)
    names.push_back("align.layers." + std::to_string(l));
  return names;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string iso8601_utc(double unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

Provenance make_provenance() {
  Provenance p;
  p.app_version = kVersion;
  p.torch_version = TORCH_VERSION;
  p.hdf5_version = h5::library_version();
  p.start_time = iso8601_utc(unix_now());
  return p;
}

const char* to_string(SessionState state) {
  switch (state) {
    case SessionState::Complete:
      return "complete";
    case SessionState::Abandoned:
      return "abandoned";
    case SessionState::Live:
      return "live";
    case SessionState::Crashed:
      return "crashed";
  }
  return "?";
}

}  // namespace hedgelab::sessions
