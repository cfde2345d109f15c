// Reads a session (docs/session-format.md) read-only, also while its writer still appends to it (SWMR read)
// or after the writer died: everything the writer committed is there, rows it had not committed are not.
// open() lists the contents (runs, metric names and counts, snapshots, checkpoints, events, how the writer
// left the file) without loading the bulk; the read calls fetch one series, one snapshot, one table.
// Bad input (not HDF5, truncated, damaged, a newer schema_version, a missing dataset) is a one-line
// hedgelab::Error naming the file and what was expected. Torch-free (checkpoint tensors:
// sessions/checkpoints.h). A reader and the writer may run on different threads of one process when HDF5 is
// its thread-safe build (Debian's is); one reader is used by one thread at a time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/snapshot/probe_snapshot.h"
#include "core/snapshot/run_reports.h"
#include "sessions/session_types.h"

namespace hedgelab::sessions {

// The step columns every series has; loss parts come after them by name.
inline const std::vector<std::string>& step_metric_names() {
  static const std::vector<std::string> names = {
      "lr", "total", "grad_norm", "tokens", "tokens_seen", "tokens_per_second", "wall_seconds"};
  return names;
}

// The steps of one run in one stage.
struct SeriesInfo {
  std::string run, stage;
  int64_t steps = 0;  // rows
  int64_t first_step = 0, last_step = 0;
  std::vector<std::string> metrics;  // step_metric_names() and the loss parts this series carries
  snapshot::StepReport last;         // the newest row, with the parts it carries
  int64_t evals = 0;                 // evaluation rows (one per metric per evaluation)
  std::vector<std::string> eval_metrics;
  int64_t probes = 0;  // snapshots
};

struct SnapshotInfo {
  int64_t index = 0;  // for probe()
  std::string run, stage;
  int64_t step = 0, tokens_seen = 0;
  bool mixers = false;  // stage-2 internals present
  double time = 0.0;
};

// A metric over steps.
struct Series {
  std::vector<int64_t> steps;
  std::vector<double> values;
};

struct SessionContents {
  std::filesystem::path path;
  int64_t schema_version = 0;
  std::string session_id;
  std::string created;  // ISO 8601 UTC
  SessionState state = SessionState::Crashed;
  std::string state_detail;  // one line: why this state, last commit time
  std::string writer_host;
  int64_t writer_pid = 0;
  int64_t flushes = 0;
  double last_flush_time = 0.0;  // unix seconds
  Provenance provenance;
  SessionLayout layout;
  std::vector<std::string> runs;   // in order of first appearance
  std::vector<SeriesInfo> series;  // one per (run, stage) with steps, evaluations or snapshots
  int64_t steps = 0, evals = 0, events = 0, snapshots = 0, summary_rows = 0, checkpoint_records = 0;
  std::vector<SnapshotInfo> snapshot_list;
  std::vector<CheckpointInfo> checkpoints;  // folders on disk, oldest first (sizes checked, hashes not)
};

class SessionReader {
 public:
  static SessionReader open(const std::filesystem::path& path);

  SessionReader(SessionReader&&) noexcept;
  SessionReader& operator=(SessionReader&&) noexcept;
  SessionReader(const SessionReader&) = delete;
  SessionReader& operator=(const SessionReader&) = delete;
  ~SessionReader();

  const SessionContents& contents() const;
  const Provenance& provenance() const { return contents().provenance; }
  const std::filesystem::path& path() const { return contents().path; }
  // Reopens the file and lists it again, taking in what a live writer committed since. While another reader
  // in this process holds the same file open, HDF5 shares that reader's cache and this one may see no more
  // than that one saw: a consistent but older view, which catches up once the other reader is closed.
  void refresh();

  // A step metric (step_metric_names() or a loss part) of one run and stage; parts skip the steps that did
  // not carry them. Error when the series or the name does not exist.
  Series metric(const std::string& run, const std::string& stage, const std::string& name) const;
  // An evaluation metric (e.g. heldout_perplexity) of one run and stage.
  Series eval_metric(const std::string& run, const std::string& stage, const std::string& name) const;
  std::vector<snapshot::StepReport> steps(const std::string& run, const std::string& stage) const;
  std::vector<snapshot::EvalReport> evals(const std::string& run, const std::string& stage) const;
  std::vector<Event> events() const;
  // Snapshot `index` (0 ≤ index < contents().snapshots) as it was appended, field by field.
  snapshot::ProbeSnapshot probe(int64_t index) const;
  // The comparison table as set_summary() last wrote it.
  std::vector<snapshot::RunSummary> summary() const;
  // Checkpoint folders, oldest first; with verify_hashes each tensors file is hashed (slow for big ones).
  std::vector<CheckpointInfo> checkpoints(bool verify_hashes = false) const;

 private:
  struct Impl;
  explicit SessionReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hedgelab::sessions
