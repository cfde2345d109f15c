// One run of the recipe (docs/method.md §3–§4: stage 1, the student built from it, stage 2, the final
// held-out perplexity) as a resumable state machine: it steps until done or until a pause, stop or step
// limit, reports through a RunObserver (steps, evaluations, probe snapshots, checkpoints, states) and can
// be captured into a Checkpoint and restored from one exactly — same losses at every later step, same final
// weights. The GUI's worker and hedgelab-cli own one; sessions/ records what it reports.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/data/batches.h"
#include "core/data/corpus.h"
#include "core/distill/probes.h"
#include "core/distill/recipe.h"
#include "core/distill/stages.h"
#include "core/distill/trainer.h"
#include "core/models/gpt_neox.h"
#include "core/models/hedgehog.h"
#include "core/models/student.h"
#include "core/snapshot/probe_snapshot.h"
#include "core/snapshot/run_reports.h"

namespace hedgelab::run {

using distill::NamedTensors;
using snapshot::EvalReport;
using snapshot::RunState;
using snapshot::RunSummary;
using snapshot::StepReport;

// Everything needed to continue a run exactly. `stage` is "stage1", "stage2" or "done" (the trained student,
// kept for export); `step` counts optimizer steps done in that stage.
struct Checkpoint {
  std::string run;
  std::string stage;
  int64_t step = 0;
  NamedTensors tensors;  // the stage's trainer state with parameters ("param.*", "adamw.*", "trainer.*");
                         // in stage 2 and after, stage 1's trained parameters as "stage1.<name>"
  nlohmann::json meta;   // format, recipe, data cursor, trainer settings, summary so far
};

// Told everything, on the run's thread; it must not call back into the run except pause()/stop().
class RunObserver {
 public:
  virtual ~RunObserver() = default;
  virtual void on_state(RunState from, RunState to, const std::string& reason) {}
  virtual void on_stage_start(const std::string& stage, int64_t total_steps) {}
  virtual void on_step(const std::string& stage, const StepReport& report) {}
  virtual void on_eval(const std::string& stage, const EvalReport& report) {}
  virtual void on_probe(const snapshot::ProbeSnapshot& snapshot) {}
  // `why`: "interval", "pause", "stop", "error" or "end".
  virtual void on_checkpoint(const Checkpoint& checkpoint, const std::string& why) {}
  virtual void on_finished(const RunSummary& summary) {}
  // A live edit (request_knobs) was applied after `step` optimizer steps of `stage`: the fields set in
  // `applied` hold from step + 1 on.
  virtual void on_knobs(const std::string& stage, int64_t step, const snapshot::KnobEdit& applied) {}
  // Something the user should know that is neither an error nor a report, one line: on CUDA, `stage` ran
  // ATen's form where a fused kernel is registered, up to its first step (the results are right, the step
  // slower).
  virtual void on_notice(const std::string& stage, const std::string& text) {}
};

// The probe text as token ids and their decoded pieces (the tokenizer stays with the caller).
struct ProbeText {
  std::vector<int64_t> ids;
  std::vector<std::string> pieces;
};

class DistillRun {
 public:
  // `corpus` must outlive the run; `observer` may be null. Validates the recipe and the corpus size.
  DistillRun(distill::RecipeConfig recipe, models::GptNeoXForCausalLM teacher,
             const data::TokenCorpus& corpus, ProbeText probe, RunObserver* observer = nullptr,
             std::string name = "hedgemamba");
  ~DistillRun();
  DistillRun(const DistillRun&) = delete;
  DistillRun& operator=(const DistillRun&) = delete;

  // Continues from `checkpoint` (before the first run()); throws hedgelab::Error naming what does not fit
  // (another recipe's budgets, a teacher of another shape, a missing tensor) and changes nothing then.
  void restore(const Checkpoint& checkpoint);

  // Steps until the recipe is done (Finished), a pause request or a non-finite loss/gradient (Paused: call
  // run() again to go on), a stop request or `stop_at_step` total optimizer steps (Finished, stopped early,
  // with a checkpoint). Errors from the model or the data throw, after the state went to Failed.
  RunState run(int64_t stop_at_step = 0);
  // Requests, safe from any thread; honoured between steps.
  void pause();
  void stop();
  // A live edit of the knobs (the inspector's), safe from any thread: merged into the pending edit (later
  // fields win) and applied before the next step, then reported through on_knobs. `lr` is the new peak of
  // the current stage's schedule (min_lr scales with it); the loss weights and τ hold for stage 2 (set during
  // stage 1, they apply when stage 2 begins); probe_every from the next step. Applied edits are kept in
  // checkpoints, so a resumed run goes on with them. Throws hedgelab::Error naming a field out of range
  // (lr, τ > 0; weights ≥ 0; probe_every ≥ 0; probes need the probe text) and changes nothing then.
  void request_knobs(const snapshot::KnobEdit& edit);
  // The values the knobs hold now (all fields set; lr is the current stage's peak), safe from any thread.
  snapshot::KnobEdit knob_values() const;

  // Between steps only (not while run() is stepping on another thread).
  Checkpoint checkpoint() const;

