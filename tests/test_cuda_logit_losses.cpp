// Stage 2's fused logit losses (cuda/logit_losses_kernels.cu), CE against the next token and τ²·KL against
// the KD target's logits, against their definition in float64 on the CPU with autograd: ce, kd and the
// student's gradient of L = w_ce·ce + w_kd·kd; every pair of float32 / bf16 logits; vocabularies on the
// vector path (multiples of 8: 50304, Pythia's) and off it (257, the demo's; 1001), one row to 8192;
// τ = 1, 2 and 0.7; logits of large magnitude and rows with one dominant logit; a target outside the
// vocabulary (NaN ce there, documented); then through ops::logit_losses (the dispatch and the switches).
// Label cuda; skipped without a GPU or without the CUDA library. Errors are ‖out − ref‖∞ / ‖ref‖∞; bounds:
//   ce: 1e-5 (float32 log-sum-exps over V of the inputs as the kernel gets them);
//   kd: 1e-4 (E_p[zᵗ/τ − zˢ/τ] − lse_a + lse_b cancels terms of order log V down to the KL);
//   ∂zˢ: 1e-5 where written in float32, 8e-3 where written in bf16 (2⁻⁸ relative rounding).
// The reference sees the logits as the kernel sees them (rounded to bf16 first where the kernel gets bf16).
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <QTest>
#include <cmath>
#include <string>
#include <vector>

#include "core/ops/hedge_mamba_scan.h"
#include "core/ops/logit_losses.h"
#include "tests/cuda_test_util.h"
#include "tests/tensor_test_util.h"
#ifdef HEDGELAB_HAS_CUDA_KERNELS
#include "cuda/register.h"
#endif

using namespace hedgelab::ops;
using hedgelab::testing::cuda_kernels_ready;
using hedgelab::testing::dtype_of;
using hedgelab::testing::expect_close;
using hedgelab::testing::relative_error;

namespace {

const auto kF64 = at::TensorOptions().dtype(at::kDouble);

// ce, kd and ∂L/∂zs of L = w_ce ce + w_kd kd by the definition in float64 on the CPU.
std::vector<at::Tensor> reference(const at::Tensor& zs, const at::Tensor& zt, const at::Tensor& y, double tau,
                                  double w_ce, double w_kd) {
  const at::Tensor s = zs.detach().to(at::kDouble).cpu().requires_grad_(true);  // [N, V]
  const at::Tensor t = zt.detach().to(at::kDouble).cpu();                       // [N, V]
  const at::Tensor yc = y.cpu().unsqueeze(1);                                   // [N, 1]
  const at::Tensor ce = -at::log_softmax(s, -1).gather(1, yc).mean();
  const at::Tensor log_q = at::log_softmax(s / tau, -1), log_p = at::log_softmax(t / tau, -1);  // [N, V]
  const at::Tensor kd = tau * tau * (log_p.exp() * (log_p - log_q)).sum(-1).mean();
  const auto g = torch::autograd::grad({w_ce * ce + w_kd * kd}, {s});
  return {ce.detach(), kd.detach(), g[0]};
}

}  // namespace

