// Checkpoints of a session: everything needed to continue a run exactly, kept in folders beside the .h5
// (<session>.checkpoints/, docs/session-format.md "Checkpoints") rather than inside it, so a checkpoint is
// written and fsynced as a whole and a torn one is never taken for a complete one. SessionWriter writes
// them; this header loads them back.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sessions/session_types.h"

namespace hedgelab::sessions {

class SessionReader;

// `meta` is opaque to sessions/ (the run layer puts its recipe, data cursor and trainer state there); the
// tensors keep their names, order and dtypes.
struct CheckpointRecord {
  std::string run;
  std::string stage;
  int64_t step = 0;
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  nlohmann::json meta = nlohmann::json::object();
};

// Loads one checkpoint folder after checking its SHA-256; Error naming the folder when it is not complete.
CheckpointRecord load_checkpoint(const CheckpointInfo& info);

// The newest checkpoint (of `run`, or of any run when empty) that is complete with a matching hash; an older
// one when the newest is torn or damaged; nothing when none is.
std::optional<CheckpointRecord> load_last_complete_checkpoint(const SessionReader& reader,
                                                              const std::string& run = "");

}  // namespace hedgelab::sessions
