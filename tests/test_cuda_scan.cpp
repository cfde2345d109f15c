// The fused CUDA HedgeMamba scan (cuda/) against the sequential oracle (float64, CPU) and, for long
// sequences where the oracle's autograd graph is too slow, the chunked ATen form in float64 on the GPU: the
// forward (num, den, final S and n) and every gradient (x, Bm, Cm, Δ, A, initial S and n), float32 and bf16
// inputs, lengths that are not a multiple of the chunk, T up to 16K, N from 64 to 512. Label cuda; skipped
// without a GPU or without the CUDA library. Errors are ‖out − ref‖∞ / ‖ref‖∞; the bounds:
//   float32 inputs (tf32 tensor-core operands, fp32 accumulation and state): 3e-3 forward, 5e-3 gradients;
//   bf16 inputs (bf16 operands, fp32 accumulation and state):                3e-2 forward, 5e-2 gradients.
// The reference always sees the inputs as the kernel sees them (rounded to bf16 first where the kernel
// gets bf16), so the bounds measure the kernel's arithmetic, not the inputs' rounding.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <QTest>
#include <algorithm>
#include <string>
#include <vector>

#include "core/ops/hedge_mamba_scan.h"
#include "core/ops/hedge_mamba_scan_ref.h"
#include "core/ops/linear_attention.h"
#include "tests/tensor_test_util.h"
#include "tests/test_util.h"
#ifdef HEDGELAB_HAS_CUDA_KERNELS
#include "cuda/register.h"
#endif

using namespace hedgelab::ops;
using hedgelab::testing::relative_error;

namespace {

const auto kF64 = at::TensorOptions().dtype(at::kDouble);

struct Inputs {
  at::Tensor x, Bm, Cm, dt, A, S0, n0;  // [B,H,T,P], [B,H,T,N] ×2, [B,H,T], [H], [B,H,N,P], [B,H,N]
};

// As the mixer makes them (positive features, Δ = softplus, A = −exp), rounded to `dtype`, in float64 on
// `device`. `decay` scales log α: 1 is the strong decay of a random init, 0.01 a long memory.
Inputs make_inputs(int64_t B, int64_t H, int64_t T, int64_t N, int64_t P, at::ScalarType dtype, bool initial,
                   double decay, const at::Device& device) {
  auto round = [&](const at::Tensor& t) { return t.to(dtype).to(at::kDouble).to(device); };
  Inputs in;
  in.x = round(at::randn({B, H, T, P}, kF64));                        // [B, H, T, P]
  in.Bm = round(at::softmax(at::randn({B, H, T, N}, kF64), -1) * 8);  // [B, H, T, N]
  in.Cm = round(at::softmax(at::randn({B, H, T, N}, kF64), -1) * 8);  // [B, H, T, N]
  in.dt = at::softplus(at::randn({B, H, T}, kF64)).to(device);        // [B, H, T] (float32 in the kernel)
  in.A = (-at::exp(at::randn({H}, kF64) * 0.5) * decay).to(device);   // [H]
  if (initial) {
    in.S0 = at::randn({B, H, N, P}, kF64).to(device);    // [B, H, N, P]
    in.n0 = at::rand({B, H, N}, kF64).to(device) + 0.5;  // [B, H, N]
  }
  return in;
}

struct Result {
  at::Tensor num, den, S, n;      // forward, as float64 on the CPU
  std::vector<at::Tensor> grads;  // x, Bm, Cm, dt, A, S0, n0 (undefined where not asked)
};

// Runs `scan` on leaves made from `in` (cast to `dtype`, float32 Δ and A for the fused kernel), and
// backpropagates L = Σ w_num∘num + Σ w_den∘den + Σ w_S∘S_T + Σ w_n∘n_T.
template <typename ScanCall>
Result run(const Inputs& in, at::ScalarType dtype, at::ScalarType param_dtype, bool grads,
           const std::vector<at::Tensor>& w, ScanCall scan) {
  std::vector<at::Tensor> leaves = {in.x.to(dtype), in.Bm.to(dtype), in.Cm.to(dtype), in.dt.to(param_dtype),
                                    in.A.to(param_dtype)};
  if (in.S0.defined()) {
    leaves.push_back(in.S0.to(param_dtype));
    leaves.push_back(in.n0.to(param_dtype));
  }
  for (auto& l : leaves)
    l = l.detach().requires_grad_(grads);
  ScanState initial;
  if (in.S0.defined()) initial = {leaves[5], leaves[6]};
  const ScanOutput out =
      scan(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], in.S0.defined() ? &initial : nullptr);
  Result r;
  r.num = out.num.detach().to(at::kDouble).cpu();
  r.den = out.den.detach().to(at::kDouble).cpu();
  r.S = out.final_state.S.detach().to(at::kDouble).cpu();
  r.n = out.final_state.n.detach().to(at::kDouble).cpu();
  if (grads) {
    const auto dev = out.num.device();
    const at::Tensor loss = (out.num.to(at::kDouble) * w[0].to(dev)).sum() +
                            (out.den.to(at::kDouble) * w[1].to(dev)).sum() +
                            (out.final_state.S.to(at::kDouble) * w[2].to(dev)).sum() +
                            (out.final_state.n.to(at::kDouble) * w[3].to(dev)).sum();
    const auto g = torch::autograd::grad({loss}, leaves);
    for (const auto& t : g)
      r.grads.push_back(t.defined() ? t.to(at::kDouble).cpu() : t);
  }
  return r;
}

