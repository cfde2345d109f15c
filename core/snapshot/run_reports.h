// What a run reports while it trains, as plain values (no LibTorch): the trainer's per-step and evaluation
// reports, its states, and the summary of a finished run. The worker sends these to the views, the session
// writer stores them, the CLI prints them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace hedgelab::snapshot {

enum class RunState { Idle, Running, Paused, Finished, Failed };
const char* to_string(RunState state);  // "idle", "running", "paused", "finished", "failed"

struct StepReport {
  int64_t step = 0;  // optimizer steps done, counting this one
  int64_t total_steps = 0;
  double lr = 0.0;
  std::vector<std::pair<std::string, double>> parts;  // unweighted, averaged over the micro-batches
  double total = 0.0;                                 // weighted sum, averaged over the micro-batches
  double grad_norm = 0.0;                             // before clipping
  int64_t tokens = 0;                                 // this step's
  int64_t tokens_seen = 0;                            // since step 0
  double tokens_per_second = 0.0;
};

struct EvalReport {
  int64_t step = 0;
  std::vector<std::pair<std::string, double>> metrics;  // e.g. "heldout_perplexity"
};

// One row of the comparison table (docs/method.md §5).
struct RunSummary {
  std::string run;
  double perplexity = 0.0;        // held-out, at the end of the run
  double ratio_to_teacher = 0.0;  // perplexity / the teacher's
  int64_t stage1_tokens = 0;
  int64_t stage2_tokens = 0;
  int64_t steps = 0;
  double seconds = 0.0;
  bool stopped_early = false;
};

// Live edits of a training run (the inspector's knobs): each set field replaces the recipe's value from the
// next step on; unset fields stay as they are. The run applies an edit between steps and reports it back
// (RunObserver::on_knobs) so sessions record it as a "knob" event.
struct KnobEdit {
  std::optional<double> lr;              // peak learning rate of the current stage's schedule
  std::optional<double> ce_weight;       // λ_ce (stage 2)
  std::optional<double> kd_weight;       // λ_kd (stage 2)
  std::optional<double> align_weight;    // λ_align (stage 2)
  std::optional<double> kd_temperature;  // τ (stage 2)
  std::optional<int64_t> probe_every;    // steps between probe snapshots; 0 = none

  bool empty() const {
    return !lr && !ce_weight && !kd_weight && !align_weight && !kd_temperature && !probe_every;
  }
};

}  // namespace hedgelab::snapshot
