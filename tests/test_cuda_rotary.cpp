// The fused rotary embedding (cuda/rotary_kernels.cu) against the definition in float64 on the CPU with
// autograd (the angles θ = pos · inv_freq taken in float32, as the ATen form and transformers take them):
// the output and the input's gradient; float32 and bf16; the rotated part on the vector path and off it;
// x dense, as the teacher hands it over (q of the fused [B,T,H,3P] projection) and misaligned; the full
// head rotated; position offsets and linear scaling; then through ops::rotary and the teacher (the dispatch
// and the switches). Label cuda; skipped without a GPU or without the CUDA library. Errors are
// ‖got − ref‖∞ / ‖ref‖∞; bounds: 1e-5 in float32 (sincosf and a rounding or two), 8e-3 in bf16 (2⁻⁸ relative
// rounding of the output).
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <QTest>
#include <string>
#include <vector>

#include "core/models/gpt_neox.h"
#include "core/ops/hedge_mamba_scan.h"
#include "core/ops/rotary.h"
#include "tests/cuda_test_util.h"
#include "tests/tensor_test_util.h"
#ifdef HEDGELAB_HAS_CUDA_KERNELS
#include "cuda/register.h"
#endif

using namespace hedgelab::ops;
using hedgelab::testing::cuda_kernels_ready;
using hedgelab::testing::expect_close;
using hedgelab::testing::misaligned_copy;
using hedgelab::testing::relative_error;

namespace {

const auto kF64 = at::TensorOptions().dtype(at::kDouble);

// y and ∂L/∂x of L = Σ g ∘ y by the definition in float64 on the CPU.
std::vector<at::Tensor> reference(const at::Tensor& x, const at::Tensor& g, int64_t r, double base,
                                  double factor, int64_t offset) {
  const at::Tensor xl = x.detach().to(at::kDouble).cpu().requires_grad_(true);
  const int64_t T = x.size(2);
  const at::Tensor inv = rotary_inverse_frequencies(r, base, at::kCPU);  // [r/2] float32
  at::Tensor pos = at::arange(offset, offset + T, at::TensorOptions().dtype(at::kFloat));
  if (factor != 1.0) pos = pos / factor;
  const at::Tensor theta = at::outer(pos, inv).to(at::kDouble);  // [T, r/2], float32 products
  const at::Tensor c = theta.cos(), s = theta.sin();             // [T, r/2]
  const at::Tensor x1 = xl.narrow(3, 0, r / 2), x2 = xl.narrow(3, r / 2, r / 2);
  const at::Tensor y = at::cat({x1 * c - x2 * s, x2 * c + x1 * s, xl.narrow(3, r, x.size(3) - r)}, 3);
  const auto grads = torch::autograd::grad({(y * g.to(at::kDouble).cpu()).sum()}, {xl});
  return {y.detach(), grads[0]};
}

}  // namespace

class TestCudaRotary : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void initTestCase() {
    if (!cuda_kernels_ready()) QSKIP("no CUDA device, or built without the CUDA library (cuda/)");
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    hedgelab::cuda::register_kernels();
#endif
    set_prefer_fused_rotary(true);
  }

  void kernel_against_reference_data() {
    QTest::addColumn<int>("B");
    QTest::addColumn<int>("H");
    QTest::addColumn<int>("T");
    QTest::addColumn<int>("P");
    QTest::addColumn<int>("r");
    QTest::addColumn<int>("offset");
    QTest::addColumn<double>("factor");
    QTest::addColumn<bool>("bf16");
    QTest::addColumn<QString>("layout");  // dense | qkv | misaligned
    QTest::newRow("f32 1x1 H1 P8 r8") << 1 << 1 << 1 << 8 << 8 << 0 << 1.0 << false << "dense";
    QTest::newRow("f32 2x37 H3 P64 r16 qkv") << 2 << 3 << 37 << 64 << 16 << 0 << 1.0 << false << "qkv";
    QTest::newRow("f32 2x50 H2 P40 r10 (scalar path)")
        << 2 << 2 << 50 << 40 << 10 << 0 << 1.0 << false << "dense";
    QTest::newRow("f32 1x33 H2 P64 r64 (full)") << 1 << 2 << 33 << 64 << 64 << 0 << 1.0 << false << "dense";
    QTest::newRow("f32 2x20 H2 P256 r64 offset 5000 x2")
        << 2 << 2 << 20 << 256 << 64 << 5000 << 2.0 << false << "qkv";
    QTest::newRow("f32 1x1 H4 P64 r16 offset 777 (decode)")
        << 1 << 4 << 1 << 64 << 16 << 777 << 1.0 << false << "qkv";
    QTest::newRow("f32 1x40 H2 P96 r32 misaligned")
        << 1 << 2 << 40 << 96 << 32 << 0 << 1.0 << false << "misaligned";
    QTest::newRow("f32 2x16384 H2 P64 r16") << 2 << 2 << 16384 << 64 << 16 << 0 << 1.0 << false << "dense";
    QTest::newRow("bf16 2x17 H2 P64 r16") << 2 << 2 << 17 << 64 << 16 << 0 << 1.0 << true << "dense";
    QTest::newRow("bf16 2x30 H3 P40 r10 (scalar path)")
        << 2 << 3 << 30 << 40 << 10 << 0 << 1.0 << true << "qkv";
    QTest::newRow("bf16 1x40 H2 P96 r32 misaligned")
        << 1 << 2 << 40 << 96 << 32 << 0 << 1.0 << true << "misaligned";
    QTest::newRow("bf16 4x2048 H8 P256 r64 qkv") << 4 << 8 << 2048 << 256 << 64 << 0 << 1.0 << true << "qkv";
  }
  void kernel_against_reference() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QFETCH(int, B);
    QFETCH(int, H);
    QFETCH(int, T);
    QFETCH(int, P);
    QFETCH(int, r);
    QFETCH(int, offset);
    QFETCH(double, factor);
    QFETCH(bool, bf16);
    QFETCH(QString, layout);
    at::manual_seed(B * 131 + T * 7 + H * 3 + P + r);
    const at::ScalarType dt = bf16 ? at::kBFloat16 : at::kFloat;
    const double base = 10000.0;
    at::Tensor x;  // [B, H, T, P]
    if (layout == "qkv") {
      const at::Tensor qkv = at::randn({B, T, H, 3 * P}, kF64).to(dt).cuda();  // [B, T, H, 3P]
      x = qkv.narrow(3, 0, P).permute({0, 2, 1, 3});
    } else if (layout == "misaligned") {
      x = misaligned_copy(at::randn({B, H, T, P}, kF64).to(dt).cuda());
    } else {
      x = at::randn({B, H, T, P}, kF64).to(dt).cuda();
    }
    x.requires_grad_(true);
    const at::Tensor g = at::randn({B, H, T, P}, kF64).to(at::kBFloat16).to(at::kFloat).cuda();
    const at::Tensor y =
        hedgelab::cuda::fused_rotary(x, rotary_inverse_frequencies(r, base, x.device()), r, factor, offset);
    QVERIFY(y.scalar_type() == dt && y.sizes() == x.sizes() && y.is_contiguous());
    const auto dx = torch::autograd::grad({(y.to(at::kFloat) * g).sum()}, {x});
    QVERIFY(dx[0].scalar_type() == dt);
    const auto ref = reference(x, g, r, base, factor, offset);
    const std::string tag = std::string(bf16 ? "bf16 " : "f32 ") + std::to_string(B) + "x" +
                            std::to_string(T) + " H" + std::to_string(H) + " P" + std::to_string(P) + " r" +
                            std::to_string(r) + " " + layout.toStdString();
    expect_close(tag, "y", y, ref[0], bf16 ? 8e-3 : 1e-5);
    expect_close(tag, "dx", dx[0], ref[1], bf16 ? 8e-3 : 1e-5);
