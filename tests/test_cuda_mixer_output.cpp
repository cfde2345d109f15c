// The fused mixer read-out (cuda/mixer_output_kernels.cu), y = (num / (den + eps) + D·x) · 2σ(z) · gain with
// the heads merged, against the formula evaluated in float64 on the CPU with autograd: y and the gradients
// of num, den, x, D, z and gain; float32 and bf16; with and without the gate; head sizes on the vector path
// (multiples of 8) and off it; x as the mixer hands it over (the heads' permuted view of [B,T,d]) and dense;
// a misaligned num; row counts that are not a multiple of a block's 32 rows; then through ops::mixer_output
// and the HedgeMamba mixer (the dispatch and the switches). Label cuda; skipped without a GPU or without the
// CUDA library. Errors are ‖got − ref‖∞ / ‖ref‖∞; bounds:
//   y, dnum, dx, dz: 1e-5 where written in float32, 8e-3 where written in bf16 (2⁻⁸ relative rounding);
//   dden, dD, dgain: 1e-4 (float32 sums, of up to B·T·P products for dD and dgain; in bf16 runs the inputs
//                    and the output gradient are bf16-representable, so the reference sees what the kernel
//                    gets).
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <QTest>
#include <string>
#include <vector>

#include "core/models/hedge_mamba.h"
#include "core/ops/autocast.h"
#include "core/ops/hedge_mamba_scan.h"
#include "core/ops/mixer_output.h"
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
constexpr double kEps = 1e-6;

struct Inputs {
  at::Tensor num, den, x, D, z, gain;  // as the op takes them (CUDA, requires_grad)
};

// y and the six gradients of L = Σ g ∘ y, by the formula in float64 on the CPU.
std::vector<at::Tensor> reference(const Inputs& in, const at::Tensor& g) {
  auto leaf = [](const at::Tensor& t) {
    return t.defined() ? t.detach().to(at::kDouble).cpu().requires_grad_(true) : at::Tensor();
  };
  const at::Tensor num = leaf(in.num), den = leaf(in.den), x = leaf(in.x), D = leaf(in.D), z = leaf(in.z),
                   gain = leaf(in.gain);
  const int64_t B = num.size(0), H = num.size(1), T = num.size(2), P = num.size(3);
  // [B, T, H, P], written out element-wise from the definition.
  const at::Tensor s = (num / (den.unsqueeze(3) + kEps) + D.view({1, H, 1, 1}) * x).permute({0, 2, 1, 3});
  const at::Tensor gate = z.defined() ? (2.0 / (1.0 + at::exp(-z))).view({B, T, H, P}) : at::ones_like(s);
  const at::Tensor y = (s * gate * gain.view({1, 1, H, 1})).reshape({B, T, H * P});  // [B, T, d]
  std::vector<at::Tensor> wrt{num, den, x, D, gain};
  if (z.defined()) wrt.push_back(z);
  const auto grads = torch::autograd::grad({(y * g.to(at::kDouble).cpu()).sum()}, wrt);
  std::vector<at::Tensor> out{y.detach()};
  out.insert(out.end(), grads.begin(), grads.end());
  return out;  // y, dnum, dden, dx, dD, dgain[, dz]
}

// Random inputs in `dt`; x either the heads' view of a [B,T,d] tensor (as the mixer passes it) or dense.
Inputs make_inputs(int64_t B, int64_t H, int64_t T, int64_t P, at::ScalarType dt, bool gate, bool x_view,
                   bool misaligned) {
  Inputs in;
  auto cuda = [&](const at::Tensor& t) { return t.to(dt).cuda(); };
  in.num = cuda(at::randn({B, H, T, P}, kF64));
  if (misaligned) in.num = misaligned_copy(in.num);
  in.den = (at::rand({B, H, T}, kF64) * 4 + 0.25).to(at::kFloat).cuda();  // den > 0, as the scan gives it
  in.x = x_view ? cuda(at::randn({B, T, H * P}, kF64)).view({B, T, H, P}).permute({0, 2, 1, 3})
                : cuda(at::randn({B, H, T, P}, kF64));
  in.D = (at::randn({H}, kF64) + 1).to(at::kFloat).cuda();
  in.gain = (at::rand({H}, kF64) + 0.5).to(at::kFloat).cuda();
  if (gate) in.z = cuda(at::randn({B, T, H * P}, kF64) * 2);
  for (at::Tensor* t : {&in.num, &in.den, &in.x, &in.D, &in.gain, &in.z})
    if (t->defined()) t->requires_grad_(true);
  return in;
}

