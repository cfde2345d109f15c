// AdamW on CUDA (core/distill/adamw.h): ATen's fused multi-tensor kernel and the per-parameter reference,
// both against a float64 oracle of the update written out here, over several steps with per-slot step
// counts, decaying and non-decaying slots, shapes off every vector width and one large enough for several
// of the kernel's chunks; the dispatch (slots the kernel cannot take go to the reference); the trainer with
// the fused form on and off. Label cuda; skipped without a GPU, and the fused rows without LibTorch ≥ 2.1.
// Errors are ‖out − oracle‖∞ / ‖oracle‖∞; bounds: 1e-5 in float32 (a few roundings of one update per step),
// 8e-3 for bf16 parameters (one rounding to bf16 at the store, 2⁻⁸ relative).
#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <QTest>
#include <cmath>
#include <string>
#include <vector>

#include "core/distill/adamw.h"
#include "core/distill/trainer.h"
#include "tests/tensor_test_util.h"

using namespace hedgelab::distill;
using hedgelab::testing::relative_error;

namespace {

const auto kF64 = at::TensorOptions().dtype(at::kDouble);

struct Oracle {  // one slot's state in float64 on the CPU
  at::Tensor p, m, v;
};

void oracle_step(Oracle& o, const at::Tensor& g64, int64_t t, bool decay, const AdamWConfig& c, double lr) {
  if (decay) o.p = o.p * (1.0 - lr * c.weight_decay);
  o.m = o.m * c.beta1 + g64 * (1.0 - c.beta1);
  o.v = o.v * c.beta2 + g64 * g64 * (1.0 - c.beta2);
  const double b1 = 1.0 - std::pow(c.beta1, static_cast<double>(t));
  const double b2 = 1.0 - std::pow(c.beta2, static_cast<double>(t));
  o.p = o.p - (lr / b1) * o.m / (o.v.sqrt() / std::sqrt(b2) + c.eps);
}

void expect(const std::string& tag, const at::Tensor& got, const at::Tensor& ref, double tol) {
  const double e = relative_error(got.detach().to(at::kDouble).cpu(), ref);
  qInfo("%s rel err %.2e (bound %.0e)", tag.c_str(), e, tol);
  QVERIFY2(e < tol, (tag + ": " + std::to_string(e)).c_str());
}

const std::vector<std::vector<int64_t>> kShapes = {{64, 33}, {1000}, {3, 5, 7}, {1}, {1536, 1027}, {257}};

}  // namespace