ScanOutput oracle(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& dt,
                  const at::Tensor& A, const ScanState* initial) {
  return hedge_mamba_scan_sequential(x, Bm, Cm, dt, A, initial);
}
ScanOutput chunked_ref(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& dt,
                       const at::Tensor& A, const ScanState* initial) {
  return hedge_mamba_scan_chunked(x, Bm, Cm, dt, A, 128, initial);
}

}  // namespace

class TestCudaScan : public QObject {
  Q_OBJECT

 private:
  bool ready() const { return hedgelab::testing::cuda_kernels_ready(); }

  // Compares the fused kernel with `reference` (float64) on one configuration; logs every error.
  template <typename Ref>
  void compare(int64_t B, int64_t H, int64_t T, int64_t N, int64_t P, at::ScalarType dtype, bool initial,
               bool grads, double decay, const at::Device& ref_device, Ref reference) {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    at::manual_seed(1000 + T + N + P + (dtype == at::kBFloat16));
    const Inputs in = make_inputs(B, H, T, N, P, dtype, initial, decay, at::Device(at::kCUDA));
    std::vector<at::Tensor> w = {at::randn({B, H, T, P}, kF64), at::randn({B, H, T}, kF64),
                                 at::randn({B, H, N, P}, kF64) * 0.1, at::randn({B, H, N}, kF64) * 0.1};
    Inputs ref_in = in;
    for (at::Tensor* t : {&ref_in.x, &ref_in.Bm, &ref_in.Cm, &ref_in.dt, &ref_in.A, &ref_in.S0, &ref_in.n0})
      if (t->defined()) *t = t->to(ref_device);
    const Result ref = run(ref_in, at::kDouble, at::kDouble, grads, w, reference);
    // Both forms of the state pass (scan_params.h), each against the reference.
    using hedgelab::cuda::StatePass;
    const StatePass start = hedgelab::cuda::scan_state_pass();
    for (const StatePass pass : {StatePass::kSequential, StatePass::kParallel}) {
      hedgelab::cuda::set_scan_state_pass(pass);
      const Result got = run(in, dtype, at::kFloat, grads, w, &hedgelab::cuda::fused_hedge_mamba_scan);
      hedgelab::cuda::set_scan_state_pass(start);
      check_against(got, ref, in, w, B, H, T, N, P, dtype, initial, grads,
                    pass == StatePass::kSequential ? " sequential" : " parallel");
      if (QTest::currentTestFailed()) return;
    }
#endif
  }

#ifdef HEDGELAB_HAS_CUDA_KERNELS
  void check_against(const Result& got, const Result& ref, const Inputs& in, const std::vector<at::Tensor>& w,
                     int64_t B, int64_t H, int64_t T, int64_t N, int64_t P, at::ScalarType dtype,
                     bool initial, bool grads, const char* pass) {
    const bool bf16 = dtype == at::kBFloat16;
    const double fwd_tol = bf16 ? 3e-2 : 3e-3, grad_tol = bf16 ? 5e-2 : 5e-3;
    const std::string tag = std::string(bf16 ? "bf16" : "f32") + " B" + std::to_string(B) + " H" +
                            std::to_string(H) + " T" + std::to_string(T) + " N" + std::to_string(N) + " P" +
                            std::to_string(P) + (initial ? " +S0" : "") + pass;
    auto expect = [&](const char* what, const at::Tensor& a, const at::Tensor& b, double tol) {
      QVERIFY2(at::isfinite(a).all().item<bool>(), (tag + " " + what + ": not finite").c_str());
      const double e = relative_error(a, b);
      qInfo("%s %-6s rel err %.2e (bound %.0e)", tag.c_str(), what, e, tol);
      QVERIFY2(e < tol, (tag + " " + what + ": " + std::to_string(e)).c_str());
    };
    expect("num", got.num, ref.num, fwd_tol);
    expect("den", got.den, ref.den, fwd_tol);
    expect("S_T", got.S, ref.S, fwd_tol);
    expect("n_T", got.n, ref.n, fwd_tol);
    if (grads) {
      const char* names[] = {"dx", "dB", "dC", "ddt", "dA", "dS0", "dn0"};
      QCOMPARE(got.grads.size(), ref.grads.size());
      for (size_t i = 0; i < ref.grads.size(); ++i)
        if (i != 4) expect(names[i], got.grads[i], ref.grads[i], grad_tol);
      // dA_h = Σ_{b,r} Δ_r g_r with g_r = Σ_{t≥r} (reader terms − writer terms): a difference of large sums
      // (hedge_mamba_scan_cuda.cpp), so its error is bounded relative to the size of what cancels,
      //   scale_h = Σ_{b,r} Δ_r Σ_{t≥r} |dnum_t·num_t + dden_t den_t|,
      // not to |dA|, which can be far smaller (it is exactly 0 at T = 1).
      const at::Tensor reader = (w[0] * ref.num).sum(-1) + w[1] * ref.den;                // [B, H, T]
      const at::Tensor tail = at::flip(at::cumsum(at::flip(reader.abs(), {2}), 2), {2});  // [B, H, T]
      const at::Tensor scale = (in.dt.cpu() * tail).sum(at::IntArrayRef{0, 2});           // [H]
      const double e = (got.grads[4] - ref.grads[4]).abs().max().item<double>() /
                       std::max(scale.max().item<double>(), 1e-300);
      const double tol = bf16 ? 1e-2 : 1e-3;
      qInfo("%s dA     err / cancelled scale %.2e (bound %.0e); plain rel err %.2e", tag.c_str(), e, tol,
            relative_error(got.grads[4], ref.grads[4]));
      QVERIFY2(at::isfinite(got.grads[4]).all().item<bool>(), (tag + " dA: not finite").c_str());
      QVERIFY2(e < tol, (tag + " dA: " + std::to_string(e)).c_str());
    }
  }
#endif

