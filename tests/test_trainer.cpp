// The generic trainer on a toy 2-layer MLP regression: it learns, it is deterministic, its state machine
// honours pause/resume/stop from another thread, non-finite values never reach the weights, accumulation
// and save/restore are exact, and its AdamW and schedule agree with independent references.
#include <ATen/ATen.h>
#include <torch/optim/adamw.h>
#include <torch/types.h>  // clip_grad.h needs torch::Tensor declared first

#include <torch/nn/utils/clip_grad.h>

#include <QTest>

#include <chrono>
#include <cmath>
#include <limits>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/distill/trainer.h"
#include "tests/test_util.h"

using namespace hedgelab;
using namespace hedgelab::distill;

namespace {

// Fixed data and weights from smooth functions: no random generator, so every run starts identically.
struct Toy {
  at::Tensor X, Y;  // [64, 8], [64, 1]
  NamedTensors params;

  explicit Toy(at::ScalarType dtype = at::kFloat) {
    const auto opt = at::TensorOptions().dtype(dtype);
    X = at::sin(at::arange(64 * 8, opt).reshape({64, 8}) * 0.37);
    Y = (at::cos(X.sum(1, true) * 0.8) + X.narrow(1, 0, 1) * 0.5);
    auto init = [&](std::vector<int64_t> shape, double phase, double scale) {
      int64_t n = 1;
      for (int64_t s : shape)
        n *= s;
      return (at::sin(at::arange(n, opt) * 1.3 + phase) * scale).reshape(shape).requires_grad_(true);
    };
    params = {{"layers.0.w", init({8, 16}, 0.1, 0.4)},
              {"layers.0.b", init({16}, 0.2, 0.1)},
              {"layers.1.w", init({16, 1}, 0.3, 0.3)},
              {"layers.1.b", init({1}, 0.4, 0.1)}};
  }
  const at::Tensor& p(const std::string& name) const {
    for (const auto& [n, t] : params)
      if (n == name) return t;
    throw std::logic_error(name);
  }
  // MSE on rows [begin, begin + count) plus a small weighted L2 part.
  LossParts loss(int64_t begin, int64_t count) const {
    const at::Tensor x = X.narrow(0, begin, count);
    const at::Tensor h = at::tanh(at::matmul(x, p("layers.0.w")) + p("layers.0.b"));
    const at::Tensor y = at::matmul(h, p("layers.1.w")) + p("layers.1.b");
    LossParts parts;
    parts.add("mse", (y - Y.narrow(0, begin, count)).pow(2).mean());
    parts.add("l2.layers.0", p("layers.0.w").pow(2).mean(), 0.01);
    parts.tokens = count;
    return parts;
  }
  NamedTensors snapshot() const {
    NamedTensors out;
    for (const auto& [n, t] : params)
      out.emplace_back(n, t.detach().clone());
    return out;
  }
};

TrainerConfig toy_config(int64_t steps, double lr = 1e-2) {
  TrainerConfig c;
  c.schedule.peak_lr = lr;
  c.schedule.min_lr = lr / 10;
  c.schedule.warmup_steps = 3;
  c.schedule.total_steps = steps;
  c.total_steps = steps;
  c.grad_clip = 1.0;
  c.adamw.weight_decay = 0.01;
  return c;
}

// A step function that walks through the data in windows of 16 rows, so the step index matters.
StepFunction windows_of(const Toy& toy) {
  return [&toy](int64_t step, int64_t) { return toy.loss((step * 16) % 64, 16); };
}

bool same(const NamedTensors& a, const NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].first != b[i].first || !at::equal(a[i].second, b[i].second)) return false;
  return true;
}

double max_diff(const NamedTensors& a, const NamedTensors& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i)
    d = std::max(d, (a[i].second - b[i].second).abs().max().item<double>());
  return d;
}

bool wait_until(const std::function<bool()>& cond, int timeout_ms = 20000) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace

