#include "core/snapshot/run_reports.h"

namespace hedgelab::snapshot {

const char* to_string(RunState state) {
  switch (state) {
    case RunState::Idle:
      return "idle";
    case RunState::Running:
      return "running";
    case RunState::Paused:
      return "paused";
    case RunState::Finished:
      return "finished";
    case RunState::Failed:
      return "failed";
  }
  return "?";
}

}  // namespace hedgelab::snapshot