 private Q_SLOTS:
  void initTestCase() {
    if (!ready()) QSKIP("no CUDA device, or built without the CUDA library (cuda/)");
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    hedgelab::cuda::register_kernels();
#endif
    // The linear-attention dispatch prefers the chunked ATen form by default (faster at T 2048); these tests
    // are about the kernel.
    hedgelab::ops::set_prefer_fused_linear_attention(true);
    hedgelab::ops::set_prefer_fused_scan_step(true);
  }

  // The dispatch: registered at load, used for CUDA tensors, and the switch runs the chunked reference.
  void dispatch_and_switch() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QVERIFY(registered_fused_scan() == &hedgelab::cuda::fused_hedge_mamba_scan);
    at::manual_seed(7);
    const Inputs in = make_inputs(2, 3, 77, 64, 32, at::kFloat, false, 1.0, at::Device(at::kCUDA));
    auto f = [&](const Inputs& i) { return i.x.to(at::kFloat); };
    const at::Tensor x = f(in), Bm = in.Bm.to(at::kFloat), Cm = in.Cm.to(at::kFloat);
    const at::Tensor dt = in.dt.to(at::kFloat), A = in.A.to(at::kFloat);
    const ScanOutput fused = hedge_mamba_scan(x, Bm, Cm, dt, A, 16);
    set_use_reference_scan(true);
    const ScanOutput ref = hedge_mamba_scan(x, Bm, Cm, dt, A, 16);
    set_use_reference_scan(false);
    const ScanOutput direct = hedgelab::cuda::fused_hedge_mamba_scan(x, Bm, Cm, dt, A, nullptr);
    // The fused path gives the fused kernel's bits; the reference path the chunked form's (different
    // rounding: tf32 operands), both within the float32 bound of the oracle.
    QVERIFY(at::equal(fused.num, direct.num));
    QVERIFY(!at::equal(fused.num, ref.num));
    QVERIFY(relative_error(fused.num, ref.num) < 3e-3);
#endif
  }

  // HEDGELAB_SCAN_STATE_PASS's values: the three names, the default without one, and a one-line error naming
  // the variable and the value otherwise.
  void state_pass_values_and_the_bad_one() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    using hedgelab::cuda::parse_scan_state_pass;
    using hedgelab::cuda::StatePass;
    QVERIFY(parse_scan_state_pass("sequential") == StatePass::kSequential);
    QVERIFY(parse_scan_state_pass("parallel") == StatePass::kParallel);
    QVERIFY(parse_scan_state_pass("auto") == StatePass::kAuto);
    QVERIFY(parse_scan_state_pass(nullptr) == StatePass::kAuto);
    QVERIFY(parse_scan_state_pass("") == StatePass::kAuto);
    HL_EXPECT_ERROR(parse_scan_state_pass("serial"), "HEDGELAB_SCAN_STATE_PASS", "\"serial\"", "sequential");
    HL_EXPECT_ERROR(parse_scan_state_pass("Auto"), "HEDGELAB_SCAN_STATE_PASS", "\"Auto\"");