// A one-layer mixer (d 64, two heads of P 32, chunk 16) on the GPU, with its fresh parameters.
hedgelab::models::HedgeMambaMixer small_cuda_mixer() {
  hedgelab::models::GptNeoXConfig config;
  config.vocab_size = 50;
  config.hidden_size = 64;
  config.num_layers = 1;
  config.num_heads = 2;
  config.intermediate_size = 128;
  hedgelab::models::MixerOptions options;
  options.chunk = 16;
  hedgelab::models::HedgeMambaMixer mixer(config, options);
  mixer->to(at::kCUDA);
  return mixer;
}

}  // namespace

class TestCudaMixerOutput : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void initTestCase() {
    if (!cuda_kernels_ready()) QSKIP("no CUDA device, or built without the CUDA library (cuda/)");
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    hedgelab::cuda::register_kernels();
#endif
    set_prefer_fused_mixer_output(true);
  }

  void kernel_against_reference_data() {
    QTest::addColumn<int>("B");
    QTest::addColumn<int>("H");
    QTest::addColumn<int>("T");
    QTest::addColumn<int>("P");
    QTest::addColumn<bool>("bf16");
    QTest::addColumn<bool>("gate");
    QTest::addColumn<bool>("x_view");
    QTest::addColumn<bool>("misaligned");
    QTest::newRow("f32 1x1 H1 P8") << 1 << 1 << 1 << 8 << false << true << true << false;
    QTest::newRow("f32 2x37 H3 P64 gate") << 2 << 3 << 37 << 64 << false << true << true << false;
    QTest::newRow("f32 2x37 H3 P64 no gate") << 2 << 3 << 37 << 64 << false << false << true << false;
    QTest::newRow("f32 3x50 H2 P37 (scalar path)") << 3 << 2 << 50 << 37 << false << true << true << false;
    QTest::newRow("f32 2x65 H4 P256 dense x") << 2 << 4 << 65 << 256 << false << true << false << false;
    QTest::newRow("f32 1x70 H2 P96 misaligned") << 1 << 2 << 70 << 96 << false << true << true << true;
    QTest::newRow("f32 2x1000 H8 P256") << 2 << 8 << 1000 << 256 << false << true << true << false;
    QTest::newRow("f32 1x100 H2 P600") << 1 << 2 << 100 << 600 << false << true << true << false;
    QTest::newRow("bf16 2x17 H2 P8") << 2 << 2 << 17 << 8 << true << true << true << false;
    QTest::newRow("bf16 2x33 H3 P100 (scalar path)") << 2 << 3 << 33 << 100 << true << true << true << false;
    QTest::newRow("bf16 2x40 H2 P64 no gate") << 2 << 2 << 40 << 64 << true << false << true << false;
    QTest::newRow("bf16 1x70 H2 P96 misaligned") << 1 << 2 << 70 << 96 << true << true << true << true;
    QTest::newRow("bf16 4x2048 H8 P256") << 4 << 8 << 2048 << 256 << true << true << true << false;
  }
  void kernel_against_reference() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QFETCH(int, B);
    QFETCH(int, H);
    QFETCH(int, T);
    QFETCH(int, P);
    QFETCH(bool, bf16);
    QFETCH(bool, gate);
    QFETCH(bool, x_view);
    QFETCH(bool, misaligned);
    at::manual_seed(B * 131 + T * 7 + H * 3 + P);
    const at::ScalarType dt = bf16 ? at::kBFloat16 : at::kFloat;
    const Inputs in = make_inputs(B, H, T, P, dt, gate, x_view, misaligned);
    // ∂L/∂y, bf16-representable so the reference sees the output gradient the kernel gets.
    const at::Tensor g = at::randn({B, T, H * P}, kF64).to(at::kBFloat16).to(at::kFloat).cuda();
    const at::Tensor y = hedgelab::cuda::fused_mixer_output(in.num, in.den, in.x, in.D, in.z, in.gain, kEps);
    QVERIFY(y.scalar_type() == dt);
    QVERIFY(y.sizes() == at::IntArrayRef({B, T, H * P}));
    std::vector<at::Tensor> wrt{in.num, in.den, in.x, in.D, in.gain};
    if (gate) wrt.push_back(in.z);
    const auto grads = torch::autograd::grad({(y.to(at::kFloat) * g).sum()}, wrt);
    QVERIFY(grads[0].scalar_type() == dt && grads[2].scalar_type() == dt);
    QVERIFY(grads[1].scalar_type() == at::kFloat && grads[3].scalar_type() == at::kFloat);
    const auto ref = reference(in, g);
    const std::string tag = std::string(bf16 ? "bf16 " : "f32 ") + std::to_string(B) + "x" +
                            std::to_string(T) + " H" + std::to_string(H) + " P" + std::to_string(P) +
                            (gate ? "" : " no-gate") + (x_view ? "" : " dense-x") +
                            (misaligned ? " misaligned" : "");
    const double wt = bf16 ? 8e-3 : 1e-5;
    expect_close(tag, "y", y, ref[0], wt);
    expect_close(tag, "dnum", grads[0], ref[1], wt);
    expect_close(tag, "dden", grads[1], ref[2], 1e-4);
    expect_close(tag, "dx", grads[2], ref[3], wt);
    expect_close(tag, "dD", grads[3], ref[4], 1e-4);
    expect_close(tag, "dgain", grads[4], ref[5], 1e-4);
    if (gate) expect_close(tag, "dz", grads[5], ref[6], wt);
