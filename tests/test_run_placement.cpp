// Where and how a run executes, checked on the CPU (the CUDA side is tests/test_cuda_run.cpp, label cuda):
// activation checkpointing gives the gradients of the plain backward; the autocast scope sets and restores
// LibTorch's flag; recipes that ask for what this build cannot do are refused naming the field; a step that
// runs out of memory pauses the trainer with nothing applied and a hint; a continuation may change the
// micro-batch when batch_size × accumulation stays, and nothing else about the data.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/cuda.h>

#include <QTest>
#include <cmath>
#include <map>

#include "core/data/batches.h"
#include "core/distill/stages.h"
#include "core/distill/trainer.h"
#include "core/ops/activation_checkpoint.h"
#include "core/ops/autocast.h"
#include "core/run/distill_run.h"
#include "tests/distill_fixture.h"
#include "tests/test_util.h"

using namespace hedgelab;

namespace {

using Fixture = testing::DistillFixture;

struct Totals : run::RunObserver {
  std::map<std::string, std::vector<double>> totals;  // per stage, in step order
  std::vector<run::Checkpoint> checkpoints;
  void on_step(const std::string& stage, const snapshot::StepReport& r) override {
    totals[stage].push_back(r.total);
  }
  void on_checkpoint(const run::Checkpoint& c, const std::string&) override { checkpoints.push_back(c); }
};

// Every parameter's gradient after `loss_of()`'s backward, by name (a zero tensor stands for "none").
std::map<std::string, at::Tensor> gradients(torch::nn::Module& m,
                                            const std::function<at::Tensor()>& loss_of) {
  for (auto& p : m.parameters())
    p.mutable_grad().reset();
  loss_of().backward();
  std::map<std::string, at::Tensor> out;
  for (const auto& p : m.named_parameters())
    out[p.key()] = p.value().grad().defined() ? p.value().grad().clone() : at::zeros_like(p.value());
  return out;
}

double max_relative_difference(const std::map<std::string, at::Tensor>& a,
                               const std::map<std::string, at::Tensor>& b, std::string* worst = nullptr) {
  double m = 0.0;
  for (const auto& [name, ga] : a) {
    const at::Tensor& gb = b.at(name);
    const double scale = std::max(ga.abs().max().item<double>(), 1e-12);
    const double d = (ga - gb).abs().max().item<double>() / scale;
    if (d > m) {
      m = d;
      if (worst) *worst = name;
    }
  }
  return m;
}

}  // namespace