class TestCudaLogitLosses : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void initTestCase() {
    if (!cuda_kernels_ready()) QSKIP("no CUDA device, or built without the CUDA library (cuda/)");
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    hedgelab::cuda::register_kernels();
#endif
    set_prefer_fused_logit_losses(true);
  }

  void kernel_against_reference_data() {
    QTest::addColumn<int>("N");
    QTest::addColumn<int>("V");
    QTest::addColumn<double>("tau");
    QTest::addColumn<double>("scale");
    QTest::addColumn<bool>("s_bf16");
    QTest::addColumn<bool>("t_bf16");
    QTest::newRow("f32/f32 1 row V8 τ1") << 1 << 8 << 1.0 << 1.0 << false << false;
    QTest::newRow("f32/f32 37 rows V257 τ2 (scalar path)") << 37 << 257 << 2.0 << 3.0 << false << false;
    QTest::newRow("f32/f32 16 rows V1001 τ0.7 (scalar path)") << 16 << 1001 << 0.7 << 2.0 << false << false;
    QTest::newRow("f32/f32 64 rows V50304 τ2") << 64 << 50304 << 2.0 << 4.0 << false << false;
    QTest::newRow("bf16/bf16 256 rows V50304 τ2") << 256 << 50304 << 2.0 << 4.0 << true << true;
    QTest::newRow("bf16/bf16 8192 rows V2048 τ1") << 8192 << 2048 << 1.0 << 2.0 << true << true;
    QTest::newRow("bf16/bf16 40 rows V257 τ2 (scalar path)") << 40 << 257 << 2.0 << 3.0 << true << true;
    QTest::newRow("bf16/f32 50 rows V4096 τ2") << 50 << 4096 << 2.0 << 3.0 << true << false;
    QTest::newRow("f32/bf16 20 rows V520 τ0.7") << 20 << 520 << 0.7 << 3.0 << false << true;
    QTest::newRow("f32/f32 32 rows V50304 logits of magnitude 100")
        << 32 << 50304 << 2.0 << 100.0 << false << false;
  }
  void kernel_against_reference() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QFETCH(int, N);
    QFETCH(int, V);
    QFETCH(double, tau);
    QFETCH(double, scale);
    QFETCH(bool, s_bf16);
    QFETCH(bool, t_bf16);
    at::manual_seed(N * 131 + V);
    // The student a noisy copy of the teacher: KL spread around its typical stage-2 size.
    const at::Tensor base = at::randn({N, V}, kF64) * scale;
    const at::Tensor zs = (base + at::randn({N, V}, kF64) * (0.5 * scale))
                              .to(dtype_of(s_bf16))
                              .cuda()
                              .requires_grad_(true);                                           // [N, V]
    const at::Tensor zt = base.to(dtype_of(t_bf16)).cuda();                                    // [N, V]
    const at::Tensor y = at::randint(0, V, {N}, at::TensorOptions().dtype(at::kLong)).cuda();  // [N]
    const double w_ce = 0.8, w_kd = 1.5;
    const auto rows = hedgelab::cuda::fused_logit_losses(zs, zt, y, tau);  // ce_n, KL_n [N]
    QVERIFY(rows.first.scalar_type() == at::kFloat && rows.second.scalar_type() == at::kFloat);
    QVERIFY(rows.first.sizes() == at::IntArrayRef({N}) && rows.second.sizes() == at::IntArrayRef({N}));
    const at::Tensor ce = rows.first.mean(), kd = tau * tau * rows.second.mean();
    const at::Tensor dzs = torch::autograd::grad({w_ce * ce + w_kd * kd}, {zs})[0];
    QVERIFY(dzs.scalar_type() == zs.scalar_type());
    const auto ref = reference(zs, zt, y, tau, w_ce, w_kd);
    const std::string tag = std::string(s_bf16 ? "bf16" : "f32") + "/" + (t_bf16 ? "bf16" : "f32") + " " +
                            std::to_string(N) + "x" + std::to_string(V) + " τ" + std::to_string(tau) +
                            " |z|~" + std::to_string(static_cast<int>(scale));
    expect_close(tag, "ce", ce, ref[0], 1e-5);
    expect_close(tag, "kd", kd, ref[1], 1e-4);
    expect_close(tag, "dzs", dzs, ref[2], s_bf16 ? 8e-3 : 1e-5);
#endif
  }

  // Equal logits: KL ≡ 0 (to rounding) and the KD gradient vanishes; one dominant logit a row (a confident
  // teacher) keeps everything finite; a gradient for ce alone (kd unused) is the CE gradient only.
  void limits_and_one_sided_gradients() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    at::manual_seed(3);
    const int64_t N = 24, V = 50304;
    at::Tensor z0 = at::randn({N, V}, kF64) * 3.0;
    for (int64_t n = 0; n < N; ++n)
      z0[n][(n * 977) % V] = 60.0;
    const at::Tensor zs = z0.to(at::kFloat).cuda().requires_grad_(true), zt = z0.to(at::kFloat).cuda();
    const at::Tensor y = at::randint(0, V, {N}, at::TensorOptions().dtype(at::kLong)).cuda();
    const auto rows = hedgelab::cuda::fused_logit_losses(zs, zt, y, 2.0);
    QVERIFY(at::isfinite(rows.first).all().item<bool>() && at::isfinite(rows.second).all().item<bool>());
    QVERIFY(rows.second.abs().max().item<double>() < 1e-5);
    const at::Tensor dce = torch::autograd::grad({rows.first.mean()}, {zs})[0];
    const auto ref = reference(zs, zt, y, 2.0, 1.0, 0.0);
    expect_close("dominant logits", "ce", rows.first.mean(), ref[0], 1e-5);
    expect_close("dominant logits", "dce", dce, ref[2], 1e-5);
