// The recipe on CUDA (label cuda; skipped without a GPU): the same run as on the CPU in float32 and in bf16
// autocast (float32 weights and optimizer state), with and without activation checkpointing, agrees with the
// CPU's losses within the stated tolerances; checkpoints leave the GPU; a step that runs out of GPU memory
// pauses the run naming data.batch_size, and the run continues from that checkpoint with smaller
// micro-batches.
#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <QTest>
#include <cmath>
#include <map>

#if defined(HEDGELAB_HAS_CUDA_KERNELS)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "core/distill/stages.h"
#include "core/ops/autocast.h"
#include "core/ops/dispatch_tally.h"
#include "core/run/distill_run.h"
#include "tests/distill_fixture.h"
#include "tests/tensor_test_util.h"
#include "tests/test_util.h"

using namespace hedgelab;

namespace {

using Fixture = testing::DistillFixture;

struct Record : run::RunObserver {
  std::map<std::string, std::vector<double>> totals;
  std::vector<std::pair<run::Checkpoint, std::string>> checkpoints;
  void on_step(const std::string& stage, const snapshot::StepReport& r) override {
    totals[stage].push_back(r.total);
  }
  void on_checkpoint(const run::Checkpoint& c, const std::string& why) override {
    checkpoints.emplace_back(c, why);
  }
};

// The dispatch tally at the first step of each stage: that step and any probe before it (the run resets it
// when a stage begins on CUDA).
struct FirstStepKernels : run::RunObserver {
  std::map<std::string, std::vector<ops::DispatchCount>> at_first_step;
  void on_step(const std::string& stage, const snapshot::StepReport&) override {
    if (!at_first_step.count(stage)) at_first_step[stage] = ops::dispatch_tally();
  }
};

int64_t calls(const std::vector<ops::DispatchCount>& tally, const std::string& op, ops::KernelPath path) {
  for (const auto& c : tally)
    if (c.op == op && c.path == path) return c.calls;
  return 0;
}

// The fixture's recipe on CUDA under bf16 autocast.
distill::RecipeConfig cuda_bf16_recipe(const Fixture& f) {
  auto r = f.recipe();
  r.device = "cuda";
  r.dtype = "bfloat16";
  return r;
}

bool ready() {
  return testing::cuda_kernels_ready();
}

// Runs the fixture's recipe with `edit` applied; the teacher is loaded afresh (a run moves it).
Record run_recipe(const std::function<void(distill::RecipeConfig&)>& edit,
                  snapshot::RunSummary* summary = nullptr) {
  Fixture f;
  auto r = f.recipe();
  edit(r);
  Record rec;
  run::DistillRun run(r, f.teacher, f.corpus, f.probe(r), &rec);
  const auto state = run.run();
  if (state != snapshot::RunState::Finished) throw std::runtime_error("run ended " + run.last_error());
  if (summary) *summary = run.summary();
  return rec;
}

// Largest |a − b| / |a| over every step of both stages.
double worst_relative(const Record& a, const Record& b) {
  double worst = 0.0;
  for (const auto& [stage, xs] : a.totals) {
    const auto& ys = b.totals.at(stage);
    if (xs.size() != ys.size()) return INFINITY;
    for (size_t i = 0; i < xs.size(); ++i)
      worst = std::max(worst, std::abs(xs[i] - ys[i]) / std::max(std::abs(xs[i]), 1e-12));
  }
  return worst;
}

}  // namespace