class TestTrainer : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void loss_decreases() {
    Toy toy;
    std::vector<StepReport> reports;
    TrainerCallbacks cb;
    cb.on_step = [&](const StepReport& r) { reports.push_back(r); };
    Trainer trainer(
        toy.params, toy_config(300, 2e-2), [&](int64_t, int64_t) { return toy.loss(0, 64); }, cb);
    QCOMPARE(trainer.run(), RunState::Finished);
    QCOMPARE(trainer.step(), int64_t(300));
    QCOMPARE(reports.size(), size_t(300));
    QCOMPARE(reports.back().step, int64_t(300));
    QCOMPARE(reports.back().tokens_seen, int64_t(300 * 64));
    QCOMPARE(reports[0].parts.size(), size_t(2));
    QCOMPARE(reports[0].parts[0].first, std::string("mse"));
    const double first = reports.front().parts[0].second, last = reports.back().parts[0].second;
    QVERIFY2(last < 0.2 * first, (std::to_string(first) + " -> " + std::to_string(last)).c_str());
    // The total is the weighted sum of the parts.
    const auto& r = reports.back();
    QVERIFY(std::abs(r.total - (r.parts[0].second + 0.01 * r.parts[1].second)) < 1e-9);
    QVERIFY(r.grad_norm > 0 && r.tokens_per_second > 0);
  }

  // The reported gradient norm is the global 2-norm, on both of the trainer's paths: every gradient float32
  // (one multi-tensor norm) and a mix of float32 and float64 (a norm per tensor). L = Σ wᵢ·pᵢ makes ∂L/∂pᵢ =
  // wᵢ, so the norm is √Σ wᵢ², summed here in double from the values alone.
  void grad_norm_is_the_global_two_norm_whatever_the_dtypes() {
    for (const bool mixed : {false, true}) {
      const at::Tensor wa = at::arange(1, 4, at::kDouble) * 0.5;             // [3]
      const at::Tensor wb = at::arange(-2, 2, at::kDouble).reshape({2, 2});  // [2, 2]
      const at::Tensor wc = at::full({5}, 0.25, at::kDouble);                // [5]
      NamedTensors params{{"a", at::zeros({3}).requires_grad_(true)},
                          {"b", at::zeros({2, 2}).requires_grad_(true)},
                          {"c", at::zeros({5}, mixed ? at::kDouble : at::kFloat).requires_grad_(true)}};
      auto step = [&](int64_t, int64_t) {
        LossParts parts;
        const at::Tensor l = (params[0].second * wa.to(at::kFloat)).sum() +
                             (params[1].second * wb.to(at::kFloat)).sum() +
                             (params[2].second * wc.to(params[2].second.scalar_type())).sum().to(at::kFloat);
        parts.add("linear", l);
        parts.tokens = 1;
        return parts;
      };
      double expected = 0;
      for (const at::Tensor* w : {&wa, &wb, &wc})
        for (int64_t i = 0; i < w->numel(); ++i) {
          const double v = w->reshape({-1})[i].item<double>();
          expected += v * v;
        }
      expected = std::sqrt(expected);
      TrainerConfig config = toy_config(1);
      config.schedule.warmup_steps = 0;
      config.grad_clip = 0.0;
      double got = -1;
      TrainerCallbacks cb;
      cb.on_step = [&](const StepReport& r) { got = r.grad_norm; };
      Trainer trainer(params, config, step, cb);
      QCOMPARE(trainer.run(), RunState::Finished);
      QVERIFY2(std::abs(got - expected) < 1e-6 * expected,
               (std::string(mixed ? "mixed" : "float32") + ": " + std::to_string(got) + " vs " +
                std::to_string(expected))
                   .c_str());
    }
  }

  void deterministic_across_runs() {
    std::vector<double> totals[2];
    NamedTensors finals[2];
    for (int run = 0; run < 2; ++run) {
      Toy toy;
      TrainerCallbacks cb;
      cb.on_step = [&](const StepReport& r) { totals[run].push_back(r.total); };
      Trainer trainer(toy.params, toy_config(40), windows_of(toy), cb);
      QCOMPARE(trainer.run(), RunState::Finished);
      finals[run] = toy.snapshot();
    }
    QVERIFY(totals[0] == totals[1]);  // bit-identical, not merely close
    QVERIFY(same(finals[0], finals[1]));
  }

  void pause_resume_stop_from_another_thread() {
    Toy toy;
    std::mutex log_mutex;
    std::vector<std::pair<RunState, RunState>> changes;
    TrainerCallbacks cb;
    cb.on_state_change = [&](RunState from, RunState to, const std::string&) {
      std::lock_guard<std::mutex> lock(log_mutex);
      changes.emplace_back(from, to);
    };
    auto slow = [&](int64_t step, int64_t micro) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      return toy.loss((step * 16) % 64, 16);
    };
    Trainer trainer(toy.params, toy_config(100000), slow, cb);
    QCOMPARE(trainer.state(), RunState::Idle);

    // Returning mode: run() hands back Paused, a later run() continues.
    RunState result = RunState::Idle;
    std::thread worker([&] { result = trainer.run(); });
    QVERIFY(wait_until([&] { return trainer.step() >= 5; }));
    trainer.pause();
    worker.join();
    QCOMPARE(result, RunState::Paused);
    QCOMPARE(trainer.state(), RunState::Paused);
    const int64_t paused_at = trainer.step();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    QCOMPARE(trainer.step(), paused_at);  // nothing steps while paused
    QVERIFY(trainer.last_error().empty());

    trainer.resume();
    QCOMPARE(trainer.state(), RunState::Idle);
    std::thread worker2([&] { result = trainer.run(); });
    QVERIFY(wait_until([&] { return trainer.step() >= paused_at + 5; }));
    trainer.stop();
    worker2.join();
    QCOMPARE(result, RunState::Finished);
    QVERIFY(trainer.stopped_early());
    QVERIFY(trainer.step() < 100000);
    QCOMPARE(trainer.run(), RunState::Finished);  // a finished run stays finished

    std::lock_guard<std::mutex> lock(log_mutex);
    const std::vector<std::pair<RunState, RunState>> expected = {{RunState::Idle, RunState::Running},
                                                                 {RunState::Running, RunState::Paused},
                                                                 {RunState::Paused, RunState::Idle},
                                                                 {RunState::Idle, RunState::Running},
                                                                 {RunState::Running, RunState::Finished}};
    QVERIFY(changes == expected);
  }

  void waiting_mode_blocks_while_paused() {
    Toy toy;
    auto slow = [&](int64_t step, int64_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      return toy.loss((step * 16) % 64, 16);
    };
    TrainerConfig config = toy_config(100000);
    config.wait_while_paused = true;
    Trainer trainer(toy.params, config, slow);
    RunState result = RunState::Idle;
    std::thread worker([&] { result = trainer.run(); });
    QVERIFY(wait_until([&] { return trainer.step() >= 3; }));
    trainer.pause();
    QVERIFY(wait_until([&] { return trainer.state() == RunState::Paused; }));
    const int64_t paused_at = trainer.step();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    QCOMPARE(trainer.step(), paused_at);
    trainer.resume();
    QVERIFY(wait_until([&] { return trainer.step() >= paused_at + 3; }));
    QCOMPARE(trainer.state(), RunState::Running);
    trainer.pause();
    QVERIFY(wait_until([&] { return trainer.state() == RunState::Paused; }));
    trainer.stop();  // wakes the paused loop, which finishes
    worker.join();
    QCOMPARE(result, RunState::Finished);
    QVERIFY(trainer.stopped_early());
  }

  void stop_before_running_and_run_until() {
    Toy toy;
    Trainer trainer(toy.params, toy_config(10), windows_of(toy));
    QCOMPARE(trainer.run_until(4), RunState::Idle);
    QCOMPARE(trainer.step(), int64_t(4));
    QCOMPARE(trainer.run_until(4), RunState::Idle);  // nothing to do
    QCOMPARE(trainer.step(), int64_t(4));
    trainer.stop();
    QCOMPARE(trainer.state(), RunState::Finished);
    QCOMPARE(trainer.run(), RunState::Finished);
    QCOMPARE(trainer.step(), int64_t(4));
  }

  void nan_loss_part_pauses_before_touching_weights() {
    // Reference: two clean steps.
    Toy ref;
    Trainer ref_trainer(ref.params, toy_config(6), windows_of(ref));
    ref_trainer.run_until(2);
    const NamedTensors after_two = ref.snapshot();
    ref_trainer.run();
    const NamedTensors after_six = ref.snapshot();

    Toy toy;
    bool faulty = true;
    auto step_fn = [&](int64_t step, int64_t micro) {
      LossParts parts = toy.loss((step * 16) % 64, 16);
      // A monitored part (weight 0) named after a layer: NaN at the third step (index 2) while faulty.
      at::Tensor align = toy.p("layers.0.b").sum() * 0.0;
      if (step == 2 && faulty) align = align + std::numeric_limits<double>::quiet_NaN();
      parts.add("align.layers.2", align, 0.0);
      return parts;
    };
    std::vector<int64_t> reported;
    TrainerCallbacks cb;
    cb.on_step = [&](const StepReport& r) { reported.push_back(r.step); };
    Trainer trainer(toy.params, toy_config(6), step_fn, cb);
    QCOMPARE(trainer.run(), RunState::Paused);
    QCOMPARE(trainer.state(), RunState::Paused);
    QCOMPARE(trainer.step(), int64_t(2));
    QVERIFY(same(toy.snapshot(), after_two));  // exactly the weights after step 2
    for (const auto& [name, t] : toy.params)
      QVERIFY(!t.grad().defined());
    const std::string error = trainer.last_error();
    qInfo("%s", error.c_str());
    for (const char* fragment : {"step 3", "align.layers.2", "nan", "layer 2", "nothing was applied"})
      QVERIFY2(error.find(fragment) != std::string::npos, error.c_str());
    QVERIFY(error.find('\n') == std::string::npos);

    // Still paused if the fault persists; once it is gone the run continues as if nothing happened.
    QCOMPARE(trainer.run(), RunState::Paused);
    faulty = false;
    QCOMPARE(trainer.run(), RunState::Finished);
    QVERIFY(trainer.last_error().empty());
    QVERIFY(same(toy.snapshot(), after_six));
    QVERIFY((reported == std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  }

  void inf_gradient_names_the_parameter_and_layer() {
    Toy toy;
    auto step_fn = [&](int64_t step, int64_t) {
      LossParts parts = toy.loss(0, 64);
      if (step == 1) {
        // sqrt at 0: a finite value (0) whose gradient is +inf, for layers.1.w only.
        const at::Tensor& w = toy.p("layers.1.w");
        parts.add("trap", at::sqrt(w - w.detach()).sum());
      }
      return parts;
    };
    Trainer trainer(toy.params, toy_config(5), step_fn);
    QCOMPARE(trainer.run_until(1), RunState::Idle);
    const NamedTensors after_one = toy.snapshot();
    QCOMPARE(trainer.run(), RunState::Paused);
    QCOMPARE(trainer.step(), int64_t(1));
    QVERIFY(same(toy.snapshot(), after_one));
    const std::string error = trainer.last_error();
    qInfo("%s", error.c_str());
    for (const char* fragment : {"step 2", "gradient of layers.1.w", "inf", "(layer 1)"})
      QVERIFY2(error.find(fragment) != std::string::npos, error.c_str());
  }

  void accumulation_matches_a_full_batch() {
    Toy full, halves;
    TrainerConfig one = toy_config(5);
    TrainerConfig two = one;
    two.accumulation = 2;
    std::vector<double> norms[2];
    TrainerCallbacks cb0, cb1;
    cb0.on_step = [&](const StepReport& r) { norms[0].push_back(r.grad_norm); };
    cb1.on_step = [&](const StepReport& r) { norms[1].push_back(r.grad_norm); };
    Trainer a(
        full.params, one, [&](int64_t, int64_t) { return full.loss(0, 64); }, cb0);
    Trainer b(
        halves.params, two, [&](int64_t, int64_t micro) { return halves.loss(micro * 32, 32); }, cb1);
    QCOMPARE(a.run(), RunState::Finished);
    QCOMPARE(b.run(), RunState::Finished);
    const double d = max_diff(full.snapshot(), halves.snapshot());
    qInfo("max |1 x 64 - 2 x 32| after 5 steps: %g", d);
    QVERIFY2(d <= 1e-6, std::to_string(d).c_str());
    for (size_t i = 0; i < norms[0].size(); ++i)
      QVERIFY(std::abs(norms[0][i] - norms[1][i]) <= 1e-6);
    QCOMPARE(b.tokens_seen(), int64_t(5 * 64));
  }

  void save_and_restore_continue_bit_identically() {
    Toy straight;
    Trainer reference(straight.params, toy_config(12), windows_of(straight));
    QCOMPARE(reference.run(), RunState::Finished);
    const NamedTensors expected = straight.snapshot();

    NamedTensors state;
    {
      Toy first;
      Trainer interrupted(first.params, toy_config(12), windows_of(first));
      QCOMPARE(interrupted.run_until(5), RunState::Idle);
      interrupted.save(state, /*include_parameters=*/true);
      QCOMPARE(interrupted.state_json()["step"].get<int64_t>(), int64_t(5));
      interrupted.run();  // going on must not disturb what was saved
    }
    Toy second;
    {
      at::NoGradGuard no_grad;
      for (auto& [name, t] : second.params)
        t.fill_(0.5);  // the load must bring the weights back
    }
    std::vector<double> lrs;
    TrainerCallbacks cb;
    cb.on_step = [&](const StepReport& r) { lrs.push_back(r.lr); };
    Trainer resumed(second.params, toy_config(12), windows_of(second), cb);
    resumed.load(state);
    QCOMPARE(resumed.step(), int64_t(5));
    QCOMPARE(resumed.tokens_seen(), int64_t(5 * 16));
    QCOMPARE(resumed.run(), RunState::Finished);
    QVERIFY(same(second.snapshot(), expected));
    QCOMPARE(lrs.front(), resumed.config().schedule.at(5));  // the schedule continues from step 6

    // A state that does not fit is refused, naming the key, and changes nothing.
    NamedTensors bad = state;
    for (auto& [name, t] : bad)
      if (name == "adamw.layers.1.w.exp_avg") t = at::zeros({3});
    Toy third;
    Trainer other(third.params, toy_config(12), windows_of(third));
    HL_EXPECT_ERROR(other.load(bad), "adamw.layers.1.w.exp_avg", "expected shape");
    NamedTensors missing(state.begin() + 1, state.end());
    HL_EXPECT_ERROR(other.load(missing), "trainer.step", "missing");
    QCOMPARE(other.step(), int64_t(0));
  }

  void warmup_and_cosine_learning_rates() {
    Toy toy;
    TrainerConfig config = toy_config(20);
    config.schedule = {1e-2, 1e-3, 4, 20};
    std::vector<double> lrs;
    TrainerCallbacks cb;
    cb.on_step = [&](const StepReport& r) { lrs.push_back(r.lr); };
    Trainer trainer(toy.params, config, windows_of(toy), cb);
    QCOMPARE(trainer.run(), RunState::Finished);
    QCOMPARE(lrs.size(), size_t(20));
    // Independent rendering: linear warmup over 4 steps, then a half cosine over the remaining 15 intervals.
    auto expected = [](int i) {
      if (i < 4) return 1e-2 * (i + 1) / 4.0;
      return 1e-3 + 0.5 * (1e-2 - 1e-3) * (1 + std::cos(M_PI * (i - 4) / 15.0));
    };
    for (int i : {0, 1, 3, 4, 9, 12, 19})
      QVERIFY2(std::abs(lrs[i] - expected(i)) < 1e-15, std::to_string(i).c_str());
    QVERIFY(std::abs(lrs[3] - 1e-2) < 1e-15);   // peak at the end of warmup
    QVERIFY(std::abs(lrs[19] - 1e-3) < 1e-15);  // min_lr at the last step
  }

  void adamw_matches_torch_optim_with_clipping() {
    Toy mine, theirs;
    TrainerConfig config = toy_config(6);
    config.grad_clip = 0.05;  // small enough to clip every step
    config.adamw = {0.9, 0.95, 1e-8, 0.1};
    Trainer trainer(mine.params, config, [&](int64_t, int64_t) { return mine.loss(0, 64); });
    QCOMPARE(trainer.run(), RunState::Finished);

    std::vector<at::Tensor> decay, no_decay, all;
    for (auto& [name, t] : theirs.params) {
      (t.dim() >= 2 ? decay : no_decay).push_back(t);
      all.push_back(t);
    }
    torch::optim::AdamWOptions base(1.0);
    base.betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1);
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(base));
    auto nd = std::make_unique<torch::optim::AdamWOptions>(base);
    nd->weight_decay(0.0);
    groups.emplace_back(no_decay, std::move(nd));
    torch::optim::AdamW optimizer(std::move(groups));
    for (int64_t step = 0; step < 6; ++step) {
      for (auto& g : optimizer.param_groups())
        static_cast<torch::optim::AdamWOptions&>(g.options()).lr(config.schedule.at(step));
      optimizer.zero_grad();
      LossParts parts = theirs.loss(0, 64);
      (parts.parts[0].value + parts.parts[1].value * 0.01).backward();
      torch::nn::utils::clip_grad_norm_(all, 0.05);
      optimizer.step();
    }
    const double d = max_diff(mine.snapshot(), theirs.snapshot());
    qInfo("max |ours - torch::optim::AdamW| after 6 clipped steps: %g", d);
    QVERIFY2(d <= 1e-6, std::to_string(d).c_str());
  }

  // On the CPU the fused form takes nothing and adamw_update is the reference, to the bit.
  void adamw_update_on_the_cpu_is_the_reference() {
    at::manual_seed(5);
    const AdamWConfig config{0.9, 0.95, 1e-8, 0.1};
    auto make = [](const at::Tensor& p, const at::Tensor& g) {
      return AdamWSlot{p.clone(), g, at::full_like(p, 0.1), at::full_like(p, 0.2), 4, p.dim() >= 2};
    };
    const at::Tensor p = at::randn({6, 5}), g = at::randn({6, 5});
    std::vector<AdamWSlot> a = {make(p, g)}, b = {make(p, g)};
    std::vector<bool> taken;
    QCOMPARE(adamw_update_fused(a, config, 1e-2, taken), int64_t{0});
    QVERIFY(!taken[0] && at::equal(a[0].param, p));
    adamw_update(a, config, 1e-2);
    adamw_update_reference(b, config, 1e-2);
    QVERIFY(!at::equal(a[0].param, p));
    QVERIFY(at::equal(a[0].param, b[0].param) && at::equal(a[0].exp_avg_sq, b[0].exp_avg_sq));
  }

  void weight_decay_only_on_matrices() {
    Toy toy;
    TrainerConfig config = toy_config(1);
    config.adamw.weight_decay = 0.5;
    config.schedule = {0.1, 0.1, 0, 1};
    const NamedTensors before = toy.snapshot();
    // Zero gradients everywhere: the only change is the decoupled decay.
    auto zero_loss = [&](int64_t, int64_t) {
      at::Tensor s = toy.params[0].second.sum() * 0.0;
      for (size_t i = 1; i < toy.params.size(); ++i)
        s = s + toy.params[i].second.sum() * 0.0;
      return LossParts().add("zero", s);
    };
    Trainer trainer(toy.params, config, zero_loss);
    QCOMPARE(trainer.run(), RunState::Finished);
    QVERIFY(at::allclose(toy.p("layers.0.w"), before[0].second * (1 - 0.1 * 0.5)));
    QVERIFY(at::equal(toy.p("layers.0.b"), before[1].second));
    QVERIFY(at::allclose(toy.p("layers.1.w"), before[2].second * (1 - 0.1 * 0.5)));
    QVERIFY(at::equal(toy.p("layers.1.b"), before[3].second));
  }

  void evaluation_every_k_steps_and_at_the_end() {
    Toy toy;
    TrainerConfig config = toy_config(10);
    config.eval_every = 4;
    std::vector<int64_t> at_steps;
    bool grad_was_on = false;
    TrainerCallbacks cb;
    cb.eval = [&](int64_t step) {
      grad_was_on = grad_was_on || at::GradMode::is_enabled();
      return std::vector<std::pair<std::string, double>>{
          {"heldout_mse", toy.loss(48, 16).parts[0].value.item<double>()}};
    };
    cb.on_eval = [&](const EvalReport& r) {
      at_steps.push_back(r.step);
      QCOMPARE(r.metrics.at(0).first, std::string("heldout_mse"));
    };
    Trainer trainer(toy.params, config, windows_of(toy), cb);
    QCOMPARE(trainer.run(), RunState::Finished);
    QVERIFY((at_steps == std::vector<int64_t>{4, 8, 10}));
    QVERIFY(!grad_was_on);
  }

  void bad_setup_and_failing_steps() {
    Toy toy;
    TrainerConfig config = toy_config(5);
    config.accumulation = 0;
    HL_EXPECT_ERROR(Trainer(toy.params, config, windows_of(toy)), "trainer: accumulation",
                    "expected an integer >= 1");
    NamedTensors twice = toy.params;
    twice.push_back(toy.params[0]);
    HL_EXPECT_ERROR(Trainer(twice, toy_config(5), windows_of(toy)), "layers.0.w", "appears twice");
    NamedTensors frozen = {{"layers.0.w", at::zeros({2, 2})}};
    HL_EXPECT_ERROR(Trainer(frozen, toy_config(5), windows_of(toy)), "layers.0.w", "requires grad");

    // A part that is not a scalar fails the run with a one-line reason naming it.
    Trainer trainer(toy.params, toy_config(5), [&](int64_t step, int64_t) {
      LossParts parts = toy.loss(0, 64);
      if (step == 2) parts.add("per_token", toy.p("layers.0.b") * 1.0);
      return parts;
    });
    QCOMPARE(trainer.run(), RunState::Failed);
    QCOMPARE(trainer.step(), int64_t(2));
    const std::string error = trainer.last_error();
    QVERIFY2(error.find("per_token") != std::string::npos && error.find("scalar") != std::string::npos,
             error.c_str());
    QCOMPARE(trainer.run(), RunState::Failed);
  }
};

QTEST_APPLESS_MAIN(TestTrainer)
#include "test_trainer.moc"
