// The fused short causal convolution (cuda/causal_conv_kernels.cu), the depthwise convolution in front of
// the mixer's scan, against at::conv1d (groups = C, W−1 zeros of left padding) in float64 on the CPU: the
// output and the gradients of the input, the weight and the bias; float32 and bf16 inputs; channel counts
// on the vector path (multiples of 8) and off it, a misaligned input, lengths that are not a multiple of a
// thread's tile (16) or a block's span (128), widths 1 to 8; then through ops::causal_conv1d and the
// mixer's CausalConv1d (the dispatch and the switches). Label cuda; skipped without a GPU or without the
// CUDA library. Errors are ‖out − ref‖∞ / ‖ref‖∞; bounds:
//   out, dx: 1e-5 where written in float32, 8e-3 where written in bf16 (2⁻⁸ relative rounding);
//   dw, db:  1e-5 (float32 sums of exact products; the output gradient is bf16-representable, so the
//            reference sees it as the kernel does).
// The reference sees the inputs as the kernel sees them (rounded to bf16 first where the kernel gets bf16).
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <QTest>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/models/hedge_mamba.h"
#include "core/ops/causal_conv.h"
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
using hedgelab::testing::misaligned_copy;
using hedgelab::testing::relative_error;

namespace {

const auto kF64 = at::TensorOptions().dtype(at::kDouble);

// out, ∂x, ∂w, ∂b of L = Σ g ∘ out by at::conv1d in float64 on the CPU: x [B,T,C], w [C,W], b [C], g [B,T,C].
std::vector<at::Tensor> reference(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                                  const at::Tensor& g) {
  const int64_t C = x.size(2), W = w.size(1);
  const at::Tensor xl = x.detach().to(at::kDouble).cpu().requires_grad_(true);
  const at::Tensor wl = w.detach().to(at::kDouble).cpu().requires_grad_(true);
  const at::Tensor bl = b.detach().to(at::kDouble).cpu().requires_grad_(true);
  const at::Tensor padded = at::constant_pad_nd(xl.transpose(1, 2), {W - 1, 0});  // [B, C, T+W−1]
  const at::Tensor out = at::conv1d(padded, wl.view({C, 1, W}), bl, at::IntArrayRef{1}, at::IntArrayRef{0},
                                    at::IntArrayRef{1}, C)
                             .transpose(1, 2);  // [B,T,C]
  const auto grads = torch::autograd::grad({(out * g.to(at::kDouble).cpu()).sum()}, {xl, wl, bl});
  return {out.detach(), grads[0], grads[1], grads[2]};
}

}  // namespace

class TestCudaConv : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void initTestCase() {
    if (!cuda_kernels_ready()) QSKIP("no CUDA device, or built without the CUDA library (cuda/)");
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    hedgelab::cuda::register_kernels();
#endif
    set_prefer_fused_causal_conv(true);
  }

  void kernel_against_reference_data() {
    QTest::addColumn<int>("B");
    QTest::addColumn<int>("T");
    QTest::addColumn<int>("C");
    QTest::addColumn<int>("W");
    QTest::addColumn<bool>("bf16");
    QTest::addColumn<bool>("misaligned");
    QTest::newRow("f32 1x1 C8 W4") << 1 << 1 << 8 << 4 << false << false;
    QTest::newRow("f32 2x5 C16 W4 (T < W)") << 2 << 5 << 16 << 4 << false << false;
    QTest::newRow("f32 3x129 C37 W3 (scalar path)") << 3 << 129 << 37 << 3 << false << false;
    QTest::newRow("f32 2x300 C64 W1") << 2 << 300 << 64 << 1 << false << false;
    QTest::newRow("f32 2x1000 C256 W6") << 2 << 1000 << 256 << 6 << false << false;
    QTest::newRow("f32 1x257 C40 W8 misaligned") << 1 << 257 << 40 << 8 << false << true;
    QTest::newRow("f32 4x2048 C2048 W4") << 4 << 2048 << 2048 << 4 << false << false;
    QTest::newRow("bf16 2x17 C8 W4") << 2 << 17 << 8 << 4 << true << false;
    QTest::newRow("bf16 2x130 C100 W4 (scalar path)") << 2 << 130 << 100 << 4 << true << false;
    QTest::newRow("bf16 3x511 C512 W5") << 3 << 511 << 512 << 5 << true << false;
    QTest::newRow("bf16 2x200 C96 W4 misaligned") << 2 << 200 << 96 << 4 << true << true;
    QTest::newRow("bf16 4x2048 C2048 W4") << 4 << 2048 << 2048 << 4 << true << false;
  }
  void kernel_against_reference() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QFETCH(int, B);
    QFETCH(int, T);
    QFETCH(int, C);
    QFETCH(int, W);
    QFETCH(bool, bf16);
    QFETCH(bool, misaligned);
    at::manual_seed(B * 131 + T * 7 + C + W);
    at::Tensor x = at::randn({B, T, C}, kF64).to(dtype_of(bf16)).cuda();  // [B, T, C]
    if (misaligned) x = misaligned_copy(x);
    x.requires_grad_(true);
    const at::Tensor w =
        (at::randn({C, W}, kF64) * 0.5).to(at::kFloat).cuda().requires_grad_(true);                // [C, W]
    const at::Tensor b = (at::randn({C}, kF64) * 0.1).to(at::kFloat).cuda().requires_grad_(true);  // [C]
    // ∂L/∂out, bf16-representable so the reference sees the output gradient the kernel gets.
    const at::Tensor g = at::randn({B, T, C}, kF64).to(at::kBFloat16).to(at::kFloat).cuda();  // [B, T, C]
    const at::Tensor out = hedgelab::cuda::fused_causal_conv1d(x, w, b);                      // [B, T, C]
    QVERIFY(out.scalar_type() == x.scalar_type());
    QVERIFY(out.sizes() == x.sizes());
    const auto grads = torch::autograd::grad({(out.to(at::kFloat) * g).sum()}, {x, w, b});
    QVERIFY(grads[0].scalar_type() == x.scalar_type() && grads[1].scalar_type() == at::kFloat);
    const auto ref = reference(x, w, b, g);
    const std::string tag = std::string(bf16 ? "bf16 " : "f32 ") + std::to_string(B) + "x" +
                            std::to_string(T) + " C" + std::to_string(C) + " W" + std::to_string(W) +
                            (misaligned ? " misaligned" : "");
    expect_close(tag, "out", out, ref[0], bf16 ? 8e-3 : 1e-5);
    expect_close(tag, "dx", grads[0], ref[1], bf16 ? 8e-3 : 1e-5);
    expect_close(tag, "dw", grads[1], ref[2], 1e-5);
    expect_close(tag, "db", grads[2], ref[3], 1e-5);
