#include "core/distill/trainer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/record_function.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <new>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/common/error.h"

namespace hedgelab::distill {

namespace {

at::Tensor host_copy(const at::Tensor& t) {
  return t.detach().to(at::kCPU, t.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
}

// The step's memory ran out (a CUDA allocation, or a host one): the run can go on with smaller micro-batches.
bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) || dynamic_cast<const std::bad_alloc*>(&e)) return true;
  const std::string what = e.what();
  return what.find("CUDA out of memory") != std::string::npos ||
         what.find("CUBLAS_STATUS_ALLOC_FAILED") != std::string::npos;
}

std::string first_line_of(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

// "align.layers.3" / "layers.3.mixer.delta_bias" → " (layer 3)"; empty when the name carries no layer.
std::string layer_note(const std::string& name) {
  const std::string key = "layers.";
  for (size_t at = name.find(key); at != std::string::npos; at = name.find(key, at + 1)) {
    if (at > 0 && name[at - 1] != '.') continue;
    size_t end = at + key.size();
    while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end])))
      ++end;
    if (end > at + key.size() && (end == name.size() || name[end] == '.'))
      return " (layer " + name.substr(at + key.size(), end - at - key.size()) + ")";
  }
  return {};
}

std::string describe_value(double v) {
  return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
}

std::string shape_of(const at::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

std::string format_double(double x) {
  std::ostringstream out;
  out.precision(12);
  out << x;
  return out.str();
}

at::Tensor int_scalar(int64_t v) {
  return at::full({}, v, at::TensorOptions().dtype(at::kLong));
}

// Ends a run_until's time in the loop on every path out of it.
struct LoopGuard {
  std::atomic<bool>& flag;
  std::mutex& mutex;
  ~LoopGuard() {
    std::lock_guard<std::mutex> lock(mutex);
    flag = false;
  }
};

}  // namespace

LossParts& LossParts::add(std::string name, at::Tensor value, double weight) {
  parts.push_back({std::move(name), std::move(value), weight});
  return *this;
}

void TrainerConfig::validate() const {
  auto fail = [](const std::string& field, const std::string& expected, const std::string& got) {
    throw Error("trainer: " + field, "expected " + expected + ", got " + got);
  };
  if (accumulation < 1) fail("accumulation", "an integer >= 1", std::to_string(accumulation));
  if (total_steps < 1) fail("total_steps", "an integer >= 1", std::to_string(total_steps));
  if (eval_every < 0) fail("eval_every", "an integer >= 0", std::to_string(eval_every));
  if (!(grad_clip >= 0 && std::isfinite(grad_clip)))
    fail("grad_clip", "a number >= 0", format_double(grad_clip));
  if (!(adamw.beta1 >= 0 && adamw.beta1 < 1))
    fail("adamw.beta1", "a number in [0, 1)", format_double(adamw.beta1));
  if (!(adamw.beta2 >= 0 && adamw.beta2 < 1))
    fail("adamw.beta2", "a number in [0, 1)", format_double(adamw.beta2));
  if (!(adamw.eps > 0 && std::isfinite(adamw.eps)))
    fail("adamw.eps", "a number > 0", format_double(adamw.eps));
  if (!(adamw.weight_decay >= 0 && adamw.weight_decay <= 1))
    fail("adamw.weight_decay", "a number in [0, 1]", format_double(adamw.weight_decay));
  if (!(schedule.peak_lr > 0 && std::isfinite(schedule.peak_lr)))
    fail("schedule.peak_lr", "a number > 0", format_double(schedule.peak_lr));
  if (!(schedule.min_lr >= 0 && schedule.min_lr <= schedule.peak_lr))
    fail("schedule.min_lr", "a number in [0, peak_lr]", format_double(schedule.min_lr));
  if (schedule.warmup_steps < 0)
    fail("schedule.warmup_steps", "an integer >= 0", std::to_string(schedule.warmup_steps));
  if (schedule.total_steps < 1)
    fail("schedule.total_steps", "an integer >= 1", std::to_string(schedule.total_steps));
}

