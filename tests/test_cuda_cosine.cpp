// The fused cosine alignment (cuda/cosine_kernels.cu), stage 1's per-token cos between the student's and the
// teacher's attention outputs, against at::cosine_similarity in float64 on the CPU: cos and the gradients of
// both inputs, every pair of float32 / bf16 inputs, row lengths on the vector path (multiples of 8) and off
// it, one to 8192 rows; zero rows (clamped norms); then through ops::cosine_alignment (the dispatch and the
// switches) and distill's stage-1 loss on it. Label cuda; skipped without a GPU or without the CUDA library.
// Errors are ‖out − ref‖∞ / ‖ref‖∞; bounds:
//   cos: 1e-5 (float32 sums of exact products of the inputs as the kernel gets them);
//   gradients: 1e-5 where written in float32, 8e-3 where written in bf16 (2⁻⁸ relative rounding).
// The reference sees the inputs as the kernel sees them (rounded to bf16 first where the kernel gets bf16).
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <QTest>
#include <string>
#include <vector>

#include "core/distill/losses.h"
#include "core/ops/cosine_alignment.h"
#include "core/ops/hedge_mamba_scan.h"
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

// cos, ∂s and ∂t of L = Σ w ∘ cos by at::cosine_similarity in float64 on the CPU.
std::vector<at::Tensor> reference(const at::Tensor& s, const at::Tensor& t, const at::Tensor& w) {
  const at::Tensor sl = s.detach().to(at::kDouble).cpu().requires_grad_(true);
  const at::Tensor tl = t.detach().to(at::kDouble).cpu().requires_grad_(true);
  const at::Tensor cos = at::cosine_similarity(sl, tl, -1, kCosineEps);  // [...]
  const auto g = torch::autograd::grad({(cos * w.to(at::kDouble).cpu()).sum()}, {sl, tl});
  return {cos.detach(), g[0], g[1]};
}

}  // namespace

class TestCudaCosine : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void initTestCase() {
    if (!cuda_kernels_ready()) QSKIP("no CUDA device, or built without the CUDA library (cuda/)");
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    hedgelab::cuda::register_kernels();
#endif
    set_prefer_fused_cosine_alignment(true);
  }

  void kernel_against_reference_data() {
    QTest::addColumn<int>("B");
    QTest::addColumn<int>("T");
    QTest::addColumn<int>("d");
    QTest::addColumn<bool>("s_bf16");
    QTest::addColumn<bool>("t_bf16");
    QTest::newRow("f32/f32 1x1 d8") << 1 << 1 << 8 << false << false;
    QTest::newRow("f32/f32 3x17 d37 (scalar path)") << 3 << 17 << 37 << false << false;
    QTest::newRow("f32/f32 2x64 d2048") << 2 << 64 << 2048 << false << false;
    QTest::newRow("bf16/bf16 4x100 d768") << 4 << 100 << 768 << true << true;
    QTest::newRow("bf16/bf16 2x33 d100 (scalar path)") << 2 << 33 << 100 << true << true;
    QTest::newRow("bf16/bf16 4x2048 d2048") << 4 << 2048 << 2048 << true << true;
    QTest::newRow("bf16/f32 2x50 d1024") << 2 << 50 << 1024 << true << false;
    QTest::newRow("f32/bf16 3x20 d520") << 3 << 20 << 520 << false << true;
  }
  void kernel_against_reference() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QFETCH(int, B);
    QFETCH(int, T);
    QFETCH(int, d);
    QFETCH(bool, s_bf16);
    QFETCH(bool, t_bf16);
    at::manual_seed(B * 131 + T * 7 + d);
    // The teacher a noisy copy of the student's direction at another scale: cos spread over (0, 1).
    const at::Tensor base = at::randn({B, T, d}, kF64);
    const at::Tensor s =
        (base * 0.3 + at::randn({B, T, d}, kF64) * 0.2).to(dtype_of(s_bf16)).cuda().requires_grad_(true);
    const at::Tensor t =
        (base * 2.0 + at::randn({B, T, d}, kF64)).to(dtype_of(t_bf16)).cuda().requires_grad_(true);
    const at::Tensor w = at::randn({B, T}, kF64).to(at::kFloat).cuda();   // [B, T] ∂L/∂cos
    const at::Tensor cos = hedgelab::cuda::fused_cosine_alignment(s, t);  // [B, T]
    QVERIFY(cos.scalar_type() == at::kFloat);
    QVERIFY(cos.sizes() == at::IntArrayRef({B, T}));
    const auto g = torch::autograd::grad({(cos * w).sum()}, {s, t});
    QVERIFY(g[0].scalar_type() == s.scalar_type() && g[1].scalar_type() == t.scalar_type());
    const auto ref = reference(s, t, w);
    const std::string tag = std::string(s_bf16 ? "bf16" : "f32") + "/" + (t_bf16 ? "bf16" : "f32") + " " +
                            std::to_string(B) + "x" + std::to_string(T) + " d" + std::to_string(d);
    expect_close(tag, "cos", cos, ref[0], 1e-5);
    expect_close(tag, "ds", g[0], ref[1], s_bf16 ? 8e-3 : 1e-5);
    expect_close(tag, "dt", g[1], ref[2], t_bf16 ? 8e-3 : 1e-5);
