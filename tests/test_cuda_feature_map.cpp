// The fused Hedgehog feature map (cuda/feature_map_kernels.cu) against the ATen form in float64 on the CPU:
// φ = [softmax(z + b), softmax(−z − b)] and the gradients of z and b, float32 and bf16, m from 37 (not a
// multiple of the 32-lane warp) to 512, T 1 to 2048, saturating inputs; then through ops::hedgehog_features
// (the dispatch, the switches, the projection's gradients of u and W) and under bf16 autocast as the recipe
// runs it. Label cuda; skipped without a GPU or without the CUDA library. Errors are ‖out − ref‖∞ / ‖ref‖∞;
// bounds:
//   float32: 1e-5 forward, 1e-5 gradients (float32 softmaxes, float32 gradient);
//   bf16:    8e-3 forward and 8e-3 for ∂z (outputs rounded to bf16, 2⁻⁸ relative), 1e-4 for ∂b (summed in
//            float32 before any rounding).
// The reference sees the inputs as the kernel sees them (z and ∂L/∂φ rounded to bf16 first where the kernel
// gets bf16), so the bounds measure the kernel's arithmetic, not the inputs' rounding.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <QTest>
#include <string>
#include <vector>

#include "core/ops/autocast.h"
#include "core/ops/hedge_mamba_scan.h"
#include "core/ops/hedgehog_feature_map.h"
#include "tests/cuda_test_util.h"
#include "tests/tensor_test_util.h"
#ifdef HEDGELAB_HAS_CUDA_KERNELS
#include "cuda/register.h"
#endif

using namespace hedgelab::ops;
using hedgelab::testing::cuda_kernels_ready;
using hedgelab::testing::expect_close;
using hedgelab::testing::relative_error;

namespace {

const auto kF64 = at::TensorOptions().dtype(at::kDouble);

// The ATen per-half softmax of z + b in float64 on the CPU, with ∂L/∂z and ∂L/∂b for L = Σ w ∘ φ.
struct Reference {
  at::Tensor phi, dz, db;
};
Reference reference(const at::Tensor& z, const at::Tensor& b, const at::Tensor& w) {
  const at::Tensor zl = z.detach().to(at::kDouble).cpu().requires_grad_(true);
  const at::Tensor bl = b.detach().to(at::kDouble).cpu().requires_grad_(true);
  const at::Tensor zb = zl + bl.unsqueeze(1);
  const at::Tensor phi = at::cat({at::softmax(zb, -1), at::softmax(-zb, -1)}, -1);  // [B, H, T, 2m]
  const auto g = torch::autograd::grad({(phi * w.to(at::kDouble).cpu()).sum()}, {zl, bl});
  return {phi.detach(), g[0], g[1]};
}

}  // namespace