Trainer::Trainer(NamedTensors parameters, TrainerConfig config, StepFunction step_fn,
                 TrainerCallbacks callbacks)
    : params_(std::move(parameters)),
      config_(std::move(config)),
      step_fn_(std::move(step_fn)),
      callbacks_(std::move(callbacks)) {
  config_.validate();
  if (!step_fn_) throw Error("trainer", "no step function");
  if (params_.empty()) throw Error("trainer", "no parameters to train");
  std::set<std::string> names;
  for (const auto& [name, p] : params_) {
    const std::string where = "trainer: parameter \"" + name + "\"";
    if (name.empty()) throw Error("trainer", "a parameter has an empty name");
    if (!names.insert(name).second) throw Error(where, "appears twice");
    if (!p.defined()) throw Error(where, "is undefined");
    if (!p.is_floating_point()) throw Error(where, "expected a floating-point tensor");
    if (!p.requires_grad() || !p.is_leaf()) throw Error(where, "expected a leaf tensor that requires grad");
  }
  at::NoGradGuard no_grad;
  moments_.reserve(params_.size());
  for (const auto& entry : params_) {
    const at::Tensor& p = entry.second;
    moments_.push_back({at::zeros_like(p, at::MemoryFormat::Contiguous),
                        at::zeros_like(p, at::MemoryFormat::Contiguous), 0});
  }
}

void Trainer::set_state(RunState to, const std::string& reason) {
  const RunState from = state_.exchange(to);
  if (from != to && callbacks_.on_state_change) callbacks_.on_state_change(from, to, reason);
}

std::string Trainer::last_error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_error_;
}

void Trainer::pause() {
  pause_requested_ = true;
}

void Trainer::resume() {
  bool to_idle = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pause_requested_ = false;
    if (in_loop_) {
      resume_requested_ = true;
      resumed_.notify_all();
    } else {
      RunState expected = RunState::Paused;
      to_idle = state_.compare_exchange_strong(expected, RunState::Idle);
    }
  }
  if (to_idle && callbacks_.on_state_change)
    callbacks_.on_state_change(RunState::Paused, RunState::Idle, "resumed; the next run continues");
}

void Trainer::stop() {
  RunState from = RunState::Idle;
  bool finished = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (in_loop_) {
      stop_requested_ = true;
      resumed_.notify_all();
    } else {
      for (RunState s : {RunState::Idle, RunState::Paused}) {
        RunState expected = s;
        if (state_.compare_exchange_strong(expected, RunState::Finished)) {
          from = s;
          finished = true;
          stopped_early_ = true;
          break;
        }
      }
    }
  }
  if (finished && callbacks_.on_state_change)
    callbacks_.on_state_change(from, RunState::Finished, "stopped at step " + std::to_string(step_.load()));
}

bool Trainer::wait_for_resume() {
  std::unique_lock<std::mutex> lock(mutex_);
  resumed_.wait(lock, [&] { return resume_requested_.load() || stop_requested_.load(); });
  resume_requested_ = false;
  return !stop_requested_.load();
}

RunState Trainer::run_until(int64_t step_limit) {
  RunState entry;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    entry = state_.load();
    if (entry == RunState::Finished || entry == RunState::Failed || in_loop_) return entry;
    in_loop_ = true;
    resume_requested_ = false;
    last_error_.clear();
  }
  LoopGuard guard{in_loop_, mutex_};
  const int64_t limit = std::min(step_limit, config_.total_steps);
  set_state(RunState::Running, entry == RunState::Paused
                                   ? "resumed at step " + std::to_string(step_.load())
                                   : "running from step " + std::to_string(step_.load()));

  // Paused: either hand control back to the caller, or wait here for resume()/stop().
  auto paused = [&](const std::string& reason, bool& keep_going) -> RunState {
    set_state(RunState::Paused, reason);
    keep_going = false;
    if (!config_.wait_while_paused) return RunState::Paused;
    if (!wait_for_resume()) {
      stop_requested_ = false;
      stopped_early_ = true;
      set_state(RunState::Finished, "stopped at step " + std::to_string(step_.load()));
      return RunState::Finished;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      last_error_.clear();
    }
    set_state(RunState::Running, "resumed at step " + std::to_string(step_.load()));
    keep_going = true;
    return RunState::Running;
  };

  while (step_.load() < limit) {
    if (stop_requested_.exchange(false)) {
      stopped_early_ = true;
      set_state(RunState::Finished, "stopped at step " + std::to_string(step_.load()));
      return RunState::Finished;
    }
    if (pause_requested_.exchange(false)) {
      bool keep_going = false;
      const RunState s = paused("paused at step " + std::to_string(step_.load()), keep_going);
      if (!keep_going) return s;
      continue;
    }
    StepOutcome outcome;
    try {
      outcome = do_step();
    } catch (const std::exception& e) {
      for (auto& entry_p : params_)
        entry_p.second.mutable_grad().reset();
      if (is_out_of_memory(e)) {
        // Nothing was applied (the update comes after every micro-batch): pause, so that the caller keeps
        // the last good state and can continue with a smaller micro-batch.
        {
          std::lock_guard<std::mutex> lock(mutex_);
          last_error_ = "step " + std::to_string(step_.load() + 1) + ": out of memory (" +
                        first_line_of(e.what()) + "); nothing was applied, paused before the step" +
                        (config_.out_of_memory_hint.empty() ? "" : "; " + config_.out_of_memory_hint);
        }
        bool keep_going = false;
        const RunState s = paused(last_error(), keep_going);
        if (!keep_going) return s;
        continue;
      }
      const std::string reason = "step " + std::to_string(step_.load() + 1) + ": " + e.what();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        last_error_ = reason;
      }
      set_state(RunState::Failed, reason);
      return RunState::Failed;
    }
    if (outcome == StepOutcome::NonFinite) {
      bool keep_going = false;
      const RunState s = paused(last_error(), keep_going);
      if (!keep_going) return s;
      continue;
    }
    const int64_t done = step_.load();
    const bool eval_due =
        (config_.eval_every > 0 && done % config_.eval_every == 0) || done == config_.total_steps;
    if (callbacks_.eval && eval_due) {
      EvalReport report;
      report.step = done;
      try {
        at::NoGradGuard no_grad;
        report.metrics = callbacks_.eval(done);
      } catch (const std::exception& e) {
        const std::string reason = "evaluation after step " + std::to_string(done) + ": " + e.what();
        {
          std::lock_guard<std::mutex> lock(mutex_);
          last_error_ = reason;
        }
        set_state(RunState::Failed, reason);
        return RunState::Failed;
      }
      if (callbacks_.on_eval) callbacks_.on_eval(report);
    }
  }
  if (step_.load() >= config_.total_steps) {
    set_state(RunState::Finished, "finished " + std::to_string(step_.load()) + " steps");
    return RunState::Finished;
  }
  set_state(RunState::Idle, "reached step " + std::to_string(step_.load()));
  return RunState::Idle;
}