#endif
  }

  // A saturated gate: at z = ±200 exp(−z) is 0 or inf in float32, g is 2 or 0 exactly and σ' is 0, with no
  // NaN in y or dz. (At z = −80, g ≈ 3.6e−35 is still a normal float32 and dz is tiny, not 0: the first GPU
  // run of this test, 2026-12-07, asked for 0 there and was wrong.)
  void saturated_gate_stays_finite() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    Inputs in = make_inputs(1, 2, 9, 16, at::kFloat, true, true, false);
    {
      const at::NoGradGuard no_grad;
      in.z.copy_(
          at::where(at::rand_like(in.z) < 0.5, at::full_like(in.z, 200.0), at::full_like(in.z, -200.0)));
    }
    const at::Tensor y = hedgelab::cuda::fused_mixer_output(in.num, in.den, in.x, in.D, in.z, in.gain, kEps);
    const auto grads = torch::autograd::grad({y.sum()}, {in.z, in.num});
    QVERIFY(at::isfinite(y).all().item<bool>());
    QVERIFY(at::isfinite(grads[0]).all().item<bool>() && at::isfinite(grads[1]).all().item<bool>());
    QVERIFY(at::equal(grads[0], at::zeros_like(grads[0])));  // σ' = 0 at both ends in float32
    const at::Tensor ref = mixer_output_reference(in.num, in.den, in.x, in.D, in.z, in.gain, kEps);
    expect_close("saturated", "y", y, ref.detach().to(at::kDouble).cpu(), 1e-5);
#endif
  }

  // The mixer's input, cast once for its projections (ops::matmul_operand): bf16 under CUDA bf16 autocast for
  // a float32 CUDA tensor, with the values .to(bf16) gives; the tensor itself otherwise (autocast off,
  // already bf16, on the CPU).
  void matmul_operand_casts_once_under_autocast() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    const at::Tensor u = at::randn({2, 5, 16}).cuda();  // [B, T, d]
    QVERIFY(hedgelab::ops::matmul_operand(u).is_same(u));
    hedgelab::ops::AutocastSetting on;
    on.enabled = true;
    on.dtype = at::kBFloat16;
    const hedgelab::ops::AutocastScope scope(on);
    const at::Tensor c = hedgelab::ops::matmul_operand(u);
    QVERIFY(c.scalar_type() == at::kBFloat16);
    QVERIFY(at::equal(c, u.to(at::kBFloat16)));
    QVERIFY(hedgelab::ops::matmul_operand(c).is_same(c));
    const at::Tensor cpu = u.cpu();
    QVERIFY(hedgelab::ops::matmul_operand(cpu).is_same(cpu));