#endif
  }

  // Values outside a token's window never reach it: an inf in the input poisons exactly the W outputs that
  // read it (not the ones a register window of 8 holds past W), and only the weight gradient reads it back.
  void inputs_outside_the_window_do_not_leak() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    const int64_t T = 40, C = 16, W = 3;
    at::Tensor x = at::randn({1, T, C});
    x[0][10][5] = std::numeric_limits<float>::infinity();
    const at::Tensor out =
        hedgelab::cuda::fused_causal_conv1d(x.cuda(), at::rand({C, W}).cuda() + 0.1, at::zeros({C}).cuda())
            .cpu();
    const at::Tensor col = out.select(0, 0).select(1, 5);  // [T]
    for (int64_t t = 0; t < T; ++t)
      QCOMPARE(bool(std::isfinite(col[t].item<float>())), t < 10 || t >= 10 + W);
    QVERIFY(at::isfinite(out.select(2, 4)).all().item<bool>());
#endif
  }

  // Through ops::causal_conv1d and the mixer's module: the kernel for CUDA float32 / bf16 inputs without a
  // tail; the reference switch, the preference, a tail (decoding), a width past 8 and CPU tensors take the
  // ATen form, with the same values within the bounds above.
  void dispatch_and_switches() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QVERIFY(registered_fused_causal_conv() == &hedgelab::cuda::fused_causal_conv1d);
    at::manual_seed(9);
    hedgelab::models::CausalConv1d conv(256, 4);
    conv->to(at::kCUDA);
    {
      const at::NoGradGuard no_grad;
      conv->weight.copy_(at::randn({256, 4}));
      conv->bias.copy_(at::randn({256}));
    }
    const at::Tensor x = at::randn({3, 150, 256}).cuda();  // [B, T, C]
    const at::Tensor fused = conv->forward(x);
    QVERIFY(at::equal(fused, hedgelab::cuda::fused_causal_conv1d(x, conv->weight, conv->bias)));
    set_use_reference_scan(true);
    const at::Tensor ref = conv->forward(x);
    set_use_reference_scan(false);
    set_prefer_fused_causal_conv(false);
    const at::Tensor aten = conv->forward(x);
    set_prefer_fused_causal_conv(true);
    QVERIFY(at::equal(ref, aten));
    QVERIFY(at::equal(ref, causal_conv1d_reference(x, conv->weight, conv->bias)));
    expect_close("dispatch", "out", fused, ref.to(at::kDouble).cpu(), 1e-5);
    // A tail: the reference, which also hands back the last W−1 inputs.
    at::Tensor tail;
    const at::Tensor with_tail = conv->forward(x, &tail);
    QVERIFY(tail.defined() && tail.sizes() == at::IntArrayRef({3, 256, 3}));
    QVERIFY(at::equal(with_tail, ref));
    // Width 9: past the kernel, the reference.
    const at::Tensor w9 = at::randn({256, 9}).cuda(), b9 = at::randn({256}).cuda();
    QVERIFY(at::equal(causal_conv1d(x, w9, b9), causal_conv1d_reference(x, w9, b9)));
    bool threw = false;
    try {
      hedgelab::cuda::fused_causal_conv1d(x, w9, b9);
    } catch (const c10::Error&) {
      threw = true;
    }
    QVERIFY(threw);
    // CPU tensors: the reference.
    const at::Tensor cpu = causal_conv1d(x.cpu(), conv->weight.cpu(), conv->bias.cpu());
    QVERIFY(at::equal(cpu, causal_conv1d_reference(x.cpu(), conv->weight.cpu(), conv->bias.cpu())));
#endif
  }
};

QTEST_GUILESS_MAIN(TestCudaConv)
#include "test_cuda_conv.moc"
