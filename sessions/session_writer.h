// Writes a session (docs/session-format.md): one HDF5 file in SWMR mode that a run appends its steps,
// evaluations, probe snapshots and events to, with checkpoint folders beside it. Every dataset is created
// up front; appends grow them and are committed by flushes, so a process killed at any moment leaves a file
// that opens read-only, holding everything committed (at most ~0.5 s before the kill while steps arrive, and
// immediately for evaluations, probes, events, summaries and checkpoints).
//
// Not thread-safe: one thread (the run's) calls it. A reader may open the file meanwhile, in this process or
// another.
#pragma once

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/snapshot/probe_snapshot.h"
#include "core/snapshot/run_reports.h"
#include "sessions/checkpoints.h"
#include "sessions/session_types.h"

namespace hedgelab::sessions {

struct WriterOptions {
  bool overwrite = false;       // replace an existing session at the path (and its checkpoint folders)
  int keep_checkpoints = 3;     // newest complete checkpoint folders kept
  double flush_interval = 0.5;  // seconds; append_step() commits when the last commit is at least this old
};

class SessionWriter {
 public:
  // Creates `path` with every group and dataset, the provenance and the layout, then starts SWMR writing. The
  // file is built under a temporary name and renamed into place, so `path` never holds a half-made session;
  // an existing file is refused unless options.overwrite. Error naming the file (read-only folder, full disk,
  // bad layout); nothing that existed before is touched then.
  static SessionWriter create(const std::filesystem::path& path, const Provenance& provenance,
                              const SessionLayout& layout, const WriterOptions& options = {});

  SessionWriter(SessionWriter&&) noexcept;
  SessionWriter& operator=(SessionWriter&&) noexcept;
  SessionWriter(const SessionWriter&) = delete;
  SessionWriter& operator=(const SessionWriter&) = delete;
  // Without close(): commits what was appended and closes the file marked "abandoned".
  ~SessionWriter();

  // One optimizer step: lr, total, grad_norm, tokens, tokens_seen, tokens/s, each loss part (by name; every
  // name must be in the layout's part_names) and wall_seconds since the run started. Commits when the last
  // commit is older than options.flush_interval.
  void append_step(const std::string& run, const std::string& stage, const snapshot::StepReport& report,
                   double wall_seconds);
  // Evaluation metrics (e.g. heldout_perplexity) at a step. Committed at once, like the calls below.
  void append_eval(const std::string& run, const std::string& stage, const snapshot::EvalReport& report);
  // A probe snapshot; its shapes must match the layout (Error naming the field otherwise). The teacher's side
  // (maps, logits, token labels) is stored once and shared while it does not change.
  void append_probe(const snapshot::ProbeSnapshot& snapshot);
  // `kind` is one of event_kinds(); `detail` says the rest (run, stage, step, knob values, error message).
  void append_event(const std::string& kind, const nlohmann::json& detail = nlohmann::json::object());
  // The comparison table (docs/method.md §5); a later call replaces it.
  void set_summary(const std::vector<snapshot::RunSummary>& rows);
  // Writes a checkpoint folder beside the session (temporary folder, fsync, rename), keeps the newest
  // options.keep_checkpoints complete ones, then records it in /checkpoints/index.
  CheckpointInfo write_checkpoint(const CheckpointRecord& record);

  // Commits everything appended so far. Call it after each training step: the owner's side of the promise
  // that nothing older than 2 s is lost when the process dies.
  void flush();
  // Commits and closes the file, marked complete. Later calls throw.
  void close();

  const std::filesystem::path& path() const;
  const std::string& session_id() const;
  const SessionLayout& layout() const;

 private:
  struct Impl;
  explicit SessionWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hedgelab::sessions