class TestCudaFeatureMap : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void initTestCase() {
    if (!cuda_kernels_ready()) QSKIP("no CUDA device, or built without the CUDA library (cuda/)");
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    hedgelab::cuda::register_kernels();
#endif
    set_prefer_fused_feature_map(true);
  }

  // The kernel's contract: z [B,H,T,m] without the bias, b [H,m] → φ in z's dtype; ∂z and ∂b.
  void kernel_against_reference_data() {
    QTest::addColumn<int>("T");
    QTest::addColumn<int>("m");
    QTest::addColumn<bool>("bf16");
    QTest::addColumn<double>("scale");  // of z: 1 is a trained map's range, 40 saturates the softmaxes
    QTest::newRow("f32 T1 m64") << 1 << 64 << false << 1.0;
    QTest::newRow("f32 T100 m37") << 100 << 37 << false << 1.0;
    QTest::newRow("f32 T257 m128") << 257 << 128 << false << 3.0;
    QTest::newRow("f32 T2048 m256") << 2048 << 256 << false << 1.0;
    QTest::newRow("f32 T64 m512 saturating") << 64 << 512 << false << 40.0;
    QTest::newRow("bf16 T1 m64") << 1 << 64 << true << 1.0;
    QTest::newRow("bf16 T333 m96") << 333 << 96 << true << 2.0;
    QTest::newRow("bf16 T2048 m256") << 2048 << 256 << true << 1.0;
    QTest::newRow("bf16 T130 m512 saturating") << 130 << 512 << true << 40.0;
  }
  void kernel_against_reference() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QFETCH(int, T);
    QFETCH(int, m);
    QFETCH(bool, bf16);
    QFETCH(double, scale);
    at::manual_seed(T * 31 + m);
    const at::ScalarType dtype = bf16 ? at::kBFloat16 : at::kFloat;
    const int64_t B = 2, H = 3;
    const at::Tensor z =
        (at::randn({B, H, T, m}, kF64) * scale).to(dtype).cuda().requires_grad_(true);  // [B, H, T, m]
    const at::Tensor b =
        (at::randn({H, m}, kF64) * 0.5).to(at::kFloat).cuda().requires_grad_(true);  // [H, m]
    const at::Tensor w = at::randn({B, H, T, 2 * m}, kF64).to(dtype).cuda();  // [B, H, T, 2m] ∂L/∂φ
    const at::Tensor phi = hedgelab::cuda::fused_hedgehog_features(z, b);     // [B, H, T, 2m]
    QVERIFY(phi.scalar_type() == dtype);
    QVERIFY(phi.sizes() == at::IntArrayRef({B, H, int64_t(T), int64_t(2 * m)}));
    const auto g = torch::autograd::grad({(phi.to(at::kFloat) * w.to(at::kFloat)).sum()}, {z, b});
    QVERIFY(g[0].scalar_type() == dtype);
    QVERIFY(g[1].scalar_type() == at::kFloat);
    const Reference ref = reference(z, b, w);
    const std::string tag = std::string(bf16 ? "bf16" : "f32") + " T" + std::to_string(T) + " m" +
                            std::to_string(m) + " scale " + std::to_string(int(scale));
    expect_close(tag, "phi", phi, ref.phi, bf16 ? 8e-3 : 1e-5);
    expect_close(tag, "dz", g[0], ref.dz, bf16 ? 8e-3 : 1e-5);
    expect_close(tag, "db", g[1], ref.db, bf16 ? 1e-4 : 1e-5);
    // Each half is a distribution: the kernel's rows sum to 1 (bf16: within the rounding of m entries).
    const at::Tensor sums = phi.to(at::kDouble).view({B, H, T, 2, m}).sum(-1);
    QVERIFY((sums - 1).abs().max().item<double>() < (bf16 ? 2e-2 : 1e-5));