#endif
  }

  // The forward keeps the states entering every chunk for the backward (the default); with the switch off the
  // backward recomputes them. Same states either way: dx, dB, dC bit for bit (no atomics), Δ and A (summed
  // with atomics in any order) within float32 rounding. The oracle tests above run the kept path.
  void kept_and_recomputed_states_agree() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QVERIFY(hedgelab::cuda::keep_scan_states());
    using hedgelab::cuda::StatePass;
    const StatePass start = hedgelab::cuda::scan_state_pass();
    for (const StatePass pass : {StatePass::kSequential, StatePass::kParallel})
      for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
        hedgelab::cuda::set_scan_state_pass(pass);
        at::manual_seed(11);
        const Inputs in = make_inputs(2, 3, 300, 128, 64, dtype, true, 1.0, at::Device(at::kCUDA));
        const std::vector<at::Tensor> w = {at::randn({2, 3, 300, 64}, kF64), at::randn({2, 3, 300}, kF64),
                                           at::randn({2, 3, 128, 64}, kF64) * 0.1,
                                           at::randn({2, 3, 128}, kF64) * 0.1};
        const Result kept = run(in, dtype, at::kFloat, true, w, &hedgelab::cuda::fused_hedge_mamba_scan);
        hedgelab::cuda::set_keep_scan_states(false);
        const Result again = run(in, dtype, at::kFloat, true, w, &hedgelab::cuda::fused_hedge_mamba_scan);
        hedgelab::cuda::set_keep_scan_states(true);
        hedgelab::cuda::set_scan_state_pass(start);
        QVERIFY(at::equal(kept.num, again.num));
        QCOMPARE(kept.grads.size(), again.grads.size());
        for (size_t i = 0; i < kept.grads.size(); ++i) {
          if (i == 3 || i == 4) {
            const double e = relative_error(kept.grads[i], again.grads[i]);
            qInfo("%s grad %zu kept vs recomputed rel diff %.2e", dtype == at::kFloat ? "f32" : "bf16", i, e);
            QVERIFY2(e < 1e-5, std::to_string(e).c_str());
          } else {
            QVERIFY2(at::equal(kept.grads[i], again.grads[i]), ("gradient " + std::to_string(i)).c_str());
          }
        }
      }
