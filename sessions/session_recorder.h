// A RunObserver that records a DistillRun into a session: steps (committed after each), evaluations, probe
// snapshots, checkpoints and the run's state changes as events. Also the session layout a recipe implies.
#pragma once

#include <chrono>
#include <string>

#include "core/data/corpus.h"
#include "core/distill/recipe.h"
#include "core/models/gpt_neox.h"
#include "core/run/distill_run.h"
#include "sessions/session_writer.h"

namespace hedgelab::sessions {

// The shapes a run of `recipe` on a teacher of `teacher` fixes: layers, heads, the probe's Tp (0 when the
// recipe takes no probes), m, P, N = 2m, d, the conv width (0 without convs), the standard loss parts.
SessionLayout layout_for(const distill::RecipeConfig& recipe, const models::GptNeoXConfig& teacher,
                         int64_t probe_tokens);

class SessionRecorder : public run::RunObserver {
 public:
  // `writer` must outlive the recorder; `run` names the rows ("hedgemamba"). `wall_offset` is the wall time
  // of the run before this process (a resumed run), so the session's time axis continues.
  SessionRecorder(SessionWriter& writer, std::string run, double wall_offset = 0.0);

  void on_state(run::RunState from, run::RunState to, const std::string& reason) override;
  void on_stage_start(const std::string& stage, int64_t total_steps) override;
  void on_step(const std::string& stage, const run::StepReport& report) override;
  void on_eval(const std::string& stage, const run::EvalReport& report) override;
  void on_probe(const snapshot::ProbeSnapshot& snapshot) override;
  void on_checkpoint(const run::Checkpoint& checkpoint, const std::string& why) override;
  void on_finished(const run::RunSummary& summary) override;
  // A "knob" event: run, stage, step (the edit holds from step + 1) and each field set, by name.
  void on_knobs(const std::string& stage, int64_t step, const snapshot::KnobEdit& applied) override;
  // A "notice" event: run, stage, text (e.g. the fused kernels a CUDA step did not take).
  void on_notice(const std::string& stage, const std::string& text) override;

  // Where the newest checkpoint went (empty before the first).
  const std::filesystem::path& last_checkpoint_dir() const { return last_checkpoint_; }

 private:
  double wall_seconds() const;

  SessionWriter& writer_;
  std::string run_;
  double wall_offset_ = 0.0;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::string stage_;
  std::filesystem::path last_checkpoint_;
};

}  // namespace hedgelab::sessions

namespace hedgelab::sessions {

// Provenance of a run: versions and start time (make_provenance), the device, the recipe, the teacher folder
// with the SHA-256 of its weight files (in order), the corpus path with the SHA-256 of its token stream.
Provenance provenance_for(const distill::RecipeConfig& recipe, const std::filesystem::path& teacher_dir,
                          const std::vector<std::filesystem::path>& weight_files,
                          const data::TokenCorpus& corpus);

}  // namespace hedgelab::sessions