Trainer::StepOutcome Trainer::do_step() {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t index = step_.load();  // 0-based: what the step function and the schedule see
  const std::string step_name = "step " + std::to_string(index + 1);
  const double lr = config_.schedule.at(index);
  const int64_t A = config_.accumulation;
  for (auto& entry : params_)
    entry.second.mutable_grad().reset();
  auto abandon = [&](const std::string& reason) {
    for (auto& entry : params_)
      entry.second.mutable_grad().reset();
    std::lock_guard<std::mutex> lock(mutex_);
    last_error_ = reason + "; nothing was applied, paused before " + step_name;
    return StepOutcome::NonFinite;
  };

  std::vector<std::string> names;
  std::vector<double> part_sums;
  double total_sum = 0.0;
  int64_t tokens = 0;
  for (int64_t micro = 0; micro < A; ++micro) {
    LossParts lp = step_fn_(index, micro);
    if (lp.parts.empty()) throw Error(step_name, "the step function returned no loss parts");
    std::vector<at::Tensor> values;
    for (size_t i = 0; i < lp.parts.size(); ++i) {
      const LossPart& part = lp.parts[i];
      if (!part.value.defined() || part.value.numel() != 1)
        throw Error(
            "loss part \"" + part.name + "\"",
            "expected a scalar tensor, got " + (part.value.defined() ? shape_of(part.value) : "none"));
      if (!std::isfinite(part.weight))
        throw Error("loss part \"" + part.name + "\"",
                    "expected a finite weight, got " + format_double(part.weight));
      if (micro == 0) {
        names.push_back(part.name);
      } else if (i >= names.size() || names[i] != part.name) {
        throw Error("loss part \"" + part.name + "\"",
                    "micro-batches must yield the same parts in the same order");
      }
      values.push_back(part.value.detach().reshape({}).to(at::kDouble));
    }
    if (names.size() != lp.parts.size())
      throw Error(step_name, "micro-batches must yield the same parts in the same order");
    if (micro == 0) part_sums.assign(names.size(), 0.0);
    // One transfer for all parts: the check costs a single synchronisation on a GPU.
    const at::Tensor host = at::stack(values).cpu().contiguous();
    const double* v = host.data_ptr<double>();
    at::Tensor total;
    double total_value = 0.0;
    for (size_t i = 0; i < names.size(); ++i) {
      if (!std::isfinite(v[i]))
        return abandon(step_name + ": loss part \"" + names[i] + "\" is " + describe_value(v[i]) +
                       layer_note(names[i]) + " in micro-batch " + std::to_string(micro + 1));
      part_sums[i] += v[i];
      if (lp.parts[i].weight == 0.0) continue;  // a monitored part: reported, not trained on
      total_value += lp.parts[i].weight * v[i];
      at::Tensor term = lp.parts[i].value.reshape({}) * lp.parts[i].weight;
      total = total.defined() ? total + term : term;
    }
    if (!total.defined()) throw Error(step_name, "every loss part has weight 0");
    if (total.requires_grad()) {
      RECORD_USER_SCOPE(
          "hedgelab::backward");  // a profiler's name for the step's parts (no cost without one)
      (total / static_cast<double>(A)).backward();
    }
    total_sum += total_value;
    tokens += lp.tokens;
  }

  // Gradients: all finite, or the step is abandoned naming the first parameter that is not. A non-finite
  // entry makes the global norm non-finite, so the norm is the check; only then is each gradient looked at.
  std::vector<size_t> with_grad;
  std::vector<at::Tensor> grads_now;
  for (size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor& g = params_[i].second.grad();
    if (!g.defined()) continue;  // unused this step, like torch's optimizers: no update, no moment decay
    with_grad.push_back(i);
    grads_now.push_back(g);
  }
  double grad_norm = 0.0;
  if (!with_grad.empty()) {
    RECORD_USER_SCOPE("hedgelab::grad_norm");
    // Every gradient float32, or every one float64, on one device: one multi-tensor norm.
    const at::Tensor& first = grads_now.front();
    const bool one_wide_dtype =
        (first.scalar_type() == at::kFloat || first.scalar_type() == at::kDouble) &&
        std::all_of(grads_now.begin(), grads_now.end(), [&](const at::Tensor& g) {
          return g.scalar_type() == first.scalar_type() && g.device() == first.device();
        });
    std::vector<at::Tensor> norms;  // [n] 0-dim, each ‖g‖₂ in float32 (float64 for float64 gradients)
    if (one_wide_dtype) {
      norms = at::_foreach_norm(grads_now, 2);  // one multi-tensor launch per chunk on CUDA
    } else {
      for (const at::Tensor& g : grads_now)
        norms.push_back(g.norm(2, g.scalar_type() == at::kDouble ? at::kDouble : at::kFloat).to(at::kDouble));
    }
    grad_norm = at::stack(norms).to(at::kDouble).pow(2).sum().sqrt().item<double>();
    if (!std::isfinite(grad_norm)) {
      for (size_t i : with_grad) {
        const auto& [name, p] = params_[i];
        if (at::isfinite(p.grad()).all().item<bool>()) continue;
        const bool has_nan = at::isnan(p.grad()).any().item<bool>();
        return abandon(step_name + ": the gradient of " + name + " is " + (has_nan ? "nan" : "inf") +
                       layer_note(name));
      }
      return abandon(step_name + ": the gradient norm overflows");  // finite entries whose squares do
    }
  }

  at::NoGradGuard no_grad;
  if (config_.grad_clip > 0.0) {
    const double coef = config_.grad_clip / (grad_norm + 1e-6);
    if (coef < 1.0)
      at::_foreach_mul_(grads_now, coef);  // in place: one multi-tensor launch per chunk on CUDA
  }
  // AdamW (adamw.h: the fused multi-tensor kernel on CUDA where LibTorch has it, the reference otherwise).
  RECORD_USER_SCOPE("hedgelab::adamw");
  std::vector<AdamWSlot> slots;
  slots.reserve(with_grad.size());
  for (size_t i : with_grad) {
    const at::Tensor& p = params_[i].second;
    Moments& m = moments_[i];
    m.steps += 1;
    slots.push_back({p, p.grad(), m.exp_avg, m.exp_avg_sq, m.steps, p.dim() >= 2});
  }
  adamw_update(slots, config_.adamw, lr);
  for (auto& entry : params_)
    entry.second.mutable_grad().reset();

  step_.store(index + 1);
  tokens_seen_ += tokens;
  if (callbacks_.on_step) {
    StepReport report;
    report.step = index + 1;
    report.total_steps = config_.total_steps;
    report.lr = lr;
    for (size_t i = 0; i < names.size(); ++i)
      report.parts.emplace_back(names[i], part_sums[i] / A);
    report.total = total_sum / A;
    report.grad_norm = grad_norm;
    report.tokens = tokens;
    report.tokens_seen = tokens_seen_.load();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report.tokens_per_second = seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0;
    callbacks_.on_step(report);
  }
  return StepOutcome::Done;
}