#endif
  }

  // A target outside [0, V) makes that row's ce NaN (documented in core/ops/logit_losses.h) and leaves the
  // other rows and every KL as they were.
  void target_outside_the_vocabulary_is_nan_in_its_row() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    at::manual_seed(4);
    const at::Tensor zs = at::randn({4, 300}).cuda(), zt = at::randn({4, 300}).cuda();
    at::Tensor y = at::randint(0, 300, {4}, at::TensorOptions().dtype(at::kLong));
    y[1] = 300;
    y[2] = -1;
    const auto rows = hedgelab::cuda::fused_logit_losses(zs, zt, y.cuda(), 1.0);
    const at::Tensor ce = rows.first.cpu();
    QVERIFY(std::isnan(ce[1].item<float>()) && std::isnan(ce[2].item<float>()));
    QVERIFY(std::isfinite(ce[0].item<float>()) && std::isfinite(ce[3].item<float>()));
    QVERIFY(at::isfinite(rows.second).all().item<bool>());
#endif
  }

  // Through ops::logit_losses: the kernel for CUDA float32 / bf16 logits ([B,T,V] reshaped); the reference
  // switch and the preference take the ATen form; CPU tensors and float64 take it too; bad input is named.
  void dispatch_and_switches() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QVERIFY(registered_fused_logit_losses() == &hedgelab::cuda::fused_logit_losses);
    at::manual_seed(9);
    const at::Tensor zs = at::randn({2, 30, 1000}).to(at::kBFloat16).cuda();
    const at::Tensor zt = at::randn({2, 30, 1000}).to(at::kBFloat16).cuda();
    const at::Tensor y = at::randint(0, 1000, {2, 30}, at::TensorOptions().dtype(at::kLong)).cuda();
    const LogitLosses fused = logit_losses(zs, zt, y, 2.0);
    const auto rows = hedgelab::cuda::fused_logit_losses(zs.reshape({60, 1000}), zt.reshape({60, 1000}),
                                                         y.reshape({60}), 2.0);
    QVERIFY(at::equal(fused.ce, rows.first.mean()));
    set_use_reference_scan(true);
    const LogitLosses ref = logit_losses(zs, zt, y, 2.0);
    set_use_reference_scan(false);
    set_prefer_fused_logit_losses(false);
    const LogitLosses aten = logit_losses(zs, zt, y, 2.0);
    set_prefer_fused_logit_losses(true);
    QVERIFY(at::equal(ref.ce, aten.ce) && at::equal(ref.kd, aten.kd));
    const LogitLosses direct = logit_losses_reference(zs, zt, y, 2.0);
    QVERIFY(at::equal(ref.ce, direct.ce) && at::equal(ref.kd, direct.kd));
    expect_close("dispatch", "ce", fused.ce, ref.ce.to(at::kDouble).cpu(), 1e-5);
    expect_close("dispatch", "kd", fused.kd, ref.kd.to(at::kDouble).cpu(), 1e-4);
    const LogitLosses cpu = logit_losses(zs.cpu(), zt.cpu(), y.cpu(), 2.0);
    const LogitLosses cpu_ref = logit_losses_reference(zs.cpu(), zt.cpu(), y.cpu(), 2.0);
    QVERIFY(at::equal(cpu.ce, cpu_ref.ce) && at::equal(cpu.kd, cpu_ref.kd));
    bool named = false;
    try {
      logit_losses(zs, zt.narrow(2, 0, 999), y, 2.0);
    } catch (const c10::Error& e) {
      named = std::string(e.what_without_backtrace()).find("teacher logits") != std::string::npos;
    }
    QVERIFY(named);
#endif
  }
};

QTEST_GUILESS_MAIN(TestCudaLogitLosses)
#include "test_cuda_logit_losses.moc"