class TestRunPlacement : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void initTestCase() { at::set_num_threads(2); }

  void checkpointed_student_has_the_same_gradients() {
    Fixture f;
    auto r = f.recipe();
    (void)distill::prepare_run(r, f.teacher, f.corpus, 4);
    models::HedgehogLM hh = distill::make_stage1_model(f.teacher, r);
    models::HedgeMambaStudent student = distill::make_student(hh, r);
    distill::set_all_trainable(*student, true);
    QVERIFY(!student->activation_checkpointing());
    const at::Tensor ids = at::randint(0, student->config().vocab_size, {2, 19}, at::kLong);  // [B, T]
    auto loss = [&] {
      const at::Tensor logits = student->forward(ids);  // [B, T, V]
      return at::log_softmax(logits, -1).select(-1, 3).mean() + logits.pow(2).mean();
    };
    const auto plain = gradients(*student, loss);
    student->set_activation_checkpointing(true);
    const auto recomputed = gradients(*student, loss);
    QCOMPARE(plain.size(), recomputed.size());
    std::string worst;
    const double d = max_relative_difference(plain, recomputed, &worst);
    QVERIFY2(d < 1e-5, (worst + ": " + std::to_string(d)).c_str());
    // The test can fail: a gradient that skipped the recomputation would be zero.
    int64_t nonzero = 0;
    for (const auto& [name, g] : recomputed)
      nonzero += g.abs().sum().item<double>() > 0;
    QVERIFY(nonzero >= static_cast<int64_t>(recomputed.size()) - 2);
    // Outside grad mode it is the plain forward (and keeps nothing).
    at::NoGradGuard no_grad;
    QVERIFY(at::allclose(student->forward(ids), [&] {
      student->set_activation_checkpointing(false);
      return student->forward(ids);
    }()));
  }

  void checkpointed_stage1_step_has_the_same_losses_and_gradients() {
    Fixture f;
    auto r = f.recipe();
    (void)distill::prepare_run(r, f.teacher, f.corpus, 4);
    std::vector<std::vector<double>> parts(2);
    std::vector<std::map<std::string, at::Tensor>> grads(2);
    for (int recompute = 0; recompute < 2; ++recompute) {
      r.activation_checkpointing = recompute == 1;
      models::HedgehogLM hh = distill::make_stage1_model(f.teacher, r);
      data::BatchCursor cursor(f.corpus.train(), r.data.context, r.data.batch_size, 0);
      auto step = distill::stage1_step(r, f.teacher, hh, cursor);
      grads[recompute] = gradients(*hh, [&] {
        const distill::LossParts lp = step(0, 0);
        at::Tensor total;
        for (const auto& p : lp.parts) {
          parts[recompute].push_back(p.value.item<double>());
          total = total.defined() ? total + p.value * p.weight : p.value * p.weight;
        }
        return total;
      });
    }
    QCOMPARE(parts[0].size(), parts[1].size());
    for (size_t i = 0; i < parts[0].size(); ++i)
      QVERIFY(std::abs(parts[0][i] - parts[1][i]) <= 1e-6 * std::abs(parts[0][i]) + 1e-9);
    std::string worst;
    const double d = max_relative_difference(grads[0], grads[1], &worst);
    QVERIFY2(d < 1e-5, (worst + ": " + std::to_string(d)).c_str());
    double feature_map_grad = 0.0;  // the trainable set of the default recipe did get gradients
    for (const auto& [name, g] : grads[1])
      if (name.find("feature_map") != std::string::npos) feature_map_grad += g.abs().sum().item<double>();
    QVERIFY(feature_map_grad > 0.0);
  }

  void checkpointed_passes_the_input_gradient() {
    const at::Tensor w = at::randn({5, 5}, at::kDouble).requires_grad_();
    const at::Tensor x = at::randn({3, 5}, at::kDouble).requires_grad_();
    auto block = [w](const at::Tensor& in) { return at::tanh(at::matmul(in, w)).pow(2); };
    const at::Tensor gy = at::randn({3, 5}, at::kDouble);
    auto [gx_ref, gw_ref] = [&] {
      auto g = torch::autograd::grad({block(x)}, {x, w}, {gy});
      return std::make_pair(g[0], g[1]);
    }();
    ops::checkpointed(block, x).backward(gy);
    QVERIFY(at::allclose(x.grad(), gx_ref, 1e-12, 1e-12));
    QVERIFY(at::allclose(w.grad(), gw_ref, 1e-12, 1e-12));
  }

  void autocast_scope_sets_and_restores() {
    QVERIFY(!ops::cuda_autocast_setting().enabled);
    {
      const ops::AutocastScope on({true, at::kBFloat16});
      QVERIFY(ops::cuda_autocast_setting().enabled);
      QCOMPARE(ops::cuda_autocast_setting().dtype, at::kBFloat16);
      {
        const ops::AutocastScope off({false, at::kBFloat16});
        QVERIFY(!ops::cuda_autocast_setting().enabled);
      }
      QVERIFY(ops::cuda_autocast_setting().enabled);
    }
    QVERIFY(!ops::cuda_autocast_setting().enabled);
    auto r = distill::RecipeConfig{};
    QVERIFY(!distill::autocast_of(r).enabled);
    r.device = "cuda";
    r.dtype = "bfloat16";
    QVERIFY(distill::autocast_of(r).enabled);
  }

  void recipes_this_build_cannot_run_are_refused() {
    Fixture f;
    auto r = f.recipe();
    r.dtype = "bfloat16";
    HL_EXPECT_ERROR(r.validate("tiny"), "tiny: dtype", "float32", "cpu");
    if (!torch::cuda::is_available()) {
      r = f.recipe();
      r.device = "cuda";
      HL_EXPECT_ERROR(run::DistillRun(r, f.teacher, f.corpus, f.probe(r)), "tiny: device", "cuda", "cpu");
    }
  }

  void out_of_memory_pauses_with_nothing_applied() {
    const at::Tensor w = at::zeros({3}).requires_grad_();
    int calls = 0;
    bool fail_once = true;
    distill::TrainerConfig c;
    c.total_steps = 3;
    c.schedule = {0.1, 0.1, 0, 3};
    c.out_of_memory_hint = "lower data.batch_size";
    distill::Trainer trainer({{"w", w}}, c, [&](int64_t step, int64_t) {
      ++calls;
      if (step == 1 && fail_once) {
        fail_once = false;
        throw c10::OutOfMemoryError({__func__, __FILE__, static_cast<uint32_t>(__LINE__)},
                                    "CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail");
      }
      distill::LossParts lp;
      lp.add("loss", (w - 1.0).pow(2).sum());
      lp.tokens = 4;
      return lp;
    });
    QCOMPARE(trainer.run(), snapshot::RunState::Paused);
    QCOMPARE(trainer.step(), int64_t(1));
    const std::string why = trainer.last_error();
    QVERIFY2(why.find("step 2: out of memory (CUDA out of memory. Tried to allocate 2.00 GiB)") == 0,
             why.c_str());
    QVERIFY2(why.find("nothing was applied") != std::string::npos, why.c_str());
    QVERIFY2(why.find("lower data.batch_size") != std::string::npos, why.c_str());
    QVERIFY(why.find('\n') == std::string::npos);
    const at::Tensor after_one = w.detach().clone();
    QVERIFY(!w.grad().defined());
    QCOMPARE(trainer.run(), snapshot::RunState::Finished);  // resumes: the same step again, then the rest
    QCOMPARE(trainer.step(), int64_t(3));
    QCOMPARE(calls, 4);
    QVERIFY(!at::equal(w.detach(), after_one));
  }

  void continuation_may_change_the_micro_batch_only() {
    Fixture f;
    auto r = f.recipe();
    r.data.batch_size = 4;
    r.data.accumulation = 1;
    r.stage1.tokens = 4 * 4 * 16;  // 4 steps of 4 windows
    r.stage2.tokens = 4 * 4 * 16;
    Totals full;
    run::DistillRun a(r, f.teacher, f.corpus, f.probe(r), &full);
    QCOMPARE(a.run(), snapshot::RunState::Finished);

    Totals first;
    run::DistillRun b(r, f.teacher, f.corpus, f.probe(r), &first);
    QCOMPARE(b.run(6), snapshot::RunState::Finished);  // stage 2, step 2
    const run::Checkpoint cp = first.checkpoints.back();

    auto smaller = r;
    smaller.data.batch_size = 2;
    smaller.data.accumulation = 2;
    smaller.activation_checkpointing = true;
    Totals second;
    run::DistillRun c(smaller, f.teacher, f.corpus, f.probe(smaller), &second);
    c.restore(cp);
    QCOMPARE(c.run(), snapshot::RunState::Finished);
    QCOMPARE(second.totals["stage2"].size(), size_t(2));
    for (size_t i = 0; i < 2; ++i) {
      const double want = full.totals["stage2"][i + 2], got = second.totals["stage2"][i];
      QVERIFY2(std::abs(want - got) <= 1e-5 * std::abs(want),
               (std::to_string(want) + " vs " + std::to_string(got)).c_str());
    }

    auto other = r;
    other.data.batch_size = 2;  // 2 × 1 windows a step instead of 4
    run::DistillRun d(other, f.teacher, f.corpus, f.probe(other));
    HL_EXPECT_ERROR(d.restore(cp), "data.batch_size × data.accumulation must stay 4", "got 2 × 1");
    other = r;
    other.data.context = 8;
    run::DistillRun e(other, f.teacher, f.corpus, f.probe(other));
    HL_EXPECT_ERROR(e.restore(cp), "recipe differs", "data.context");
  }
};

QTEST_APPLESS_MAIN(TestRunPlacement)
#include "test_run_placement.moc"