#endif
  }

  // A zero row has a clamped norm: cos is 0 and every gradient finite; the other rows are unaffected. Only
  // the student's gradient is asked for (the teacher is a constant in stage 1).
  void zero_rows_and_one_sided_gradients() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    at::manual_seed(5);
    at::Tensor s0 = at::randn({2, 9, 64});
    s0[0][3].zero_();
    at::Tensor t0 = at::randn({2, 9, 64});
    t0[1][4].zero_();
    const at::Tensor s = s0.cuda().requires_grad_(true), t = t0.cuda();
    const at::Tensor cos = hedgelab::cuda::fused_cosine_alignment(s, t);  // [2, 9]
    QCOMPARE(cos[0][3].item<float>(), 0.f);
    QCOMPARE(cos[1][4].item<float>(), 0.f);
    const at::Tensor ds = torch::autograd::grad({cos.sum()}, {s})[0];
    QVERIFY(at::isfinite(ds).all().item<bool>());
    QCOMPARE(ds[1][4].abs().max().item<float>(), 0.f);  // t = 0 there: cos ≡ 0 whatever s is
    const auto ref = reference(s, t, at::ones({2, 9}));
    at::Tensor mask = at::ones({2, 9, 1}, kF64);
    mask[0][3].zero_();
    mask[1][4].zero_();
    expect_close("zero rows", "cos", cos, ref[0], 1e-5);
    expect_close("zero rows", "ds", ds.cpu().to(at::kDouble) * mask, ref[1] * mask, 1e-5);
#endif
  }

  // Through ops::cosine_alignment: the kernel for CUDA float32 / bf16 inputs; the reference switch and the
  // preference take the ATen form (other bits, the same values); CPU tensors and float64 take it too. The
  // stage-1 loss (distill::cosine_alignment_loss) runs on the dispatch.
  void dispatch_and_switches() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QVERIFY(registered_fused_cosine_alignment() == &hedgelab::cuda::fused_cosine_alignment);
    at::manual_seed(9);
    const at::Tensor s = at::randn({3, 40, 256}).cuda(), t = at::randn({3, 40, 256}).cuda();
    const at::Tensor fused = cosine_alignment(s, t);
    QVERIFY(at::equal(fused, hedgelab::cuda::fused_cosine_alignment(s, t)));
    set_use_reference_scan(true);
    const at::Tensor ref = cosine_alignment(s, t);
    set_use_reference_scan(false);
    set_prefer_fused_cosine_alignment(false);
    const at::Tensor aten = cosine_alignment(s, t);
    set_prefer_fused_cosine_alignment(true);
    QVERIFY(at::equal(ref, aten));
    QVERIFY(at::equal(ref, cosine_alignment_reference(s, t)));
    expect_close("dispatch", "cos", fused, ref.to(at::kDouble).cpu(), 1e-5);
    const at::Tensor cpu = cosine_alignment(s.cpu(), t.cpu());
    QVERIFY(at::equal(cpu, cosine_alignment_reference(s.cpu(), t.cpu())));
    const at::Tensor f64 = cosine_alignment(s.to(at::kDouble), t.to(at::kDouble));
    QVERIFY(f64.scalar_type() == at::kFloat);  // the ATen form, in float32 as documented
    const double loss = hedgelab::distill::cosine_alignment_loss(s, t).item<double>();
    QVERIFY(std::abs(loss - (1.0 - fused.to(at::kDouble).mean().item<double>())) < 1e-6);
#endif
  }
};

QTEST_GUILESS_MAIN(TestCudaCosine)
#include "test_cuda_cosine.moc"