  RunState state() const { return state_.load(); }
  const std::string& name() const { return name_; }
  const distill::RecipeConfig& recipe() const { return recipe_; }
  std::string stage() const;    // "stage1", "stage2" or "done"
  int64_t steps_done() const;   // both stages
  int64_t total_steps() const;  // both stages
  const RunSummary& summary() const { return summary_; }
  double teacher_perplexity() const { return teacher_ppl_; }  // on the same windows; set when done
  std::string last_error() const { return last_error_; }
  // The student (defined once stage 2 has begun).
  models::HedgeMambaStudent student() const { return student_; }
  models::HedgehogLM stage1_model() const { return stage1_; }

 private:
  enum class Phase { Stage1, Stage2, Done };
  void begin_stage1();
  void begin_stage2();
  void finish();
  void emit_probe();
  void apply_pending_knobs();
  void apply_knobs(const snapshot::KnobEdit& edit);  // on the run's thread, between steps
  void ensure_prober();
  void emit_checkpoint(const std::string& why);
  void set_state(RunState to, const std::string& reason);
  double heldout_perplexity(const std::function<at::Tensor(const at::Tensor&)>& logits_of,
                            int64_t max_windows) const;
  double teacher_eval_perplexity() const;  // the teacher's on the evaluation windows (cached)
  distill::Trainer& trainer() const;
  distill::TrainerCallbacks callbacks(const std::string& stage);

  distill::RecipeConfig recipe_;
  models::GptNeoXForCausalLM teacher_;
  const data::TokenCorpus& corpus_;
  RunObserver* observer_ = nullptr;
  std::string name_;
  std::unique_ptr<distill::Prober> prober_;  // made when probes are first needed
  ProbeText probe_;
  at::Tensor final_windows_;  // [N, T+1]

  Phase phase_ = Phase::Stage1;
  models::HedgehogLM stage1_{nullptr};
  models::HedgeMambaStudent student_{nullptr};
  std::optional<distill::Stage2Model> stage2_model_;
  std::unique_ptr<data::BatchCursor> cursor_;
  std::unique_ptr<distill::Trainer> trainer_;

  bool announced_ = false;  // on_stage_start sent for the current stage
  std::atomic<RunState> state_{RunState::Idle};
  std::atomic<bool> pause_requested_{false}, stop_requested_{false};
  RunSummary summary_;
  double teacher_ppl_ = 0.0;
  mutable double teacher_eval_ppl_ = 0.0;
  double seconds_before_ = 0.0;  // wall time of earlier sessions of this run (restored)
  std::chrono::steady_clock::time_point started_;
  std::string last_error_;

  // Live knobs: what request_knobs() left for the next step, and what has been applied (checkpointed).
  mutable std::mutex knob_mutex_;  // guards pending_knobs_ and the values knob_values() reads
  snapshot::KnobEdit pending_knobs_;
  std::shared_ptr<distill::Stage2Weights> stage2_weights_;  // read by stage 2's step function
  int64_t probe_every_ = 0;
  bool in_stage2_ = false;                                   // which stage's peak knob_values() reports
  std::optional<double> stage1_peak_lr_, stage2_peak_lr_;    // edited peaks; unset = the recipe's
  nlohmann::json applied_knobs_ = nlohmann::json::object();  // checkpoint meta "knobs"
};

}  // namespace hedgelab::run

namespace hedgelab::run {

// The student a checkpoint holds, on `teacher`'s skeleton: the trained one ("done"), the one in training
// ("stage2"), or the fresh student of a stage-1 checkpoint (which computes that stage-1 model exactly).
// Throws hedgelab::Error naming the checkpoint and the missing or misshapen tensor.
models::HedgeMambaStudent student_from_checkpoint(const Checkpoint& checkpoint,
                                                  const models::GptNeoXForCausalLM& teacher);

// Passes everything on to several observers in order (the CLI's progress, a session recorder, …).
class ObserverList : public RunObserver {
 public:
  void add(RunObserver* observer) {
    if (observer) observers_.push_back(observer);
  }
  void on_state(RunState from, RunState to, const std::string& reason) override {
    for (auto* o : observers_)
      o->on_state(from, to, reason);
  }
  void on_stage_start(const std::string& stage, int64_t total_steps) override {
    for (auto* o : observers_)
      o->on_stage_start(stage, total_steps);
  }
  void on_step(const std::string& stage, const StepReport& report) override {
    for (auto* o : observers_)
      o->on_step(stage, report);
  }
  void on_eval(const std::string& stage, const EvalReport& report) override {
    for (auto* o : observers_)
      o->on_eval(stage, report);
  }
  void on_probe(const snapshot::ProbeSnapshot& snapshot) override {
    for (auto* o : observers_)
      o->on_probe(snapshot);
  }
  void on_checkpoint(const Checkpoint& checkpoint, const std::string& why) override {
    for (auto* o : observers_)
      o->on_checkpoint(checkpoint, why);
  }
  void on_finished(const RunSummary& summary) override {
    for (auto* o : observers_)
      o->on_finished(summary);
  }
  void on_knobs(const std::string& stage, int64_t step, const snapshot::KnobEdit& applied) override {
    for (auto* o : observers_)
      o->on_knobs(stage, step, applied);
  }
  void on_notice(const std::string& stage, const std::string& text) override {
    for (auto* o : observers_)
      o->on_notice(stage, text);
  }

 private:
  std::vector<RunObserver*> observers_;
};

}  // namespace hedgelab::run