class TestCudaRun : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void initTestCase() {
    if (!ready()) QSKIP("no CUDA device, or built without the CUDA library (cuda/)");
  }

  void the_recipe_runs_on_cuda_as_on_the_cpu() {
    snapshot::RunSummary cpu_summary, gpu_summary;
    const Record cpu = run_recipe([](distill::RecipeConfig&) {}, &cpu_summary);
    const Record f32 = run_recipe([](distill::RecipeConfig& r) { r.device = "cuda"; }, &gpu_summary);
    const Record bf16 = run_recipe([](distill::RecipeConfig& r) {
      r.device = "cuda";
      r.dtype = "bfloat16";
    });
    const Record bf16_recompute = run_recipe([](distill::RecipeConfig& r) {
      r.device = "cuda";
      r.dtype = "bfloat16";
      r.activation_checkpointing = true;
    });
    const double d32 = worst_relative(cpu, f32), d16 = worst_relative(cpu, bf16),
                 dre = worst_relative(bf16, bf16_recompute);
    std::printf(
        "worst relative loss difference over 14 steps: cuda float32 %.2e, cuda bf16 %.2e, "
        "bf16 with checkpointing vs without %.2e; final perplexity cpu %.4f cuda %.4f\n",
        d32, d16, dre, cpu_summary.perplexity, gpu_summary.perplexity);
    // float32 on the GPU differs by summation order and the fused kernels' tf32 operands (10-bit mantissa).
    QVERIFY2(d32 < 1e-2, std::to_string(d32).c_str());
    // bf16 operands (8-bit mantissa) over 14 steps of training.
    QVERIFY2(d16 < 5e-2, std::to_string(d16).c_str());
    // The recomputation repeats the same bf16 ops; only the backward's atomics reorder sums.
    QVERIFY2(dre < 1e-2, std::to_string(dre).c_str());
    QVERIFY(std::abs(gpu_summary.perplexity / cpu_summary.perplexity - 1.0) < 1e-2);
  }

  // The recipe's default bf16 step takes every kernel its ops have: no op on CUDA falls back to ATen for
  // inputs the kernel does not take (a bf16 den once sent every stage-2 read-out through ATen unnoticed).
  void every_step_op_takes_its_kernel_under_bf16() {
    Fixture f;
    auto r = cuda_bf16_recipe(f);
    FirstStepKernels seen;
    run::DistillRun run(r, f.teacher, f.corpus, f.probe(r), &seen);
    QCOMPARE(int(run.run()), int(snapshot::RunState::Finished));
    QCOMPARE(int(seen.at_first_step.size()), 2);
    const std::map<std::string, std::vector<std::string>> expected = {
        {"stage1", {"rotary", "hedgehog_feature_map", "linear_attention", "cosine_alignment"}},
        {"stage2",
         {"rotary", "causal_conv", "hedgehog_feature_map", "hedge_mamba_scan", "mixer_output",
          "logit_losses"}}};
    for (const auto& [stage, ops_taken] : expected) {
      const auto& tally = seen.at_first_step.at(stage);
      std::printf("%s, first step: %s\n", stage.c_str(), ops::describe_dispatch_tally(tally).c_str());
      QVERIFY2(ops::describe_kernel_misses(tally).empty(),
               (stage + ": " + ops::describe_kernel_misses(tally)).c_str());
      for (const auto& op : ops_taken)
        QVERIFY2(calls(tally, op, ops::KernelPath::kFused) > 0, (stage + ": " + op + " not fused").c_str());
    }
  }

  // Where an op's kernel does not cover the recipe (the joint-softmax feature map of an ablation runs ATen's
  // form), the run says so: one notice per stage naming the op, the results still right.
  void a_kernel_not_taken_is_a_notice() {
    Fixture f;
    auto r = cuda_bf16_recipe(f);
    r.model.feature_map = "joint_softmax";
    struct Notices : run::RunObserver {
      std::vector<std::pair<std::string, std::string>> heard;
      void on_notice(const std::string& stage, const std::string& text) override {
        heard.emplace_back(stage, text);
      }
    } notices;
    run::DistillRun run(r, f.teacher, f.corpus, f.probe(r), &notices);
    QCOMPARE(int(run.run()), int(snapshot::RunState::Finished));
    QCOMPARE(int(notices.heard.size()), 2);
    QCOMPARE(notices.heard[0].first, std::string("stage1"));
    QCOMPARE(notices.heard[1].first, std::string("stage2"));
    for (const auto& [stage, text] : notices.heard) {
      std::printf("%s notice: %s\n", stage.c_str(), text.c_str());
      QVERIFY2(text.find("hedgehog_feature_map unsupported") != std::string::npos, text.c_str());
    }
  }

  void checkpoints_leave_the_gpu_and_weights_stay_float32() {
    Fixture f;
    auto r = cuda_bf16_recipe(f);
    Record rec;
    run::DistillRun run(r, f.teacher, f.corpus, f.probe(r), &rec);
    QCOMPARE(run.run(10), snapshot::RunState::Finished);
    QVERIFY(!rec.checkpoints.empty());
    for (const auto& [name, t] : rec.checkpoints.back().first.tensors) {
      QVERIFY2(t.device().is_cpu(), name.c_str());
      if (name.rfind("param.", 0) == 0 || name.rfind("adamw.", 0) == 0)
        QVERIFY2(t.scalar_type() == at::kFloat || t.scalar_type() == at::kLong, name.c_str());
    }
    for (const auto& p : run.student()->parameters()) {
      QVERIFY(p.is_cuda());
      QCOMPARE(p.scalar_type(), at::kFloat);
    }
  }

  // The frozen teacher's bf16 weight copies (ops::FrozenCastCache): under autocast the logits are the same
  // bits with the cache on and off; the copies are made once (the qkv, dense and MLP weights and biases of
  // every layer and the lm_head) and made again after a weight changes in place.
  void frozen_teacher_casts_match_autocast() {
    Fixture f;
    models::GptNeoXForCausalLM teacher = f.teacher;
    teacher->to(at::Device(at::kCUDA, 0));
    distill::set_all_trainable(*teacher, false);
    const at::Tensor ids =
        at::randint(0, teacher->config().vocab_size, {2, 24}, at::TensorOptions().dtype(at::kLong)).cuda();
    at::NoGradGuard no_grad;
    ops::AutocastSetting on;
    on.enabled = true;
    on.dtype = at::kBFloat16;
    const ops::AutocastScope scope(on);
    ops::set_frozen_cast_cache_enabled(false);
    const at::Tensor plain = teacher->forward(ids).logits;  // [B, T, V]
    QCOMPARE(teacher->frozen_casts().size(), int64_t(0));
    ops::set_frozen_cast_cache_enabled(true);
    const at::Tensor cached = teacher->forward(ids).logits;
    const int64_t L = teacher->config().num_layers;
    QCOMPARE(teacher->frozen_casts().size(), 8 * L + 1);
    QVERIFY(at::equal(plain, cached));
    QVERIFY(at::equal(cached, teacher->forward(ids).logits));
    QCOMPARE(teacher->frozen_casts().size(), 8 * L + 1);
    teacher->gpt_neox->layer(0)->mlp->dense_h_to_4h->weight.mul_(0.5);
    const at::Tensor changed = teacher->forward(ids).logits;
    QVERIFY(!at::equal(changed, cached));
    ops::set_frozen_cast_cache_enabled(false);
    QVERIFY(at::equal(changed, teacher->forward(ids).logits));
    ops::set_frozen_cast_cache_enabled(true);
    QCOMPARE(teacher->frozen_casts().size(), 8 * L + 1);
  }

  void out_of_memory_pauses_and_the_run_continues_with_smaller_micro_batches() {
#if defined(HEDGELAB_HAS_CUDA_KERNELS)
    Fixture f;
    auto r = f.recipe();
    r.device = "cuda";
    r.data.batch_size = 256;
    r.data.accumulation = 1;
    r.stage1.tokens = 2 * 256 * 16;  // 2 steps of 256 windows
    r.stage2.tokens = 2 * 256 * 16;
    Record rec;
    run::DistillRun big(r, f.teacher, f.corpus, f.probe(r), &rec);
    // Leave the allocator a few MB beyond what the run holds now: the first batch's activations do not fit.
    const double total = static_cast<double>(at::cuda::getDeviceProperties(0)->totalGlobalMem);
    const double reserved =
        static_cast<double>(c10::cuda::CUDACachingAllocator::getDeviceStats(0).reserved_bytes[0].current);
    c10::cuda::CUDACachingAllocator::setMemoryFraction((reserved + 8.0 * (1 << 20)) / total, 0);
    const auto state = big.run();
    c10::cuda::CUDACachingAllocator::setMemoryFraction(1.0, 0);
    QCOMPARE(state, snapshot::RunState::Paused);
    const std::string why = big.last_error();
    std::printf("paused: %s\n", why.c_str());
    QVERIFY2(why.find("out of memory") != std::string::npos, why.c_str());
    QVERIFY2(why.find("data.batch_size (now 256") != std::string::npos, why.c_str());
    QVERIFY(why.find('\n') == std::string::npos);
    QVERIFY(!rec.checkpoints.empty());
    QCOMPARE(rec.checkpoints.back().second, std::string("error"));

    auto smaller = r;
    smaller.data.batch_size = 32;
    smaller.data.accumulation = 8;
    Record more;
    run::DistillRun continued(smaller, f.teacher, f.corpus, f.probe(smaller), &more);
    continued.restore(rec.checkpoints.back().first);
    QCOMPARE(continued.run(), snapshot::RunState::Finished);
    QCOMPARE(more.totals["stage1"].size() + more.totals["stage2"].size(), size_t(4));
    for (const auto& [stage, xs] : more.totals)
      for (double x : xs)
        QVERIFY(std::isfinite(x));
#endif
  }
};

QTEST_APPLESS_MAIN(TestCudaRun)
#include "test_cuda_run.moc"