#endif
  }

  // Through ops::hedgehog_features: the dispatch picks the kernel for CUDA tensors of the per-half softmax;
  // the reference switch, the preference and the other kinds keep the ATen form; u, W and b all get
  // gradients.
  void dispatch_and_switches() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QVERIFY(registered_fused_feature_map() == &hedgelab::cuda::fused_hedgehog_features);
    at::manual_seed(3);
    const int64_t B = 2, H = 4, T = 77, P = 48, m = 40;
    const at::Tensor u = at::randn({B, H, T, P}).cuda().requires_grad_(true);       // [B, H, T, P]
    const at::Tensor W = (at::randn({H, m, P}) * 0.3).cuda().requires_grad_(true);  // [H, m, P]
    const at::Tensor b = (at::randn({H, m}) * 0.3).cuda().requires_grad_(true);     // [H, m]
    const at::Tensor w = at::randn({B, H, T, 2 * m}).cuda();                        // [B, H, T, 2m]
    auto run = [&](FeatureMapKind kind) {
      const at::Tensor phi = hedgehog_features(u, W, b, kind);  // [B, H, T, 2m]
      std::vector<at::Tensor> out = {phi.detach()};
      for (const auto& g : torch::autograd::grad({(phi * w).sum()}, {u, W, b}))
        out.push_back(g);
      return out;
    };
    const auto fused = run(FeatureMapKind::kPerHalfSoftmax);
    const at::Tensor direct =
        hedgelab::cuda::fused_hedgehog_features(at::matmul(u, W.transpose(-1, -2)), b).detach();
    QVERIFY(at::equal(fused[0], direct));
    set_use_reference_scan(true);
    const auto ref = run(FeatureMapKind::kPerHalfSoftmax);
    set_use_reference_scan(false);
    set_prefer_fused_feature_map(false);
    const auto aten = run(FeatureMapKind::kPerHalfSoftmax);
    set_prefer_fused_feature_map(true);
    QVERIFY(at::equal(ref[0], aten[0]));
    QVERIFY(!at::equal(fused[0], ref[0]));  // a different implementation: different rounding
    const char* names[] = {"phi", "du", "dW", "db"};
    for (size_t i = 0; i < ref.size(); ++i)
      expect_close("dispatch f32", names[i], fused[i], ref[i].to(at::kDouble).cpu(), 1e-5);
    // The other kinds never reach the kernel: the same bits with and without the switch.
    for (FeatureMapKind kind : {FeatureMapKind::kJointSoftmax, FeatureMapKind::kRawExp}) {
      const auto a = run(kind);
      set_use_reference_scan(true);
      const auto r = run(kind);
      set_use_reference_scan(false);
      QVERIFY(at::equal(a[0], r[0]));
    }
    // CPU tensors take the ATen form.
    const at::Tensor cpu = hedgehog_features(u.detach().cpu(), W.detach().cpu(), b.detach().cpu(),
                                             FeatureMapKind::kPerHalfSoftmax);
    QVERIFY(cpu.scalar_type() == at::kFloat);
    expect_close("cpu", "phi", cpu, ref[0].to(at::kDouble).cpu(), 1e-6);
#endif
  }

  // Under bf16 autocast as the recipe runs stage 1 (float32 u, W, b): φ comes out bf16 (the ATen form's is
  // float32) and matches the ATen form under the same autocast within bf16's rounding; so do the gradients.
  void under_autocast_as_the_recipe_runs_it() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    at::manual_seed(11);
    const int64_t B = 2, H = 8, T = 512, P = 256, m = 256;                     // pythia-1b's head shape
    const at::Tensor u = at::randn({B, H, T, P}).cuda().requires_grad_(true);  // [B, H, T, P]
    const at::Tensor W =
        (at::eye(P).expand({H, P, P}) + at::randn({H, m, P}) * 0.02).cuda().requires_grad_(true);
    const at::Tensor b = (at::randn({H, m}) * 0.1).cuda().requires_grad_(true);  // [H, m]
    const at::Tensor w = at::randn({B, H, T, 2 * m}).cuda();                     // [B, H, T, 2m]
    auto run = [&](bool reference_path) {
      set_use_reference_scan(reference_path);
      at::Tensor phi;
      {
        AutocastScope autocast({true, at::kBFloat16});
        phi = hedgehog_features(u, W, b, FeatureMapKind::kPerHalfSoftmax);  // [B, H, T, 2m]
      }
      set_use_reference_scan(false);
      std::vector<at::Tensor> out = {phi.detach()};
      for (const auto& g : torch::autograd::grad({(phi.to(at::kFloat) * w).sum()}, {u, W, b}))
        out.push_back(g);
      return out;
    };
    const auto fused = run(false);
    const auto ref = run(true);
    QVERIFY(fused[0].scalar_type() == at::kBFloat16);
    QVERIFY(ref[0].scalar_type() == at::kFloat);
    const char* names[] = {"phi", "du", "dW", "db"};
    const double tol[] = {8e-3, 2e-2, 2e-2, 1e-2};
    for (size_t i = 0; i < ref.size(); ++i)
      expect_close("autocast bf16", names[i], fused[i], ref[i].to(at::kDouble).cpu(), tol[i]);
#endif
  }
};

QTEST_GUILESS_MAIN(TestCudaFeatureMap)
#include "test_cuda_feature_map.moc"