#endif
  }

  // Through ops::rotary and the teacher: the kernel for CUDA float32 / bf16; the reference switch, the
  // preference and CPU tensors take the ATen form; r = 0 is the identity either way; a teacher's logits
  // agree both ways.
  void dispatch_and_switches() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QVERIFY(registered_fused_rotary() == &hedgelab::cuda::fused_rotary);
    at::manual_seed(3);
    const at::Tensor x = at::randn({2, 4, 50, 64}).cuda();  // [B, H, T, P]
    const at::Tensor fused = rotary(x, 16, 10000.0, 1.0, 3);
    QVERIFY(at::equal(fused, hedgelab::cuda::fused_rotary(
                                 x, rotary_inverse_frequencies(16, 10000.0, x.device()), 16, 1.0, 3)));
    set_use_reference_scan(true);
    const at::Tensor ref = rotary(x, 16, 10000.0, 1.0, 3);
    set_use_reference_scan(false);
    set_prefer_fused_rotary(false);
    const at::Tensor aten = rotary(x, 16, 10000.0, 1.0, 3);
    set_prefer_fused_rotary(true);
    QVERIFY(at::equal(ref, aten));
    QVERIFY(at::equal(ref, rotary_reference(x, 16, 10000.0, 1.0, 3)));
    expect_close("dispatch", "y", fused, ref.to(at::kDouble).cpu(), 1e-5);
    QVERIFY(at::equal(rotary(x, 0, 10000.0, 1.0, 0), x));
    QVERIFY(at::equal(rotary(x.cpu(), 16, 10000.0, 1.0, 3), rotary_reference(x.cpu(), 16, 10000.0, 1.0, 3)));
    bool threw = false;
    try {
      hedgelab::cuda::fused_rotary(x, rotary_inverse_frequencies(15, 10000.0, x.device()), 15, 1.0, 0);
    } catch (const c10::Error&) {
      threw = true;
    }
    QVERIFY(threw);
    // A small teacher on the GPU: logits with the kernel and with the ATen form.
    hedgelab::models::GptNeoXConfig c;
    c.vocab_size = 97;
    c.hidden_size = 64;
    c.num_layers = 2;
    c.num_heads = 4;
    c.intermediate_size = 128;
    hedgelab::models::GptNeoXForCausalLM teacher(c);
    teacher->to(at::kCUDA);
    const at::NoGradGuard no_grad;
    const at::Tensor ids = at::randint(0, c.vocab_size, {2, 40}, at::TensorOptions().dtype(at::kLong)).cuda();
    const at::Tensor with_kernel = teacher->forward(ids).logits;
    set_prefer_fused_rotary(false);
    const at::Tensor with_aten = teacher->forward(ids).logits;
    set_prefer_fused_rotary(true);
    expect_close("teacher", "lg", with_kernel, with_aten.to(at::kDouble).cpu(), 1e-4);
#endif
  }
};

QTEST_GUILESS_MAIN(TestCudaRotary)
#include "test_cuda_rotary.moc"
