// The HedgeMamba selective scan (docs/method.md §4, §6): the chunked (SSD) form against the sequential
// oracle and the quadratic decay-masked form, in values, gradients, state continuation and decoding.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <QTest>
#include <cmath>
#include <string>
#include <vector>

#include "core/ops/dispatch_tally.h"
#include "core/ops/hedge_mamba_scan.h"
#include "core/ops/hedge_mamba_scan_ref.h"
#include "core/ops/linear_attention.h"
#include "tests/tensor_test_util.h"
#include "tests/test_util.h"

using namespace hedgelab::ops;

using hedgelab::testing::relative_error;

namespace {

const auto kF64 = at::TensorOptions().dtype(at::kDouble);
const auto kF32 = at::TensorOptions().dtype(at::kFloat);

bool all_finite(const at::Tensor& t) {
  return at::isfinite(t).all().item<bool>();
}

struct ScanInputs {
  at::Tensor x, Bm, Cm, dt, A;  // [B,H,T,P], [B,H,T,N], [B,H,T,N], [B,H,T], [H]
  ScanInputs to(at::ScalarType type) const {
    return {x.to(type), Bm.to(type), Cm.to(type), dt.to(type), A.to(type)};
  }
  ScanInputs tokens(int64_t from, int64_t to) const {
    return {x.slice(2, from, to), Bm.slice(2, from, to), Cm.slice(2, from, to), dt.slice(2, from, to), A};
  }
};

// As the mixer produces them: positive features, Δ = softplus(·), A = −exp(a).
ScanInputs random_inputs(int64_t B, int64_t H, int64_t T, int64_t P, int64_t N) {
  ScanInputs in;
  in.x = at::randn({B, H, T, P}, kF64);
  in.Bm = at::softmax(at::randn({B, H, T, N}, kF64), -1);
  in.Cm = at::softmax(at::randn({B, H, T, N}, kF64), -1);
  in.dt = at::softplus(at::randn({B, H, T}, kF64));
  in.A = -at::exp(at::randn({H}, kF64) * 0.5);
  return in;
}

ScanOutput chunked(const ScanInputs& in, int64_t chunk, const ScanState* initial = nullptr) {
  return hedge_mamba_scan_chunked(in.x, in.Bm, in.Cm, in.dt, in.A, chunk, initial);
}
ScanOutput sequential(const ScanInputs& in, const ScanState* initial = nullptr) {
  return hedge_mamba_scan_sequential(in.x, in.Bm, in.Cm, in.dt, in.A, initial);
}
ScanOutput quadratic(const ScanInputs& in, const ScanState* initial = nullptr,
                     at::Tensor* implied = nullptr) {
  return hedge_mamba_scan_quadratic(in.x, in.Bm, in.Cm, in.dt, in.A, initial, implied);
}

// The worst relative error over num, den and the final state.
double output_err(const ScanOutput& got, const ScanOutput& ref) {
  return std::max({relative_error(got.num, ref.num), relative_error(got.den, ref.den),
                   relative_error(got.final_state.S, ref.final_state.S),
                   relative_error(got.final_state.n, ref.final_state.n)});
}

bool g_fake_called = false;
ScanOutput fake_fused_scan(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                           const at::Tensor& dt, const at::Tensor& A, const ScanState* initial) {
  g_fake_called = true;
  return hedge_mamba_scan_sequential(x, Bm, Cm, dt, A, initial);
}

}  // namespace