#endif
  }

  // Through ops::mixer_output and the HedgeMamba mixer: the kernel for CUDA float32 / bf16 inputs; the
  // reference switch, the preference, mixed dtypes and CPU tensors take the ATen form, with the same values
  // within the bounds above; the mixer's forward and its parameter gradients agree both ways.
  void dispatch_and_switches() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QVERIFY(registered_fused_mixer_output() == &hedgelab::cuda::fused_mixer_output);
    at::manual_seed(5);
    const Inputs in = make_inputs(2, 4, 30, 32, at::kFloat, true, true, false);
    const at::Tensor fused = mixer_output(in.num, in.den, in.x, in.D, in.z, in.gain, kEps);
    QVERIFY(at::equal(fused,
                      hedgelab::cuda::fused_mixer_output(in.num, in.den, in.x, in.D, in.z, in.gain, kEps)));
    set_use_reference_scan(true);
    const at::Tensor ref = mixer_output(in.num, in.den, in.x, in.D, in.z, in.gain, kEps);
    set_use_reference_scan(false);
    set_prefer_fused_mixer_output(false);
    const at::Tensor aten = mixer_output(in.num, in.den, in.x, in.D, in.z, in.gain, kEps);
    set_prefer_fused_mixer_output(true);
    QVERIFY(at::equal(ref, aten));
    QVERIFY(at::equal(ref, mixer_output_reference(in.num, in.den, in.x, in.D, in.z, in.gain, kEps)));
    expect_close("dispatch", "y", fused, ref.detach().to(at::kDouble).cpu(), 1e-5);
    // num in bf16 beside a float32 x: mixed dtypes, the reference.
    const at::Tensor nb = in.num.detach().to(at::kBFloat16);
    QVERIFY(at::equal(mixer_output(nb, in.den, in.x, in.D, in.z, in.gain, kEps),
                      mixer_output_reference(nb, in.den, in.x, in.D, in.z, in.gain, kEps)));
    // CPU tensors: the reference.
    auto cpu = [](const at::Tensor& t) { return t.detach().cpu(); };
    QVERIFY(
        at::equal(mixer_output(cpu(in.num), cpu(in.den), cpu(in.x), cpu(in.D), cpu(in.z), cpu(in.gain), kEps),
                  mixer_output_reference(cpu(in.num), cpu(in.den), cpu(in.x), cpu(in.D), cpu(in.z),
                                         cpu(in.gain), kEps)));
    // The mixer, fused against the reference read-out, forward and every parameter gradient.
    hedgelab::models::HedgeMambaMixer mixer = small_cuda_mixer();
    {
      const at::NoGradGuard no_grad;
      for (auto& p : mixer->parameters())
        p.normal_(0.0, 0.2);
    }
    const at::Tensor u = at::randn({2, 40, 64}).cuda();  // [B, T, d]
    auto run = [&] {
      for (auto& p : mixer->parameters())
        p.mutable_grad() = at::Tensor();
      const at::Tensor o = mixer->forward(u);
      o.pow(2).sum().backward();
      std::vector<at::Tensor> out{o.detach()};
      for (auto& p : mixer->parameters())
        out.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
      return out;
    };
    const auto with_kernel = run();
    set_prefer_fused_mixer_output(false);
    const auto with_aten = run();
    set_prefer_fused_mixer_output(true);
    QCOMPARE(with_kernel.size(), with_aten.size());
    for (size_t i = 0; i < with_kernel.size(); ++i) {
      QCOMPARE(with_kernel[i].defined(), with_aten[i].defined());
      if (with_kernel[i].defined())
        expect_close("mixer", i == 0 ? "out" : "grad", with_kernel[i], with_aten[i].to(at::kDouble).cpu(),
                     1e-4);
    }
#endif
  }

  // Under bf16 autocast, as the recipe trains: the scan hands back num in bf16 and den in float32, and a den
  // in num's dtype (the decoding step's) is cast for the kernel; the mixer's graph goes through the kernel's
  // Function, with no ATen division beside it.
  void the_mixer_takes_the_kernel_under_bf16_autocast() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    using hedgelab::testing::autograd_node_names;
    using hedgelab::testing::count_containing;
    at::manual_seed(6);
    const Inputs in = make_inputs(2, 4, 30, 32, at::kBFloat16, true, true, false);
    const at::Tensor den_bf16 = in.den.detach().to(at::kBFloat16);
    const at::Tensor via_dispatch = mixer_output(in.num, den_bf16, in.x, in.D, in.z, in.gain, kEps);
    QVERIFY(at::equal(via_dispatch, hedgelab::cuda::fused_mixer_output(in.num, den_bf16.to(at::kFloat), in.x,
                                                                       in.D, in.z, in.gain, kEps)));
    QCOMPARE(count_containing(autograd_node_names(via_dispatch), "MixerOutputFunction"), 1);

    hedgelab::models::HedgeMambaMixer mixer = small_cuda_mixer();
    const at::Tensor u = at::randn({2, 40, 64}).cuda().requires_grad_(true);  // [B, T, d]
    AutocastSetting on;
    on.enabled = true;
    on.dtype = at::kBFloat16;
    const AutocastScope scope(on);
    const hedgelab::ops::ScanOutput scan_dtypes = hedge_mamba_scan(
        at::randn({1, 2, 20, 32}).cuda().to(at::kBFloat16), at::rand({1, 2, 20, 64}).cuda().to(at::kBFloat16),
        at::rand({1, 2, 20, 64}).cuda().to(at::kBFloat16), at::rand({1, 2, 20}).cuda(), -at::rand({2}).cuda(),
        16);
    QVERIFY(scan_dtypes.num.scalar_type() == at::kBFloat16);
    QVERIFY(scan_dtypes.den.scalar_type() == at::kFloat);
    const at::Tensor o = mixer->forward(u);  // [B, T, d]
    const std::vector<std::string> names = autograd_node_names(o);
    QCOMPARE(count_containing(names, "MixerOutputFunction"), 1);
    QCOMPARE(count_containing(names, "ScanFunction"), 1);
    QCOMPARE(count_containing(names, "DivBackward"), 0);
    o.to(at::kFloat).pow(2).sum().backward();
    QVERIFY(u.grad().defined() && at::isfinite(u.grad()).all().item<bool>());
#endif
  }
};

QTEST_GUILESS_MAIN(TestCudaMixerOutput)
#include "test_cuda_mixer_output.moc"