#endif
  }

  void forward_and_gradients_against_oracle_data() {
    QTest::addColumn<int>("T");
    QTest::addColumn<int>("N");
    QTest::addColumn<int>("P");
    QTest::addColumn<bool>("bf16");
    QTest::addColumn<bool>("initial");
    QTest::addColumn<double>("decay");
    QTest::newRow("f32 T1") << 1 << 64 << 64 << false << false << 1.0;
    QTest::newRow("f32 T100 (not a chunk multiple) +S0") << 100 << 64 << 64 << false << true << 1.0;
    QTest::newRow("f32 T257 N128 P32") << 257 << 128 << 32 << false << false << 0.05;
    QTest::newRow("f32 T130 N256 P48 +S0") << 130 << 256 << 48 << false << true << 0.2;
    QTest::newRow("f32 T96 N512 P64") << 96 << 512 << 64 << false << false << 1.0;
    QTest::newRow("bf16 T200 N64 P64 +S0") << 200 << 64 << 64 << true << true << 1.0;
    QTest::newRow("bf16 T333 N128 P64") << 333 << 128 << 64 << true << false << 0.05;
    QTest::newRow("bf16 T100 N512 P32") << 100 << 512 << 32 << true << false << 0.2;
    // Partial tiles: N and P not multiples of the 64-wide tiles, P not of the 16-byte vectors (element
    // loads).
    QTest::newRow("bf16 T300 N96 P36 +S0") << 300 << 96 << 36 << true << true << 0.5;
    QTest::newRow("f32 T150 N72 P50 +S0") << 150 << 72 << 50 << false << true << 1.0;
  }
  void forward_and_gradients_against_oracle() {
    if (!ready()) QSKIP("no CUDA device");
    QFETCH(int, T);
    QFETCH(int, N);
    QFETCH(int, P);
    QFETCH(bool, bf16);
    QFETCH(bool, initial);
    QFETCH(double, decay);
    compare(2, 2, T, N, P, bf16 ? at::kBFloat16 : at::kFloat, initial, /*grads=*/true, decay,
            at::Device(at::kCPU), &oracle);
  }

  // Long sequences: the oracle's forward (CPU) for T = 16384; gradients against the chunked form in
  // float64 on the GPU (an independent implementation: ATen ops, segment sums, autograd).
  void long_sequences_data() {
    QTest::addColumn<int>("T");
    QTest::addColumn<int>("N");
    QTest::addColumn<int>("P");
    QTest::addColumn<bool>("bf16");
    QTest::addColumn<bool>("oracle_forward");
    QTest::newRow("f32 T16384 N64, oracle forward") << 16384 << 64 << 64 << false << true;
    QTest::newRow("f32 T16384 N64, gradients") << 16384 << 64 << 64 << false << false;
    QTest::newRow("bf16 T16384 N128, gradients") << 16384 << 128 << 64 << true << false;
    QTest::newRow("bf16 T4099 N512, gradients") << 4099 << 512 << 64 << true << false;
    QTest::newRow("f32 T8191 N256, gradients") << 8191 << 256 << 64 << false << false;
    // The benchmarks' and pythia-1b's head width: several value tiles.
    QTest::newRow("bf16 T2048 N128 P256, gradients") << 2048 << 128 << 256 << true << false;
    QTest::newRow("bf16 T2000 N512 P256, gradients") << 2000 << 512 << 256 << true << false;
  }
  void long_sequences() {
    if (!ready()) QSKIP("no CUDA device");
    QFETCH(int, T);
    QFETCH(int, N);
    QFETCH(int, P);
    QFETCH(bool, bf16);
    QFETCH(bool, oracle_forward);
    const at::ScalarType d = bf16 ? at::kBFloat16 : at::kFloat;
    if (oracle_forward)
      compare(1, 2, T, N, P, d, true, false, 0.01, at::Device(at::kCPU), &oracle);
    else
      compare(1, 2, T, N, P, d, true, true, 0.01, at::Device(at::kCUDA), &chunked_ref);
  }

  // Hedgehog stage 1: causal normalized linear attention through linear_attention_chunked's dispatch
  // against the quadratic form in float64 on the CPU, values, final state and gradients, with and without
  // the per-head gain (fused into the normalisation by the mixer's read-out kernel).
  void linear_attention_against_quadratic_data() {
    QTest::addColumn<int>("T");
    QTest::addColumn<int>("N");
    QTest::addColumn<bool>("bf16");
    QTest::addColumn<bool>("gain");
    QTest::newRow("f32 T300 N128") << 300 << 128 << false << false;
    QTest::newRow("bf16 T1000 N64") << 1000 << 64 << true << false;
    QTest::newRow("bf16 T517 N256") << 517 << 256 << true << false;
    QTest::newRow("f32 T300 N128 gain") << 300 << 128 << false << true;
    QTest::newRow("bf16 T517 N256 gain") << 517 << 256 << true << true;
  }
  void linear_attention_against_quadratic() {
    if (!ready()) QSKIP("no CUDA device");
    QFETCH(int, T);
    QFETCH(int, N);
    QFETCH(bool, bf16);
    QFETCH(bool, gain);
    QVERIFY(registered_fused_linear_attention() != nullptr);
    const at::ScalarType d = bf16 ? at::kBFloat16 : at::kFloat;
    at::manual_seed(300 + T);
    const int64_t B = 2, H = 3, P = 64;
    auto rounded = [&](const at::Tensor& t) { return t.to(d).to(at::kDouble); };
    const at::Tensor q = rounded(at::softmax(at::randn({B, H, T, N}, kF64), -1));  // [B, H, T, N]
    const at::Tensor k = rounded(at::softmax(at::randn({B, H, T, N}, kF64), -1));  // [B, H, T, N]
    const at::Tensor v = rounded(at::randn({B, H, T, P}, kF64));                   // [B, H, T, P]
    const at::Tensor w = at::randn({B, H, T, P}, kF64);                            // [B, H, T, P]
    // The per-head gain (Hedgehog's output_gain), float32 as the model holds it.
    const at::Tensor gh = (at::rand({H}, kF64) + 0.5).to(at::kFloat).to(at::kDouble);  // [H]
    std::vector<at::Tensor> ref_leaves = {q.clone().requires_grad_(true), k.clone().requires_grad_(true),
                                          v.clone().requires_grad_(true)};
    if (gain) ref_leaves.push_back(gh.clone().requires_grad_(true));
    at::Tensor y_ref = linear_attention_quadratic(ref_leaves[0], ref_leaves[1], ref_leaves[2], 1e-6);
    if (gain) y_ref = y_ref * ref_leaves[3].view({1, H, 1, 1});
    const auto g_ref = torch::autograd::grad({(y_ref * w).sum()}, ref_leaves);
    std::vector<at::Tensor> leaves = {q.to(d).cuda().requires_grad_(true),
                                      k.to(d).cuda().requires_grad_(true),
                                      v.to(d).cuda().requires_grad_(true)};
    if (gain) leaves.push_back(gh.to(at::kFloat).cuda().requires_grad_(true));
      // Both forms of the normalisation: ATen's, and the mixer's read-out kernel (y in v's dtype).
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    const bool start = hedgelab::cuda::linear_attention_read_out();
    auto set_read_out = [](bool on) { hedgelab::cuda::set_linear_attention_read_out(on); };
#else
    const bool start = false;
    auto set_read_out = [](bool) {};
#endif
    for (const bool read_out : {false, true}) {
      set_read_out(read_out);
      LinearAttentionState fin;
      const at::Tensor y = linear_attention_chunked(leaves[0], leaves[1], leaves[2], 64, 1e-6, nullptr, &fin,
                                                    gain ? leaves[3] : at::Tensor());
      set_read_out(start);
      QVERIFY(y.sizes() == v.sizes());
      if (read_out) QCOMPARE(y.scalar_type(), d);
      const auto g = torch::autograd::grad({(y.to(at::kDouble) * w.cuda()).sum()}, leaves);
      const double fwd_tol = bf16 ? 3e-2 : 3e-3, grad_tol = bf16 ? 5e-2 : 5e-3;
      const std::string tag = std::string("linear attention ") + (bf16 ? "bf16" : "f32") + " T" +
                              std::to_string(T) + " N" + std::to_string(N) +
                              (read_out ? " read-out" : " aten");
      auto expect = [&](const char* what, const at::Tensor& a, const at::Tensor& b, double tol) {
        const double e = relative_error(a.detach().to(at::kDouble).cpu(), b.detach());
        qInfo("%s %-4s rel err %.2e (bound %.0e)", tag.c_str(), what, e, tol);
        QVERIFY2(e < tol, (tag + " " + what + ": " + std::to_string(e)).c_str());
      };
      expect("y", y, y_ref, fwd_tol);
      expect("S_T", fin.S, at::matmul(k.transpose(-1, -2), v), fwd_tol);
      expect("z_T", fin.z, k.sum(2), fwd_tol);
      expect("dq", g[0], g_ref[0], grad_tol);
      expect("dk", g[1], g_ref[1], grad_tol);
      expect("dv", g[2], g_ref[2], grad_tol);
      if (gain) expect("dgain", g[3], g_ref[3], grad_tol);
    }
  }

  // The mixer's shapes at pythia-160m (H12 P64) with N = 128, bf16, through the dispatch entry point.
  void mixer_shapes_through_dispatch() {
    if (!ready()) QSKIP("no CUDA device");
    compare(2, 12, 1000, 128, 64, at::kBFloat16, false, true, 0.1, at::Device(at::kCUDA),
            [](const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& dt,
               const at::Tensor& A, const ScanState* s) {
              set_use_reference_scan(true);
              ScanOutput o = hedge_mamba_scan(x, Bm, Cm, dt, A, 64, s);
              set_use_reference_scan(false);
              return o;
            });
  }

  // One token of decoding: the fused step (through hedge_mamba_step's dispatch) against the ATen reference
  // in float64 on the CPU, three tokens in a row from a zero or a random state; S, n, num, den. Bounds:
  // float32 1e-5 (float32 sums over N), bf16 1e-2 (each output rounded to bf16 once, 2⁻⁸ relative).
  void decode_step_against_reference_data() {
    QTest::addColumn<int>("B");
    QTest::addColumn<int>("H");
    QTest::addColumn<int>("N");
    QTest::addColumn<int>("P");
    QTest::addColumn<bool>("bf16");
    QTest::addColumn<bool>("initial");
    QTest::newRow("f32 B2 H3 N72 P50 +S0") << 2 << 3 << 72 << 50 << false << true;
    QTest::newRow("f32 B3 H2 N512 P256") << 3 << 2 << 512 << 256 << false << false;
    QTest::newRow("bf16 B64 H12 N128 P64 +S0") << 64 << 12 << 128 << 64 << true << true;
    QTest::newRow("bf16 B1 H8 N512 P256") << 1 << 8 << 512 << 256 << true << false;
    QTest::newRow("bf16 B2 H2 N1000 P130 +S0") << 2 << 2 << 1000 << 130 << true << true;
  }
  void decode_step_against_reference() {
    if (!ready()) QSKIP("no CUDA device");
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    QFETCH(int, B);
    QFETCH(int, H);
    QFETCH(int, N);
    QFETCH(int, P);
    QFETCH(bool, bf16);
    QFETCH(bool, initial);
    QVERIFY(registered_fused_scan_step() == &hedgelab::cuda::fused_hedge_mamba_step);
    const at::ScalarType d = bf16 ? at::kBFloat16 : at::kFloat;
    const auto cuda = at::TensorOptions().dtype(d).device(at::kCUDA);
    at::manual_seed(B * 1000 + N + P);
    ScanState got, ref;
    if (initial) {
      got = {at::randn({B, H, N, P}, cuda), at::rand({B, H, N}, cuda) + 0.5};
      ref = {got.S.to(at::kCPU, at::kDouble), got.n.to(at::kCPU, at::kDouble)};
    }
    const at::Tensor A = -at::exp(at::randn({H}, cuda) * 0.5);  // [H]
    const double tol = bf16 ? 1e-2 : 1e-5;
    at::NoGradGuard no_grad;
    for (int t = 0; t < 3; ++t) {
      const at::Tensor x = at::randn({B, H, P}, cuda);                        // [B, H, P]
      const at::Tensor Bm = at::softmax(at::randn({B, H, N}, cuda), -1) * 8;  // [B, H, N]
      const at::Tensor Cm = at::softmax(at::randn({B, H, N}, cuda), -1) * 8;  // [B, H, N]
      const at::Tensor dt = at::softplus(at::randn({B, H}, cuda));            // [B, H]
      auto cpu = [](const at::Tensor& v) { return v.to(at::kCPU, at::kDouble); };
      const ScanStepOutput f = hedge_mamba_step(got, x, Bm, Cm, dt, A);
      const ScanStepOutput r = hedge_mamba_step_reference(ref, cpu(x), cpu(Bm), cpu(Cm), cpu(dt), cpu(A));
      // The dispatch ran the kernel: the same bits as calling it directly.
      QVERIFY(at::equal(f.num, hedgelab::cuda::fused_hedge_mamba_step(got, x, Bm, Cm, dt, A).num));
      QCOMPARE(f.state.S.scalar_type(), d);
      QCOMPARE(f.num.scalar_type(), d);
      const std::string tag = std::string(QTest::currentDataTag()) + " token " + std::to_string(t);
      const std::pair<const char*, std::pair<at::Tensor, at::Tensor>> outs[] = {{"S",
                                                                                 { f.state.S,
                                                                                   r.state.S }},
                                                                                {"n",
                                                                                 { f.state.n,
                                                                                   r.state.n }},
                                                                                {"num",
                                                                                 { f.num,
                                                                                   r.num }},
                                                                                { "den",
                                                                                  { f.den,
                                                                                    r.den } }};
      for (const auto& [name, pair] : outs) {
        const double e = relative_error(cpu(pair.first), pair.second);
        qInfo("%s %-3s rel err %.2e (bound %.0e)", tag.c_str(), name, e, tol);
        QVERIFY2(e < tol, (tag + " " + name + ": " + std::to_string(e)).c_str());
      }
      got = f.state;
      ref = r.state;
    }
#endif
  }

  // The dispatch keeps the differentiable reference when a gradient is asked, and on the reference switch;
  // otherwise it runs the kernel.
  void decode_step_dispatch_keeps_gradients() {
    if (!ready()) QSKIP("no CUDA device");
    const auto cuda = at::TensorOptions().dtype(at::kFloat).device(at::kCUDA);
    const at::Tensor x = at::randn({2, 3, 16}, cuda).requires_grad_(true);  // [B, H, P]
    const at::Tensor Bm = at::rand({2, 3, 8}, cuda), Cm = at::rand({2, 3, 8}, cuda);
    const at::Tensor dt = at::rand({2, 3}, cuda), A = -at::rand({3}, cuda);
    const ScanStepOutput with_grad = hedge_mamba_step({}, x, Bm, Cm, dt, A);
    QVERIFY(with_grad.num.requires_grad());
    const at::Tensor gx = torch::autograd::grad({with_grad.num.sum()}, {x})[0];
    QVERIFY(at::allclose(gx, (Cm * Bm * dt.unsqueeze(-1)).sum(-1, true).expand_as(gx)));
#ifdef HEDGELAB_HAS_CUDA_KERNELS
    // Without a gradient the kernel runs (its bits), unless the reference switch is on.
    at::NoGradGuard no_grad;
    const at::Tensor fused = hedgelab::cuda::fused_hedge_mamba_step({}, x, Bm, Cm, dt, A).num;
    QVERIFY(at::equal(hedge_mamba_step({}, x, Bm, Cm, dt, A).num, fused));
    set_use_reference_scan(true);
    const at::Tensor ref = hedge_mamba_step({}, x, Bm, Cm, dt, A).num;
    set_use_reference_scan(false);
    QVERIFY(at::equal(ref, hedge_mamba_step_reference({}, x, Bm, Cm, dt, A).num));
    QVERIFY(at::allclose(ref, fused, 1e-5, 1e-6));
#endif
  }
};

QTEST_GUILESS_MAIN(TestCudaScan)
#include "test_cuda_scan.moc"