class TestHedgeMambaScan : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void initTestCase() { at::manual_seed(4321); }

  void chunked_sequential_quadratic_agree_float64() {
    const ScanInputs in = random_inputs(2, 3, 37, 4, 6);
    const ScanOutput seq = sequential(in);
    QCOMPARE(seq.num.sizes(), at::IntArrayRef({2, 3, 37, 4}));
    QCOMPARE(seq.den.sizes(), at::IntArrayRef({2, 3, 37}));
    QCOMPARE(seq.final_state.S.sizes(), at::IntArrayRef({2, 3, 6, 4}));
    const double q_err = output_err(quadratic(in), seq);
    qInfo("quadratic vs sequential (float64): rel err %.3g", q_err);
    QVERIFY(q_err < 1e-10);
    for (int64_t chunk : {1, 5, 16, 37, 64}) {
      const double err = output_err(chunked(in, chunk), seq);
      qInfo("chunked(%lld) vs sequential (float64): rel err %.3g", static_cast<long long>(chunk), err);
      QVERIFY2(err < 1e-10, ("chunk " + std::to_string(chunk)).c_str());
    }
  }

  void chunked_sequential_quadratic_agree_float32() {
    const ScanInputs in64 = random_inputs(2, 3, 37, 4, 6);
    const ScanInputs in = in64.to(at::kFloat);
    const ScanOutput oracle = sequential(in64);  // float64, to see each float32 form's own error
    const ScanOutput seq = sequential(in);
    const ScanOutput chk = chunked(in, 16);
    const ScanOutput quad = quadratic(in);
    QCOMPARE(chk.num.scalar_type(), at::kFloat);
    const double e_cs = output_err(chk, seq), e_qs = output_err(quad, seq), e_c64 = output_err(chk, oracle);
    qInfo(
        "float32: chunked(16) vs sequential %.3g, quadratic vs sequential %.3g, chunked vs float64 oracle "
        "%.3g",
        e_cs, e_qs, e_c64);
    QVERIFY(e_cs < 1e-5);
    QVERIFY(e_qs < 1e-5);
    QVERIFY(e_c64 < 1e-5);
  }

  void gradients_match_sequential() {
    const ScanInputs base = random_inputs(2, 2, 37, 3, 4);
    std::vector<at::Tensor> leaves = {
        base.x.clone().set_requires_grad(true), base.Bm.clone().set_requires_grad(true),
        base.Cm.clone().set_requires_grad(true), base.dt.clone().set_requires_grad(true),
        base.A.clone().set_requires_grad(true)};
    const ScanInputs in{leaves[0], leaves[1], leaves[2], leaves[3], leaves[4]};
    const at::Tensor g_num = at::randn({2, 2, 37, 3}, kF64), g_den = at::randn({2, 2, 37}, kF64);
    const at::Tensor g_S = at::randn({2, 2, 4, 3}, kF64), g_n = at::randn({2, 2, 4}, kF64);
    auto grads = [&](const ScanOutput& o) {
      return torch::autograd::grad({o.num, o.den, o.final_state.S, o.final_state.n}, leaves,
                                   {g_num, g_den, g_S, g_n});
    };
    const auto ref = grads(sequential(in));
    const char* names[] = {"x", "Bm", "Cm", "dt", "A"};
    for (int64_t chunk : {16, 5}) {
      const auto got = grads(chunked(in, chunk));
      for (int i = 0; i < 5; ++i) {
        const double err = relative_error(got[i], ref[i]);
        qInfo("grad %s chunked(%lld) vs sequential (float64): rel err %.3g", names[i],
              static_cast<long long>(chunk), err);
        QVERIFY2(err < 1e-10, names[i]);
      }
    }
  }

  void continues_from_initial_state() {
    const ScanInputs in = random_inputs(2, 2, 45, 3, 4);
    const int64_t T1 = 19;
    const ScanOutput whole = chunked(in, 8);
    const ScanOutput first = chunked(in.tokens(0, T1), 8);
    const ScanOutput second = chunked(in.tokens(T1, 45), 8, &first.final_state);
    const ScanOutput joined{at::cat({first.num, second.num}, 2), at::cat({first.den, second.den}, 2),
                            second.final_state};
    const double err = output_err(joined, whole);
    qInfo("chunked halves joined through the state vs whole: rel err %.3g", err);
    QVERIFY(err < 1e-12);
    // The references continue the same way.
    QVERIFY(output_err(sequential(in.tokens(T1, 45), &first.final_state), second) < 1e-12);
    QVERIFY(output_err(quadratic(in.tokens(T1, 45), &first.final_state), second) < 1e-12);
  }

  void decoding_steps_equal_chunked() {
    const ScanInputs in = random_inputs(2, 3, 29, 4, 6);
    const ScanOutput ref = chunked(in, 16);
    ScanState state;  // undefined: starts from zeros
    std::vector<at::Tensor> nums, dens;
    for (int64_t t = 0; t < 29; ++t) {
      ScanStepOutput step = hedge_mamba_step(state, in.x.select(2, t), in.Bm.select(2, t), in.Cm.select(2, t),
                                             in.dt.select(2, t), in.A);
      QCOMPARE(step.num.sizes(), at::IntArrayRef({2, 3, 4}));
      QCOMPARE(step.den.sizes(), at::IntArrayRef({2, 3}));
      nums.push_back(step.num);
      dens.push_back(step.den);
      state = step.state;
    }
    const double err = output_err({at::stack(nums, 2), at::stack(dens, 2), state}, ref);
    qInfo("decoding steps vs chunked (float64): rel err %.3g", err);
    QVERIFY(err < 1e-12);
  }

  void no_decay_is_linear_attention() {
    ScanInputs in = random_inputs(2, 2, 33, 5, 6);
    in.A = at::zeros({2}, kF64);  // α ≡ 1
    in.dt = at::ones({2, 2, 33}, kF64);
    const double eps = 1e-3;
    const ScanOutput out = chunked(in, 16);
    const at::Tensor y = out.num / (out.den + eps).unsqueeze(-1);
    const at::Tensor ref = linear_attention_quadratic(in.Cm, in.Bm, in.x, eps);  // C = φ_q(q), B = φ_k(k)
    const double err = relative_error(y, ref);
    qInfo("scan with alpha = 1, dt = 1 vs linear attention: rel err %.3g", err);
    QVERIFY(err < 1e-12);
  }

  void implied_attention_is_the_decay_masked_matrix() {
    const ScanInputs in = random_inputs(1, 2, 11, 3, 4);
    at::Tensor M;
    const ScanOutput out = quadratic(in, nullptr, &M);
    QCOMPARE(M.sizes(), at::IntArrayRef({1, 2, 11, 11}));
    QCOMPARE(M.triu(1).abs().max().item<double>(), 0.0);
    QVERIFY(relative_error(at::matmul(M, in.x), out.num) < 1e-14);
    QVERIFY(relative_error(M.sum(-1), out.den) < 1e-14);
    // One entry by hand: M_ts = (C_t·B_s) Δ_s Π_{s<r≤t} α_r.
    const int64_t h = 1, t = 9, s = 3;
    double decay = 1;
    for (int64_t r = s + 1; r <= t; ++r)
      decay *= std::exp(in.dt[0][h][r].item<double>() * in.A[h].item<double>());
    const double expected =
        (in.Cm[0][h][t] * in.Bm[0][h][s]).sum().item<double>() * in.dt[0][h][s].item<double>() * decay;
    QVERIFY(std::abs(M[0][h][t][s].item<double>() - expected) < 1e-14 * std::abs(expected) + 1e-300);
  }

  void strong_decay_stays_finite() {
    for (at::ScalarType type : {at::kFloat, at::kDouble}) {
      ScanInputs in = random_inputs(1, 2, 64, 3, 4).to(type);
      in.dt = at::ones_like(in.dt);
      in.A = at::full({2}, -50.0, in.x.options());  // log α = −50 every token
      std::vector<at::Tensor> leaves = {in.x.set_requires_grad(true), in.dt.set_requires_grad(true),
                                        in.A.set_requires_grad(true)};
      const ScanOutput out = chunked(in, 16);
      QVERIFY(all_finite(out.num) && all_finite(out.den) && all_finite(out.final_state.S));
      // With e^{−50} ≈ 2e-22 the past is gone: each token sees only itself.
      QVERIFY(relative_error(out.num, (in.Cm * in.Bm).sum(-1, true) * in.x) < 1e-6);
      const auto g = torch::autograd::grad({out.num.sum() + out.den.sum()}, leaves);
      for (const at::Tensor& gi : g)
        QVERIFY(all_finite(gi));
      QVERIFY(relative_error(out.num, sequential(in).num) < 1e-6);
    }
    // Strong decay early, weak later (log α from −50 to −0.01): the state carried across many chunks must not
    // lose precision to the early decay.
    ScanInputs in = random_inputs(1, 2, 200, 3, 4).to(at::kFloat);
    in.A = at::full({2}, -50.0, kF32);
    in.dt = at::cat({at::ones({1, 2, 100}, kF32), at::full({1, 2, 100}, 2e-4, kF32)}, 2);
    const ScanOutput ref = sequential(in.to(at::kDouble));
    const double err = output_err(chunked(in, 16), ref);
    qInfo("strong-then-weak decay, float32 chunked(16) vs float64 oracle: rel err %.3g", err);
    QVERIFY(err < 2e-6);  // differences of in-chunk cumulative sums give ~5e-6 here
  }

  void dispatch_uses_fused_only_on_cuda() {
    const ScanInputs in = random_inputs(1, 2, 10, 3, 4);
    QVERIFY(registered_fused_scan() == nullptr);
    register_fused_scan(&fake_fused_scan);
    QVERIFY(registered_fused_scan() == &fake_fused_scan);
    g_fake_called = false;
    reset_dispatch_tally();
    const ScanOutput out = hedge_mamba_scan(in.x, in.Bm, in.Cm, in.dt, in.A, 4);
    QVERIFY(!g_fake_called);  // CPU tensors: the chunked path
    QVERIFY(output_err(out, chunked(in, 4)) == 0.0);
    QVERIFY(dispatch_tally().empty());  // nothing to miss on the CPU
    if (at::hasCUDA()) {
      const ScanInputs cu{in.x.cuda(), in.Bm.cuda(), in.Cm.cuda(), in.dt.cuda(), in.A.cuda()};
      hedge_mamba_scan(cu.x, cu.Bm, cu.Cm, cu.dt, cu.A, 4);
      QVERIFY(g_fake_called);
      g_fake_called = false;
      set_use_reference_scan(true);
      hedge_mamba_scan(cu.x, cu.Bm, cu.Cm, cu.dt, cu.A, 4);
      QVERIFY(!g_fake_called);
      set_use_reference_scan(false);
      QCOMPARE(QString::fromStdString(describe_dispatch_tally(dispatch_tally())),
               QString("hedge_mamba_scan fused 1, hedge_mamba_scan reference 1"));
    }
    register_fused_scan(nullptr);
    QVERIFY(registered_fused_scan() == nullptr);
  }

  // The tally behind every dispatch (dispatch_tally.h): each decision counted once, in the order of the
  // checks (the global reference switch first, then the op's own switch, then its inputs).
  void dispatch_tally_counts_each_path() {
    const bool reference_before = use_reference_scan();  // HEDGELAB_REFERENCE_KERNELS=1 may have set it
    set_use_reference_scan(false);
    reset_dispatch_tally();
    QVERIFY(dispatch_tally().empty());
    QCOMPARE(QString::fromStdString(describe_dispatch_tally({})), QString("none"));
    QVERIFY(take_fused("op_a", /*prefer=*/true, /*supported=*/true));
    QVERIFY(take_fused("op_a", true, true));
    QVERIFY(!take_fused("op_a", /*prefer=*/false, /*supported=*/true));
    QVERIFY(
        !take_fused("op_a", /*prefer=*/false, /*supported=*/false));  // the switch is named, not the inputs
    QVERIFY(!take_fused("op_b", /*prefer=*/true, /*supported=*/false));
    set_use_reference_scan(true);
    QVERIFY(!take_fused("op_b", true, true));
    QVERIFY(!take_fused("op_b", false, false));  // the global switch outranks the rest
    set_use_reference_scan(false);
    const std::vector<DispatchCount> t = dispatch_tally();
    QCOMPARE(QString::fromStdString(describe_dispatch_tally(t)),
             QString("op_a fused 2, op_a switched off 2, op_b reference 2, op_b unsupported 1"));
    QCOMPARE(QString::fromStdString(describe_kernel_misses(t)),
             QString("op_a switched off 2, op_b reference 2, op_b unsupported 1"));
    reset_dispatch_tally();
    QVERIFY(take_fused("op_a", true, true));
    QCOMPARE(QString::fromStdString(describe_kernel_misses(dispatch_tally())), QString(""));
    reset_dispatch_tally();
    set_use_reference_scan(reference_before);
  }

  // Autocast gives the mixer bf16 projections and float32 Δ and feature maps: the dispatch runs the ATen form
  // in the widest dtype (here float64, so the result is the all-float64 one).
  void dispatch_runs_mixed_dtypes_in_the_widest() {
    const ScanInputs in = random_inputs(2, 3, 37, 4, 6);
    const ScanOutput want = sequential(in);
    const ScanInputs f32 = in.to(at::kFloat);
    const ScanOutput got = hedge_mamba_scan(in.x, f32.Bm, f32.Cm, in.dt, f32.A, 16);
    QCOMPARE(got.num.scalar_type(), at::kDouble);
    const ScanOutput ref = hedge_mamba_scan_sequential(in.x, f32.Bm.to(at::kDouble), f32.Cm.to(at::kDouble),
                                                       in.dt, f32.A.to(at::kDouble));
    QVERIFY(output_err(got, ref) < 1e-10);
    QVERIFY(output_err(got, want) < 1e-5);  // only the float32 rounding of B, C, A
  }

  void bad_shapes_are_rejected() {
    const ScanInputs in = random_inputs(1, 2, 10, 3, 4);
    auto throws = [](auto&& f) {
      try {
        f();
      } catch (const c10::Error&) {
        return true;
      }
      return false;
    };
    QVERIFY(throws([&] { hedge_mamba_scan_chunked(in.x, in.Bm, in.Cm, in.dt, at::zeros({3}, kF64), 4); }));
    QVERIFY(throws([&] { hedge_mamba_scan_chunked(in.x, in.Bm, in.Cm.slice(2, 0, 9), in.dt, in.A, 4); }));
    QVERIFY(throws([&] { hedge_mamba_scan_chunked(in.x, in.Bm, in.Cm, in.dt, in.A, 0); }));
    QVERIFY(throws([&] { hedge_mamba_scan_chunked(in.x.to(at::kFloat), in.Bm, in.Cm, in.dt, in.A, 4); }));
    const ScanState wrong{at::zeros({1, 2, 3, 3}, kF64), at::zeros({1, 2, 3}, kF64)};
    QVERIFY(throws([&] { hedge_mamba_scan_chunked(in.x, in.Bm, in.Cm, in.dt, in.A, 4, &wrong); }));
  }
};

QTEST_APPLESS_MAIN(TestHedgeMambaScan)
#include "test_hedge_mamba_scan.moc"