class TestCudaAdamW : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void initTestCase() {
    if (!torch::cuda::is_available()) QSKIP("no CUDA device");
  }

  void update_against_the_oracle_data() {
    QTest::addColumn<bool>("fused");
    QTest::addColumn<bool>("bf16");
    QTest::newRow("reference f32") << false << false;
    QTest::newRow("fused f32") << true << false;
    QTest::newRow("fused bf16") << true << true;
  }
  void update_against_the_oracle() {
    QFETCH(bool, fused);
    QFETCH(bool, bf16);
    if (fused && !fused_adamw_compiled()) QSKIP("LibTorch < 2.1: no at::_fused_adamw_");
    const AdamWConfig config{0.9, 0.95, 1e-8, 0.1};
    const auto dtype = bf16 ? at::kBFloat16 : at::kFloat;
    at::manual_seed(7);
    std::vector<AdamWSlot> slots;
    std::vector<Oracle> oracles;
    const std::vector<int64_t> first_step = {1, 3, 1, 40, 2, 1000};
    for (size_t i = 0; i < kShapes.size(); ++i) {
      const at::Tensor p0 = at::randn(kShapes[i], kF64).to(dtype).to(at::kDouble);  // representable
      AdamWSlot s;
      s.param = p0.to(dtype).cuda();
      s.exp_avg = at::zeros_like(s.param);
      s.exp_avg_sq = at::zeros_like(s.param);
      s.decay = kShapes[i].size() >= 2;
      s.step = first_step[i] - 1;  // advanced before each update below
      slots.push_back(s);
      oracles.push_back({p0, at::zeros_like(p0), at::zeros_like(p0)});
    }
    // bf16 parameters: one step (the kernel rounds p, m and v to bf16 at every store, the oracle does not).
    const int steps = bf16 ? 1 : 5;
    for (int k = 0; k < steps; ++k) {
      const double lr = 1e-2 * (k + 1);
      for (size_t i = 0; i < slots.size(); ++i) {
        const at::Tensor g64 =
            at::randn(kShapes[i], kF64).to(dtype).to(at::kDouble) * static_cast<double>(i + 1);
        slots[i].grad = g64.to(dtype).cuda();
        slots[i].step += 1;
        oracle_step(oracles[i], g64, slots[i].step, slots[i].decay, config, lr);
      }
      if (fused) {
        std::vector<bool> taken;
        QCOMPARE(adamw_update_fused(slots, config, lr, taken), static_cast<int64_t>(slots.size()));
      } else {
        adamw_update_reference(slots, config, lr);
      }
    }
    const double tol = bf16 ? 8e-3 : 1e-5;
    for (size_t i = 0; i < slots.size(); ++i) {
      const std::string tag = std::string(QTest::currentDataTag()) + " slot " + std::to_string(i);
      expect(tag + " p", slots[i].param, oracles[i].p, tol);
      expect(tag + " m", slots[i].exp_avg, oracles[i].m, tol);
      expect(tag + " v", slots[i].exp_avg_sq, oracles[i].v, bf16 ? 1.6e-2 : tol);
    }
  }

  // Slots the kernel cannot take (on the CPU; a param with gaps) go to the reference, the rest to the kernel.
  void dispatch_splits_what_the_kernel_cannot_take() {
    if (!fused_adamw_compiled()) QSKIP("LibTorch < 2.1: no at::_fused_adamw_");
    const AdamWConfig config{0.9, 0.99, 1e-8, 0.05};
    at::manual_seed(11);
    // Each list gets its own copies; index 2's param is every other column of a [40, 20] tensor.
    const std::vector<at::Tensor> bases = {at::randn({30, 7}).cuda(), at::randn({9}),
                                           at::randn({40, 20}).cuda(), at::randn({128}).cuda()};
    auto make = [&](const std::vector<at::Tensor>& grads) {
      std::vector<AdamWSlot> list;
      for (size_t i = 0; i < bases.size(); ++i) {
        AdamWSlot s;
        s.param = i == 2 ? bases[i].clone().slice(1, 0, 20, 2) : bases[i].clone();
        s.grad = grads[i];
        s.exp_avg = at::full(s.param.sizes(), 0.01, s.param.options());
        s.exp_avg_sq = at::full(s.param.sizes(), 0.02, s.param.options());
        s.step = 3;
        s.decay = s.param.dim() >= 2;
        list.push_back(s);
      }
      return list;
    };
    std::vector<at::Tensor> grads;
    for (const at::Tensor& b : bases)
      grads.push_back(
          at::randn(b.dim() == 2 && b.size(1) == 20 ? at::IntArrayRef{40, 10} : b.sizes(), b.options()));
    std::vector<bool> taken;
    std::vector<AdamWSlot> probe = make(grads);
    QCOMPARE(adamw_update_fused(probe, config, 1e-2, taken), int64_t{2});
    QVERIFY(taken[0] && !taken[1] && !taken[2] && taken[3]);
    QVERIFY(at::equal(probe[2].param, bases[2].slice(1, 0, 20, 2)));  // untouched

    std::vector<AdamWSlot> mine = make(grads), ref = make(grads);
    set_prefer_fused_adamw(true);
    adamw_update(mine, config, 1e-2);
    adamw_update_reference(ref, config, 1e-2);
    for (size_t i = 0; i < mine.size(); ++i) {
      QVERIFY2(
          !at::equal(mine[i].param, bases[i].dim() == 2 && i == 2 ? bases[i].slice(1, 0, 20, 2) : bases[i]),
          ("slot " + std::to_string(i) + " was not updated").c_str());
      expect("dispatch slot " + std::to_string(i), mine[i].param, ref[i].param.to(at::kDouble).cpu(), 1e-6);
    }
  }

  // The trainer's steps (clipping on) with the fused form and with the reference agree.
  void trainer_with_and_without_the_fused_form() {
    auto run = [](bool fused) {
      set_prefer_fused_adamw(fused);
      at::manual_seed(3);
      NamedTensors params = {{"layers.0.w", at::randn({48, 32}).cuda().requires_grad_(true)},
                             {"layers.0.b", at::randn({48}).cuda().requires_grad_(true)},
                             {"layers.1.w", at::randn({8, 48}).cuda().requires_grad_(true)}};
      const at::Tensor x = at::randn({64, 32}).cuda();
      const at::Tensor y = at::randn({64, 8}).cuda();
      TrainerConfig c;
      c.total_steps = 6;
      c.schedule = {1e-2, 1e-3, 2, 6};
      c.grad_clip = 0.5;
      c.adamw = {0.9, 0.95, 1e-8, 0.1};
      Trainer trainer(params, c, [&](int64_t, int64_t) {
        const at::Tensor h = at::tanh(at::addmm(params[1].second, x, params[0].second.t()));  // [64, 48]
        const at::Tensor out = at::mm(h, params[2].second.t());                               // [64, 8]
        return LossParts().add("mse", (out - y).pow(2).mean());
      });
      if (trainer.run() != hedgelab::snapshot::RunState::Finished)
        QTest::qFail("the run did not finish", __FILE__, __LINE__);
      std::vector<at::Tensor> out;
      for (auto& [name, t] : params)
        out.push_back(t.detach().to(at::kDouble).cpu());
      return out;
    };
    const auto ref = run(false);
    const auto fused = run(true);
    for (size_t i = 0; i < ref.size(); ++i)
      expect("trainer param " + std::to_string(i), fused[i], ref[i], 1e-5);
    set_prefer_fused_adamw(true);
  }
};

QTEST_APPLESS_MAIN(TestCudaAdamW)
#include "test_cuda_adamw.moc"