void Trainer::save(NamedTensors& out, bool include_parameters) const {
  at::NoGradGuard no_grad;
  out.emplace_back("trainer.step", int_scalar(step_.load()));
  out.emplace_back("trainer.tokens_seen", int_scalar(tokens_seen_.load()));
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string& name = params_[i].first;
    // Copies, on the CPU: training goes on mutating the live moments in place, and a checkpoint must not
    // take GPU memory the run needs.
    out.emplace_back("adamw." + name + ".exp_avg", host_copy(moments_[i].exp_avg));
    out.emplace_back("adamw." + name + ".exp_avg_sq", host_copy(moments_[i].exp_avg_sq));
    out.emplace_back("adamw." + name + ".step", int_scalar(moments_[i].steps));
    if (include_parameters) out.emplace_back("param." + name, host_copy(params_[i].second));
  }
}

void Trainer::load(const NamedTensors& in) {
  if (in_loop_.load()) throw Error("trainer state", "cannot be loaded while the run is stepping");
  std::map<std::string, const at::Tensor*> by_name;
  for (const auto& [name, t] : in)
    by_name[name] = &t;
  auto need = [&](const std::string& key) -> const at::Tensor& {
    auto it = by_name.find(key);
    if (it == by_name.end() || !it->second->defined()) throw Error("trainer state: " + key, "missing");
    return *it->second;
  };
  auto need_int = [&](const std::string& key, int64_t lo, int64_t hi) {
    const at::Tensor& t = need(key);
    if (t.numel() != 1 || t.is_floating_point())
      throw Error("trainer state: " + key, "expected an integer scalar, got " + shape_of(t));
    const int64_t v = t.item<int64_t>();
    if (v < lo || v > hi)
      throw Error("trainer state: " + key, "expected an integer in [" + std::to_string(lo) + ", " +
                                               std::to_string(hi) + "], got " + std::to_string(v));
    return v;
  };
  auto need_shaped = [&](const std::string& key, const at::Tensor& like) -> const at::Tensor& {
    const at::Tensor& t = need(key);
    if (!t.sizes().equals(like.sizes()))
      throw Error("trainer state: " + key, "expected shape " + shape_of(like) + ", got " + shape_of(t));
    return t;
  };
  // Everything is checked before anything is copied: a bad state changes nothing.
  const int64_t step = need_int("trainer.step", 0, config_.total_steps);
  const int64_t tokens = need_int("trainer.tokens_seen", 0, std::numeric_limits<int64_t>::max());
  std::vector<int64_t> counts;
  for (const auto& [name, p] : params_) {
    need_shaped("adamw." + name + ".exp_avg", p);
    need_shaped("adamw." + name + ".exp_avg_sq", p);
    counts.push_back(need_int("adamw." + name + ".step", 0, step));
    if (by_name.count("param." + name)) need_shaped("param." + name, p);
  }
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string& name = params_[i].first;
    moments_[i].exp_avg.copy_(need("adamw." + name + ".exp_avg"));
    moments_[i].exp_avg_sq.copy_(need("adamw." + name + ".exp_avg_sq"));
    moments_[i].steps = counts[i];
    if (by_name.count("param." + name)) params_[i].second.copy_(need("param." + name));
    params_[i].second.mutable_grad().reset();
  }
  step_.store(step);
  tokens_seen_ = tokens;
  stopped_early_ = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    last_error_.clear();
  }
  set_state(step >= config_.total_steps ? RunState::Finished : RunState::Idle,
            "state loaded at step " + std::to_string(step));
}

void Trainer::set_peak_lr(double peak) {
  if (!(peak > 0 && std::isfinite(peak))) throw Error("schedule.peak_lr", "expected a number > 0");
  auto& s = config_.schedule;
  s.min_lr = std::min(peak, s.min_lr * (peak / s.peak_lr));
  s.peak_lr = peak;
}

nlohmann::json Trainer::state_json() const {
  const auto& s = config_.schedule;
  const auto& o = config_.adamw;
  return {
      {"state", to_string(state_.load())},
      {"step", step_.load()},
      {"total_steps", config_.total_steps},
      {"tokens_seen", tokens_seen_.load()},
      {"next_lr", s.at(step_.load())},
      {"schedule",
       {{"peak_lr", s.peak_lr},
        {"min_lr", s.min_lr},
        {"warmup_steps", s.warmup_steps},
        {"total_steps", s.total_steps}}},
      {"adamw", {{"beta1", o.beta1}, {"beta2", o.beta2}, {"eps", o.eps}, {"weight_decay", o.weight_decay}}},
      {"grad_clip", config_.grad_clip},
      {"accumulation", config_.accumulation},
      {"parameters", static_cast<int64_t>(params_.size())}};
}

}  // namespace hedgelab::distill
