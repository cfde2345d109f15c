#include "core/run/distill_run.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "core/common/error.h"
#include "core/ops/autocast.h"
#include "core/ops/dispatch_tally.h"

namespace hedgelab::run {

namespace {

constexpr int64_t kFinalEvalWindows = 512;
constexpr int64_t kEvalBatch = 8;
constexpr int64_t kAlignWindows = 4;  // held-out windows of the alignment probe
constexpr const char* kCheckpointFormat = "hedgelab_run_checkpoint";
constexpr int kCheckpointVersion = 1;

const char* phase_name(int phase) {
  return phase == 0 ? "stage1" : phase == 1 ? "stage2" : "done";
}

// The recipe without the fields that may differ between the run that wrote a checkpoint and the one that
// continues it (threads, and where the teacher/corpus were found: they are checked by shape instead).
// Where the run executes (device, dtype, activation checkpointing) may change too: a run started on a laptop
// continues on a GPU server. The micro-batch may change when the step's windows stay the same (batch_size ·
// accumulation), which is how a run that ran out of GPU memory continues.
nlohmann::json comparable(const distill::RecipeConfig& r) {
  nlohmann::json j = r.to_json();
  for (const char* key :
       {"threads", "teacher", "corpus", "name", "description", "device", "dtype", "activation_checkpointing"})
    j.erase(key);
  j["data"].erase("batch_size");
  j["data"].erase("accumulation");
  j["data"]["windows_per_step"] = r.data.batch_size * r.data.accumulation;
  return j;
}

// A copy on the CPU: checkpoints leave the GPU's memory as they are made.
at::Tensor host_copy(const at::Tensor& t) {
  return t.detach().to(at::kCPU, t.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
}

std::string first_difference(const nlohmann::json& a, const nlohmann::json& b, const std::string& path) {
  if (a.is_object() && b.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      if (!b.contains(it.key())) return path + it.key();
      const std::string d = first_difference(it.value(), b[it.key()], path + it.key() + ".");
      if (!d.empty()) return d;
    }
    for (auto it = b.begin(); it != b.end(); ++it)
      if (!a.contains(it.key())) return path + it.key();
    return "";
  }
  return a == b ? "" : (path.empty() ? "recipe" : path.substr(0, path.size() - 1));
}

nlohmann::json teacher_shape(const models::GptNeoXConfig& c) {
  return {{"layers", c.num_layers},
          {"hidden_size", c.hidden_size},
          {"heads", c.num_heads},
          {"vocab_size", c.vocab_size}};
}

}  // namespace

DistillRun::DistillRun(distill::RecipeConfig recipe, models::GptNeoXForCausalLM teacher,
                       const data::TokenCorpus& corpus, ProbeText probe, RunObserver* observer,
                       std::string name)
    : recipe_(std::move(recipe)),
      teacher_(std::move(teacher)),
      corpus_(corpus),
      observer_(observer),
      name_(std::move(name)) {
  final_windows_ = distill::prepare_run(recipe_, teacher_, corpus_, kFinalEvalWindows);  // [N, T+1]
  const int64_t limit = teacher_->config().max_position_embeddings;
  if (static_cast<int64_t>(probe.ids.size()) > limit) {
    probe.ids.resize(static_cast<size_t>(limit));
    probe.pieces.resize(static_cast<size_t>(limit));
  }
  probe_ = std::move(probe);
  probe_every_ = recipe_.data.probe_every;
  stage2_weights_ = std::make_shared<distill::Stage2Weights>(distill::Stage2Weights::of(recipe_.stage2));
  if (probe_every_ > 0) {
    if (probe_.ids.empty()) throw Error(recipe_.name + ": data.probe_text", "tokenizes to no tokens");
    ensure_prober();
  }
  summary_.run = name_;
}

void DistillRun::ensure_prober() {
  if (prober_ || probe_.ids.empty()) return;
  const int64_t T = recipe_.data.context;
  at::Tensor ids = at::tensor(probe_.ids, at::kLong).unsqueeze(0).to(final_windows_.device());  // [1, Tp]
  const int64_t n_align = std::min<int64_t>(kAlignWindows, final_windows_.size(0));
  at::Tensor align = final_windows_.narrow(0, 0, n_align).narrow(1, 0, T);  // [n, T]
  prober_ = std::make_unique<distill::Prober>(teacher_, ids, probe_.pieces, align);
}

void DistillRun::request_knobs(const snapshot::KnobEdit& edit) {
  const std::string where = name_ + ": knob ";
  auto positive = [&](const std::optional<double>& v, const char* field) {
    if (v && !(*v > 0 && std::isfinite(*v))) throw Error(where + field, "expected a number > 0");
  };
  auto non_negative = [&](const std::optional<double>& v, const char* field) {
    if (v && !(*v >= 0 && std::isfinite(*v))) throw Error(where + field, "expected a number >= 0");
  };
  positive(edit.lr, "lr");
  non_negative(edit.ce_weight, "ce_weight");
  non_negative(edit.kd_weight, "kd_weight");
  non_negative(edit.align_weight, "align_weight");
  positive(edit.kd_temperature, "kd_temperature");
  if (edit.probe_every && *edit.probe_every < 0)
    throw Error(where + "probe_every", "expected an integer >= 0");
  if (edit.probe_every && *edit.probe_every > 0 && probe_.ids.empty())
    throw Error(where + "probe_every", "this run has no probe text");
  std::lock_guard<std::mutex> lock(knob_mutex_);
  auto merge = [](auto& into, const auto& from) {
    if (from) into = from;
  };
  merge(pending_knobs_.lr, edit.lr);
  merge(pending_knobs_.ce_weight, edit.ce_weight);
  merge(pending_knobs_.kd_weight, edit.kd_weight);
  merge(pending_knobs_.align_weight, edit.align_weight);
  merge(pending_knobs_.kd_temperature, edit.kd_temperature);
  merge(pending_knobs_.probe_every, edit.probe_every);
}

snapshot::KnobEdit DistillRun::knob_values() const {
  std::lock_guard<std::mutex> lock(knob_mutex_);
  snapshot::KnobEdit k;
  k.lr = in_stage2_ ? stage2_peak_lr_.value_or(recipe_.stage2_schedule().peak_lr)
                    : stage1_peak_lr_.value_or(recipe_.stage1_schedule().peak_lr);
  k.ce_weight = stage2_weights_->ce_weight;
  k.kd_weight = stage2_weights_->kd_weight;
  k.align_weight = stage2_weights_->align_weight;
  k.kd_temperature = stage2_weights_->kd_temperature;
  k.probe_every = probe_every_;
  return k;
}

void DistillRun::apply_knobs(const snapshot::KnobEdit& e) {
  std::lock_guard<std::mutex> lock(knob_mutex_);
  if (e.lr) {
    (phase_ == Phase::Stage1 ? stage1_peak_lr_ : stage2_peak_lr_) = *e.lr;
    applied_knobs_[phase_ == Phase::Stage1 ? "stage1_lr" : "stage2_lr"] = *e.lr;
    if (trainer_ && phase_ != Phase::Done) trainer_->set_peak_lr(*e.lr);
  }
  auto weight = [&](const std::optional<double>& v, double& into, const char* key) {
    if (!v) return;
    into = *v;
    applied_knobs_[key] = *v;
  };
  weight(e.ce_weight, stage2_weights_->ce_weight, "ce_weight");
  weight(e.kd_weight, stage2_weights_->kd_weight, "kd_weight");
  weight(e.align_weight, stage2_weights_->align_weight, "align_weight");
  weight(e.kd_temperature, stage2_weights_->kd_temperature, "kd_temperature");
  if (e.probe_every) {
    probe_every_ = *e.probe_every;
    applied_knobs_["probe_every"] = *e.probe_every;
  }
}

void DistillRun::apply_pending_knobs() {
  snapshot::KnobEdit edit;
  {
    std::lock_guard<std::mutex> lock(knob_mutex_);
    if (pending_knobs_.empty()) return;
    edit = pending_knobs_;
    pending_knobs_ = {};
  }
  apply_knobs(edit);
  if (probe_every_ > 0) ensure_prober();
  if (observer_) observer_->on_knobs(stage(), trainer_ ? trainer_->step() : 0, edit);
}

DistillRun::~DistillRun() = default;

std::string DistillRun::stage() const {
  return phase_name(static_cast<int>(phase_));
}

int64_t DistillRun::total_steps() const {
  return recipe_.stage1_steps() + recipe_.stage2_steps();
}

int64_t DistillRun::steps_done() const {
  const int64_t in_stage = trainer_ ? trainer_->step() : 0;
  switch (phase_) {
    case Phase::Stage1:
      return in_stage;
    case Phase::Stage2:
      return recipe_.stage1_steps() + in_stage;
    case Phase::Done:
      return total_steps();
  }
  return 0;
}

void DistillRun::pause() {
  pause_requested_ = true;
}

void DistillRun::stop() {
  stop_requested_ = true;
}

void DistillRun::set_state(RunState to, const std::string& reason) {
  const RunState from = state_.exchange(to);
  if (from != to && observer_) observer_->on_state(from, to, reason);
}

distill::Trainer& DistillRun::trainer() const {
  return *trainer_;
}

double DistillRun::heldout_perplexity(const std::function<at::Tensor(const at::Tensor&)>& logits_of,
                                      int64_t max_windows) const {
  at::NoGradGuard no_grad;
  const ops::AutocastScope autocast(distill::autocast_of(recipe_));
  const int64_t n =
      max_windows > 0 ? std::min<int64_t>(max_windows, final_windows_.size(0)) : final_windows_.size(0);
  return models::perplexity(logits_of, final_windows_.narrow(0, 0, n), kEvalBatch).perplexity;
}

double DistillRun::teacher_eval_perplexity() const {
  // The teacher never changes: its perplexity on the evaluation windows is the reference line of every
  // evaluation, computed once.
  if (teacher_eval_ppl_ <= 0.0) {
    models::GptNeoXForCausalLM t = teacher_;  // forward() is not const
    teacher_eval_ppl_ = heldout_perplexity(
        [t](const at::Tensor& ids) mutable { return t->forward(ids).logits; }, recipe_.data.eval_windows);
  }
  return teacher_eval_ppl_;
}

distill::TrainerCallbacks DistillRun::callbacks(const std::string& stage) {
  distill::TrainerCallbacks cb;
  // On CUDA the stage says, at its first step, which kernels it took since it began (that step and any probe
  // before it): a fused kernel that is registered but not taken leaves the results right and only the step
  // slower, so it is logged rather than left silent.
  const bool on_cuda = distill::run_device(recipe_).is_cuda();
  if (on_cuda) ops::reset_dispatch_tally();
  cb.on_step = [this, stage, first = on_cuda](const StepReport& r) mutable {
    if (first) {
      first = false;
      const auto tally = ops::dispatch_tally();
      const std::string misses = ops::describe_kernel_misses(tally);
      if (misses.empty())
        spdlog::info("{}: up to the first step, every fused kernel asked for was taken ({})", stage,
                     ops::describe_dispatch_tally(tally));
      else {
        const std::string text =
            "up to the first step, ATen's form ran where a fused kernel is registered: " + misses;
        spdlog::warn("{}: {}", stage, text);
        if (observer_) observer_->on_notice(stage, text);
      }
    }
    if (observer_) observer_->on_step(stage, r);
  };
  cb.on_eval = [this, stage](const EvalReport& r) {
    if (observer_) observer_->on_eval(stage, r);
  };
  if (stage == "stage1") {
    cb.eval = [this](int64_t) {
      models::HedgehogLM hh = stage1_;
      return std::vector<std::pair<std::string, double>>{
          {"heldout_perplexity",
           heldout_perplexity([hh](const at::Tensor& ids) mutable { return hh->forward(ids); },
                              recipe_.data.eval_windows)},
          {"teacher_heldout_perplexity", teacher_eval_perplexity()}};
    };
  } else {
    cb.eval = [this](int64_t) {
      stage2_model_->set_training(false);
      const double ppl = heldout_perplexity(stage2_model_->logits, recipe_.data.eval_windows);
      stage2_model_->set_training(true);
      return std::vector<std::pair<std::string, double>>{
          {"heldout_perplexity", ppl}, {"teacher_heldout_perplexity", teacher_eval_perplexity()}};
    };
  }
  return cb;
}

void DistillRun::begin_stage1() {
  phase_ = Phase::Stage1;
  if (!stage1_) stage1_ = distill::make_stage1_model(teacher_, recipe_);
  const int64_t steps = recipe_.stage1_steps();
  if (steps == 0) {
    begin_stage2();
    return;
  }
  cursor_ = std::make_unique<data::BatchCursor>(corpus_.train(), recipe_.data.context,
                                                recipe_.data.batch_size, static_cast<uint64_t>(recipe_.seed));
  trainer_ = std::make_unique<distill::Trainer>(
      distill::trainable_parameters(*stage1_),
      distill::stage_trainer_config(recipe_.stage1.weight_decay, recipe_.stage1_schedule(),
                                    recipe_.stage1.grad_clip, recipe_.data, steps),
      distill::stage1_step(recipe_, teacher_, stage1_, *cursor_), callbacks("stage1"));
  if (stage1_peak_lr_) trainer_->set_peak_lr(*stage1_peak_lr_);
}

void DistillRun::begin_stage2() {
  phase_ = Phase::Stage2;
  {
    std::lock_guard<std::mutex> lock(knob_mutex_);
    in_stage2_ = true;  // knob_values() reads this, not phase_, from other threads
  }
  if (!stage1_) stage1_ = distill::make_stage1_model(teacher_, recipe_);
  if (!student_) student_ = distill::make_student(stage1_, recipe_);
  stage2_model_ = distill::stage2_model_of(student_);
  const int64_t steps = recipe_.stage2_steps();
  if (steps == 0) {
    trainer_.reset();
    phase_ = Phase::Done;
    return;
  }
  cursor_ = std::make_unique<data::BatchCursor>(corpus_.train(), recipe_.data.context,
                                                recipe_.data.batch_size, static_cast<uint64_t>(recipe_.seed));
  const bool kd_from_stage1 = recipe_.stage2.kd_target == "stage1";
  stage2_model_->set_training(true);
  trainer_ = std::make_unique<distill::Trainer>(
      stage2_model_->parameters,
      distill::stage_trainer_config(recipe_.stage2.weight_decay, recipe_.stage2_schedule(),
                                    recipe_.stage2.grad_clip, recipe_.data, steps),
      distill::stage2_step(recipe_, teacher_, *stage2_model_, kd_from_stage1 ? &stage1_ : nullptr, *cursor_,
                           stage2_weights_),
      callbacks("stage2"));
  if (stage2_peak_lr_) trainer_->set_peak_lr(*stage2_peak_lr_);
}

void DistillRun::emit_probe() {
  if (!prober_ || probe_every_ <= 0 || !observer_ || !trainer_) return;
  if (phase_ == Phase::Stage1)
    observer_->on_probe(prober_->stage1(stage1_, name_, trainer_->step(), trainer_->tokens_seen()));
  else if (phase_ == Phase::Stage2)
    observer_->on_probe(prober_->stage2(student_, name_, trainer_->step(), trainer_->tokens_seen()));
}

Checkpoint DistillRun::checkpoint() const {
  Checkpoint c;
  c.run = name_;
  c.stage = stage();
  c.step = trainer_ && phase_ != Phase::Done ? trainer_->step() : 0;
  if (phase_ != Phase::Done && trainer_) {
    trainer_->save(c.tensors, /*include_parameters=*/true);
  } else if (phase_ == Phase::Done && student_) {
    models::HedgeMambaStudent student = student_;
    for (const auto& p : student->named_parameters())
      c.tensors.emplace_back("param." + p.key(), host_copy(p.value()));
  }
  if (phase_ != Phase::Stage1 && stage1_) {
    models::HedgehogLM hh = stage1_;  // a non-const handle for named_parameters()
    for (auto& [n, t] : distill::trainable_parameters(*hh))
      c.tensors.emplace_back("stage1." + n, host_copy(t));
  }
  c.meta = {{"format", kCheckpointFormat},
            {"format_version", kCheckpointVersion},
            {"run", name_},
            {"stage", c.stage},
            {"step", c.step},
            {"steps_done", steps_done()},
            {"recipe", recipe_.to_json()},
            {"teacher_shape", teacher_shape(teacher_->config())},
            {"summary",
             {{"stage1_tokens", summary_.stage1_tokens},
              {"stage2_tokens", summary_.stage2_tokens},
              {"perplexity", summary_.perplexity},
              {"ratio_to_teacher", summary_.ratio_to_teacher},
              {"seconds", summary_.seconds}}}};
  {
    std::lock_guard<std::mutex> lock(knob_mutex_);
    if (!applied_knobs_.empty()) c.meta["knobs"] = applied_knobs_;  // live edits, kept on resume
  }
  if (cursor_ && phase_ != Phase::Done) {
    nlohmann::json cj;
    data::to_json(cj, cursor_->state());
    c.meta["cursor"] = cj;
    c.meta["trainer"] = trainer_->state_json();
  }
  return c;
}

void DistillRun::restore(const Checkpoint& c) {
  const std::string where =
      "checkpoint of " + c.run + " (" + c.stage + " step " + std::to_string(c.step) + ")";
  if (state_ != RunState::Idle || trainer_) throw Error(where, "a run can only be restored before it starts");
  const auto& m = c.meta;
  if (!m.is_object() || m.value("format", "") != kCheckpointFormat)
    throw Error(where + ": meta.format", std::string("expected \"") + kCheckpointFormat + "\"");
  if (m.value("format_version", 0) != kCheckpointVersion)
    throw Error(where + ": meta.format_version", "expected " + std::to_string(kCheckpointVersion) + ", got " +
                                                     m.value("format_version", nlohmann::json()).dump());
  if (!m.contains("recipe")) throw Error(where + ": meta.recipe", "missing");
  const distill::RecipeConfig theirs = distill::RecipeConfig::from_json(m["recipe"], where + ": meta.recipe");
  const std::string diff = first_difference(comparable(theirs), comparable(recipe_), "");
  if (diff == "data.windows_per_step")
    throw Error(where, "data.batch_size × data.accumulation must stay " +
                           std::to_string(theirs.data.batch_size * theirs.data.accumulation) +
                           " windows a step to continue this run, got " +
                           std::to_string(recipe_.data.batch_size) + " × " +
                           std::to_string(recipe_.data.accumulation));
  if (!diff.empty()) throw Error(where, "recipe differs from this run's at " + diff);
  if (m.value("teacher_shape", nlohmann::json()) != teacher_shape(teacher_->config()))
    throw Error(where + ": teacher", "the checkpoint was made with a teacher of shape " +
                                         m.value("teacher_shape", nlohmann::json()).dump() +
                                         ", this one is " + teacher_shape(teacher_->config()).dump());
  std::map<std::string, at::Tensor> by_name;
  for (const auto& [n, t] : c.tensors)
    by_name[n] = t;
  if (m.contains("knobs")) {
    // Edits applied before the checkpoint: the trainers begun below take them up.
    const auto& k = m["knobs"];
    if (!k.is_object()) throw Error(where + ": meta.knobs", "expected an object");
    auto number = [&](const char* key) -> std::optional<double> {
      if (!k.contains(key)) return std::nullopt;
      if (!k[key].is_number()) throw Error(where + ": meta.knobs." + key, "expected a number");
      return k[key].get<double>();
    };
    snapshot::KnobEdit e;
    e.ce_weight = number("ce_weight");
    e.kd_weight = number("kd_weight");
    e.align_weight = number("align_weight");
    e.kd_temperature = number("kd_temperature");
    if (auto v = number("probe_every")) e.probe_every = static_cast<int64_t>(*v);
    stage1_peak_lr_ = number("stage1_lr");
    stage2_peak_lr_ = number("stage2_lr");
    apply_knobs(e);
    applied_knobs_ = k;
    if (probe_every_ > 0) ensure_prober();
  }

  auto load_stage1_parameters = [&] {
    stage1_ = distill::make_stage1_model(teacher_, recipe_);
    at::NoGradGuard no_grad;
    for (auto& [n, p] : distill::trainable_parameters(*stage1_)) {
      auto it = by_name.find("stage1." + n);
      if (it == by_name.end()) throw Error(where + ": stage1." + n, "missing");
      if (!it->second.sizes().equals(p.sizes())) throw Error(where + ": stage1." + n, "wrong shape");
      p.copy_(it->second);
    }
  };
  if (c.stage == "stage1") {
    begin_stage1();
  } else if (c.stage == "stage2") {
    load_stage1_parameters();
    begin_stage2();
  } else if (c.stage == "done") {
    load_stage1_parameters();
    student_ = distill::make_student(stage1_, recipe_);
    at::NoGradGuard no_grad;
    for (auto& p : student_->named_parameters()) {
      auto it = by_name.find("param." + p.key());
      if (it == by_name.end()) throw Error(where + ": param." + p.key(), "missing");
      if (!it->second.sizes().equals(p.value().sizes()))
        throw Error(where + ": param." + p.key(), "wrong shape");
      p.value().copy_(it->second);
    }
    phase_ = Phase::Done;
    in_stage2_ = true;
  } else {
    throw Error(where + ": stage", "expected stage1, stage2 or done");
  }
  if (trainer_ && phase_ != Phase::Done) {
    trainer_->load(c.tensors);
    data::CursorState cs;
    if (!m.contains("cursor")) throw Error(where + ": meta.cursor", "missing");
    data::from_json(m["cursor"], cs);
    cursor_->restore(cs);
  }
  const auto s = m.value("summary", nlohmann::json::object());
  summary_.stage1_tokens = s.value("stage1_tokens", int64_t{0});
  summary_.stage2_tokens = s.value("stage2_tokens", int64_t{0});
  summary_.perplexity = s.value("perplexity", 0.0);
  summary_.ratio_to_teacher = s.value("ratio_to_teacher", 0.0);
  seconds_before_ = s.value("seconds", 0.0);
  summary_.seconds = seconds_before_;
  summary_.steps = steps_done();
}

void DistillRun::emit_checkpoint(const std::string& why) {
  if (observer_) observer_->on_checkpoint(checkpoint(), why);
}

void DistillRun::finish() {
  at::NoGradGuard no_grad;
  student_->eval();
  models::HedgeMambaStudent student = student_;
  summary_.perplexity =
      heldout_perplexity([student](const at::Tensor& ids) mutable { return student->forward(ids); }, 0);
  teacher_ppl_ =
      heldout_perplexity([this](const at::Tensor& ids) { return teacher_->forward(ids).logits; }, 0);
  summary_.ratio_to_teacher = summary_.perplexity / teacher_ppl_;
  trainer_.reset();
  cursor_.reset();
  phase_ = Phase::Done;
}

RunState DistillRun::run(int64_t stop_at_step) {
  started_ = std::chrono::steady_clock::now();
  const double seconds_at_start = summary_.seconds;
  auto update_time = [&] {
    summary_.seconds =
        seconds_at_start + std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    summary_.steps = steps_done();
  };
  set_state(RunState::Running, state_ == RunState::Paused ? "resume" : "start");
  try {
    if (!trainer_ && phase_ == Phase::Stage1) {
      begin_stage1();
      if (observer_ && trainer_) observer_->on_stage_start(stage(), trainer_->config().total_steps);
      if (trainer_) emit_probe();
    } else if (trainer_ && observer_ && !announced_) {
      observer_->on_stage_start(stage(), trainer_->config().total_steps);  // continuing a restored run
    }
    announced_ = true;
    while (phase_ != Phase::Done) {
      if (!trainer_ || trainer_->state() == RunState::Finished) {
        // The stage is complete: record its tokens and move on.
        if (phase_ == Phase::Stage1) {
          summary_.stage1_tokens = trainer_ ? trainer_->tokens_seen() : 0;
          begin_stage2();
          if (phase_ == Phase::Stage2) {
            if (observer_) observer_->on_stage_start("stage2", trainer_->config().total_steps);
            emit_probe();
          }
        } else {
          summary_.stage2_tokens = trainer_ ? trainer_->tokens_seen() : 0;
          update_time();
          finish();
        }
        continue;
      }
      update_time();
      if (stop_requested_ || (stop_at_step > 0 && steps_done() >= stop_at_step)) {
        summary_.stopped_early = true;
        emit_checkpoint("stop");
        set_state(RunState::Finished, stop_requested_ ? "stop requested" : "step limit reached");
        stop_requested_ = false;
        return state_;
      }
      if (pause_requested_) {
        pause_requested_ = false;
        emit_checkpoint("pause");
        set_state(RunState::Paused, "pause requested");
        return state_;
      }
      apply_pending_knobs();
      const RunState st = trainer_->run_until(trainer_->step() + 1);
      if (st == RunState::Paused || st == RunState::Failed) {
        last_error_ = trainer_->last_error();
        update_time();
        emit_checkpoint("error");
        set_state(RunState::Paused, last_error_.empty() ? "training stopped" : last_error_);
        return state_;
      }
      const int64_t step = trainer_->step();
      const bool last = step == trainer_->config().total_steps;
      if (phase_ == Phase::Stage1)
        summary_.stage1_tokens = trainer_->tokens_seen();
      else
        summary_.stage2_tokens = trainer_->tokens_seen();
      if (probe_every_ > 0 && (step % probe_every_ == 0 || last)) emit_probe();
      const int64_t every = recipe_.data.checkpoint_every;
      if (every > 0 && step % every == 0 && !last) {
        update_time();
        emit_checkpoint("interval");
      }
    }
    update_time();
    summary_.stopped_early = false;
    if (observer_) observer_->on_finished(summary_);
    emit_checkpoint("end");
    set_state(RunState::Finished, "done");
    return state_;
  } catch (const std::exception& e) {
    last_error_ = e.what();
    set_state(RunState::Failed, last_error_);
    throw;
  }
}

models::HedgeMambaStudent student_from_checkpoint(const Checkpoint& c,
                                                  const models::GptNeoXForCausalLM& teacher) {
  const std::string where =
      "checkpoint of " + c.run + " (" + c.stage + " step " + std::to_string(c.step) + ")";
  if (!c.meta.is_object() || c.meta.value("format", "") != kCheckpointFormat)
    throw Error(where + ": meta.format", std::string("expected \"") + kCheckpointFormat + "\"");
  if (!c.meta.contains("recipe")) throw Error(where + ": meta.recipe", "missing");
  const auto recipe = distill::RecipeConfig::from_json(c.meta["recipe"], where + ": meta.recipe");
  if (c.meta.value("teacher_shape", nlohmann::json()) != teacher_shape(teacher->config()))
    throw Error(where + ": teacher", "the checkpoint was made with a teacher of shape " +
                                         c.meta.value("teacher_shape", nlohmann::json()).dump() +
                                         ", this one is " + teacher_shape(teacher->config()).dump());
  std::map<std::string, at::Tensor> by_name;
  for (const auto& [n, t] : c.tensors)
    by_name[n] = t;
  auto copy_into = [&](torch::nn::Module& module, const std::string& prefix, bool trainable_only) {
    at::NoGradGuard no_grad;
    for (auto& p : module.named_parameters()) {
      if (trainable_only && !p.value().requires_grad()) continue;
      auto it = by_name.find(prefix + p.key());
      if (it == by_name.end()) throw Error(where + ": " + prefix + p.key(), "missing");
      if (!it->second.sizes().equals(p.value().sizes()))
        throw Error(where + ": " + prefix + p.key(), "wrong shape");
      p.value().copy_(it->second);
    }
  };
  models::HedgehogLM stage1 = distill::make_stage1_model(teacher, recipe);
  copy_into(*stage1, c.stage == "stage1" ? "param." : "stage1.", true);
  models::HedgeMambaStudent student =
      models::HedgeMambaStudentImpl::from_stage1(stage1, distill::mixer_options(recipe));
  if (c.stage != "stage1") copy_into(*student, "param.", false);
  student->eval();
  return student;
}

}  // namespace hedgelab::run
