// The generic training loop both stages and the baselines share: AdamW (decay on ≥2-D tensors only), the
// warmup + cosine schedule, accumulation, global-norm clipping, evaluation every k steps, and a state machine
// (idle, running, paused, finished, failed) whose pause/resume/stop requests are honoured between steps.
// A non-finite loss part or gradient never reaches the weights: the step is abandoned, the culprit named and
// the run paused with the last good state; a step that runs out of memory is abandoned and paused the same
// way. No randomness of its own: same step results, same numbers.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/distill/adamw.h"
#include "core/snapshot/run_reports.h"
#include "core/train/lr_schedule.h"

namespace hedgelab::distill {

using snapshot::EvalReport;
using snapshot::RunState;
using snapshot::StepReport;
using snapshot::to_string;

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

struct LossPart {
  std::string name;  // e.g. "kd" or "align.layers.3": a "layers.N" in it lets errors name the layer
  at::Tensor value;  // scalar, part of the autograd graph
  double weight = 1.0;
};

// What one micro-batch yields: the parts in order (their weighted sum is the loss) and the tokens it
// consumed.
struct LossParts {
  std::vector<LossPart> parts;
  int64_t tokens = 0;
  LossParts& add(std::string name, at::Tensor value, double weight = 1.0);
};

using StepFunction = std::function<LossParts(int64_t step, int64_t micro)>;

struct TrainerConfig {
  AdamWConfig adamw;
  train::WarmupCosine schedule;  // its total_steps shapes the cosine; total_steps below ends the run
  double grad_clip = 1.0;        // max global L2 norm; 0 = no clipping
  int64_t accumulation = 1;      // micro-batches per optimizer step; backward runs on total / accumulation
  int64_t total_steps = 1;
  int64_t eval_every = 0;          // steps between evaluations; there is always one after the last step
  bool wait_while_paused = false;  // run() blocks in Paused until resume()/stop() instead of returning
  // Appended to the message of a step that ran out of memory (the run pauses, nothing applied), e.g. which
  // recipe field to lower.
  std::string out_of_memory_hint;
  void validate() const;  // Error naming the field
};

struct TrainerCallbacks {
  std::function<void(const StepReport&)> on_step;
  // Called every eval_every steps and after the last; runs under no-grad. Its metrics go to on_eval.
  std::function<std::vector<std::pair<std::string, double>>(int64_t step)> eval;
  std::function<void(const EvalReport&)> on_eval;
  // From the thread that made the change (the loop's, or the caller of resume()/stop() when none runs).
  std::function<void(RunState from, RunState to, const std::string& reason)> on_state_change;
};

class Trainer {
 public:
  // `parameters` are leaf tensors requiring grad, with unique names ("layers.3.mixer.delta_bias").
  Trainer(NamedTensors parameters, TrainerConfig config, StepFunction step_fn,
          TrainerCallbacks callbacks = {});
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Steps until `step_limit` (capped at total_steps) is reached, or a pause/stop request, a non-finite value
  // or an exception intervenes. Returns the state: Idle (limit reached early), Paused, Finished or Failed.
  // Called in Paused, it resumes (the abandoned step is tried again).
  RunState run_until(int64_t step_limit);
  RunState run() { return run_until(config_.total_steps); }

  // Requests, safe from any thread; honoured between steps.
  void pause();
  void resume();
  void stop();

  RunState state() const { return state_.load(); }
  int64_t step() const { return step_.load(); }  // optimizer steps done
  int64_t tokens_seen() const { return tokens_seen_.load(); }
  bool stopped_early() const { return stopped_early_.load(); }  // Finished by stop(), not by the last step
  std::string last_error() const;  // why the last Paused/Failed happened; empty otherwise
  double lr_at(int64_t step) const { return config_.schedule.at(step); }
  // A new peak of the schedule from the next step on (a live knob): min_lr scales with it, so the warmup and
  // cosine keep their shape. Between steps only; Error unless `peak` is a finite number > 0.
  void set_peak_lr(double peak);
  const TrainerConfig& config() const { return config_; }
  const NamedTensors& parameters() const { return params_; }

  // Everything the trainer owns for exact continuation: "trainer.step", "trainer.tokens_seen" and per
  // parameter "adamw.<name>.exp_avg" / ".exp_avg_sq" / ".step" (and "param.<name>" when asked). Plain
  // tensors, so the session layer writes them with the rest of a checkpoint.
  void save(NamedTensors& out, bool include_parameters = false) const;
  // Restores what save() wrote (parameters too when present). Refused while running; shapes and names are
  // checked, an Error names the missing or mismatched key. Leaves the state Idle (Finished at total_steps).
  void load(const NamedTensors& in);
  nlohmann::json state_json()
      const;  // step, tokens, schedule and optimiser settings, for a checkpoint's JSON

 private:
  enum class StepOutcome { Done, NonFinite };
  StepOutcome do_step();
  void set_state(RunState to, const std::string& reason);
  bool wait_for_resume();  // true to continue, false when stopped

  struct Moments {
    at::Tensor exp_avg, exp_avg_sq;
    int64_t steps = 0;  // AdamW's bias-correction count; a parameter without a gradient does not advance
  };

  NamedTensors params_;
  std::vector<Moments> moments_;
  TrainerConfig config_;
  StepFunction step_fn_;
  TrainerCallbacks callbacks_;

  std::atomic<RunState> state_{RunState::Idle};
  std::atomic<int64_t> step_{0};
  std::atomic<int64_t> tokens_seen_{0};
  std::atomic<bool> stopped_early_{false};
  std::atomic<bool> pause_requested_{false}, stop_requested_{false}, resume_requested_{false};
  std::atomic<bool> in_loop_{false};
  mutable std::mutex mutex_;  // guards last_error_ and the paused wait
  std::condition_variable resumed_;
  std::string last_error_;
};

}  // namespace hedgelab::distill
