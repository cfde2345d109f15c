// Hedgehog feature maps and causal normalized linear attention (docs/method.md §3): each form against a
// hand-written formula, and the quadratic, chunked and recurrent forms (and their gradients) against each
// other.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include <QTest>
#include <cmath>
#include <vector>

#include "core/ops/hedgehog_feature_map.h"
#include "core/ops/linear_attention.h"
#include "tests/tensor_test_util.h"
#include "tests/test_util.h"

using namespace hedgelab::ops;

using hedgelab::testing::relative_error;

namespace {

const auto kF64 = at::TensorOptions().dtype(at::kDouble);
const auto kF32 = at::TensorOptions().dtype(at::kFloat);

// Positive features as the model produces them: per-half softmax of a random projection.
at::Tensor random_features(int64_t B, int64_t H, int64_t T, int64_t m, const at::TensorOptions& o) {
  const at::Tensor u = at::randn({B, H, T, m}, o);                     // [B, H, T, P]
  const at::Tensor W = at::randn({H, m, m}, o) * 0.5;                  // [H, m, P]
  const at::Tensor b = at::randn({H, m}, o) * 0.1;                     // [H, m]
  return hedgehog_features(u, W, b, FeatureMapKind::kPerHalfSoftmax);  // [B, H, T, 2m]
}

// φ by hand, one token at a time, with std::exp: the independent reference for every kind.
at::Tensor features_by_hand(const at::Tensor& u, const at::Tensor& W, const at::Tensor& b,
                            FeatureMapKind kind) {
  const int64_t B = u.size(0), H = u.size(1), T = u.size(2), P = u.size(3), m = W.size(1);
  at::Tensor out = at::zeros({B, H, T, 2 * m}, kF64);  // [B, H, T, 2m]
  auto ua = u.accessor<double, 4>();
  auto Wa = W.accessor<double, 3>();
  auto ba = b.accessor<double, 2>();
  auto oa = out.accessor<double, 4>();
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> z(m);
        double zmax = 0;
        for (int64_t j = 0; j < m; ++j) {
          z[j] = ba[h][j];
          for (int64_t p = 0; p < P; ++p)
            z[j] += Wa[h][j][p] * ua[bi][h][t][p];
          zmax = std::max(zmax, std::abs(z[j]));
        }
        std::vector<double> e(2 * m);
        for (int64_t j = 0; j < m; ++j) {
          e[j] = std::exp(z[j]);
          e[m + j] = std::exp(-z[j]);
        }
        double s1 = 0, s2 = 0;
        for (int64_t j = 0; j < m; ++j) {
          s1 += e[j];
          s2 += e[m + j];
        }
        for (int64_t j = 0; j < m; ++j) {
          switch (kind) {
            case FeatureMapKind::kPerHalfSoftmax:
              oa[bi][h][t][j] = e[j] / s1;
              oa[bi][h][t][m + j] = e[m + j] / s2;
              break;
            case FeatureMapKind::kJointSoftmax:
              oa[bi][h][t][j] = e[j] / (s1 + s2);
              oa[bi][h][t][m + j] = e[m + j] / (s1 + s2);
              break;
            case FeatureMapKind::kRawExp:
              oa[bi][h][t][j] = std::exp(z[j] - zmax);
              oa[bi][h][t][m + j] = std::exp(-z[j] - zmax);
              break;
          }
        }
      }
  return out;
}

// ā_ts and y_t by hand with loops: the quadratic form's own reference.
at::Tensor linear_attention_by_hand(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    double eps) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), N = q.size(3), P = v.size(3);
  at::Tensor y = at::zeros({B, H, T, P}, kF64);  // [B, H, T, P]
  auto qa = q.accessor<double, 4>();
  auto ka = k.accessor<double, 4>();
  auto va = v.accessor<double, 4>();
  auto ya = y.accessor<double, 4>();
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> a(t + 1, 0.0);
        double den = 0;
        for (int64_t s = 0; s <= t; ++s) {
          for (int64_t j = 0; j < N; ++j)
            a[s] += qa[bi][h][t][j] * ka[bi][h][s][j];
          den += a[s];
        }
        for (int64_t s = 0; s <= t; ++s)
          for (int64_t p = 0; p < P; ++p)
            ya[bi][h][t][p] += a[s] / (den + eps) * va[bi][h][s][p];
      }
  return y;
}

}  // namespace

class TestHedgehogOps : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void initTestCase() { at::manual_seed(1234); }

  // ---- feature maps -------------------------------------------------------------------------------------

  void each_kind_matches_hand_formula() {
    const at::Tensor u = at::randn({2, 3, 5, 4}, kF64) * 2.0;  // [B, H, T, P]
    const at::Tensor W = at::randn({3, 6, 4}, kF64);           // [H, m, P]
    const at::Tensor b = at::randn({3, 6}, kF64);              // [H, m]
    for (FeatureMapKind kind :
         {FeatureMapKind::kPerHalfSoftmax, FeatureMapKind::kJointSoftmax, FeatureMapKind::kRawExp}) {
      const at::Tensor got = hedgehog_features(u, W, b, kind);  // [B, H, T, 2m]
      QCOMPARE(got.sizes(), at::IntArrayRef({2, 3, 5, 12}));
      const double err = relative_error(got, features_by_hand(u, W, b, kind));
      qInfo("%s vs hand formula: rel err %.3g", feature_map_kind_name(kind).c_str(), err);
      QVERIFY2(err < 1e-13, feature_map_kind_name(kind).c_str());
    }
  }

  void softmax_rows_sum_to_one() {
    const at::Tensor u = at::randn({2, 2, 7, 5}, kF64) * 3.0;                                 // [B, H, T, P]
    const at::Tensor W = at::randn({2, 5, 5}, kF64);                                          // [H, m, P]
    const at::Tensor b = at::randn({2, 5}, kF64);                                             // [H, m]
    const at::Tensor per_half = hedgehog_features(u, W, b, FeatureMapKind::kPerHalfSoftmax);  // [B, H, T, 10]
    const at::Tensor ones = at::ones({2, 2, 7}, kF64);
    QVERIFY(relative_error(per_half.slice(-1, 0, 5).sum(-1), ones) < 1e-14);
    QVERIFY(relative_error(per_half.slice(-1, 5, 10).sum(-1), ones) < 1e-14);
    const at::Tensor joint = hedgehog_features(u, W, b, FeatureMapKind::kJointSoftmax);  // [B, H, T, 10]
    QVERIFY(relative_error(joint.sum(-1), ones) < 1e-14);
    QVERIFY(relative_error(joint.slice(-1, 0, 5).sum(-1), ones) > 1e-3);  // joint is not normalised per half
    // raw exp: its largest entry per token is exactly e^0 = 1.
    const at::Tensor raw = hedgehog_features(u, W, b, FeatureMapKind::kRawExp);
    QVERIFY(relative_error(std::get<0>(raw.max(-1)), ones) < 1e-15);
  }

  void identity_init_gives_analytic_value() {
    const HedgehogParams p = hedgehog_identity_init(2, 3, 3, kF64);
    QCOMPARE(p.W.sizes(), at::IntArrayRef({2, 3, 3}));
    QCOMPARE(p.b.sizes(), at::IntArrayRef({2, 3}));
    // u = (0, ln 2, ln 3): softmax(u) = (1, 2, 3)/6 and softmax(−u) = (1, 1/2, 1/3)/(11/6) = (6, 3, 2)/11.
    const at::Tensor u =
        at::tensor({0.0, std::log(2.0), std::log(3.0)}, kF64).view({1, 1, 1, 3}).expand({1, 2, 1, 3});
    const at::Tensor phi = hedgehog_features(u.contiguous(), p.W, p.b, FeatureMapKind::kPerHalfSoftmax);
    const at::Tensor expected = at::tensor({1.0 / 6, 2.0 / 6, 3.0 / 6, 6.0 / 11, 3.0 / 11, 2.0 / 11}, kF64)
                                    .view({1, 1, 1, 6})
                                    .expand({1, 2, 1, 6});
    QVERIFY(relative_error(phi, expected) < 1e-15);
    HL_EXPECT_ERROR(hedgehog_identity_init(2, 4, 3), "hedgehog_identity_init: m", "m == P", "m=4", "P=3");
  }

  void kind_names_round_trip_and_unknown_is_an_error() {
    for (FeatureMapKind kind :
         {FeatureMapKind::kPerHalfSoftmax, FeatureMapKind::kJointSoftmax, FeatureMapKind::kRawExp})
      QVERIFY(feature_map_kind_from_string(feature_map_kind_name(kind)) == kind);
    QCOMPARE(feature_map_kind_name(FeatureMapKind::kPerHalfSoftmax), std::string("per_half_softmax"));
    QCOMPARE(feature_map_kind_name(FeatureMapKind::kJointSoftmax), std::string("joint_softmax"));
    QCOMPARE(feature_map_kind_name(FeatureMapKind::kRawExp), std::string("raw_exp"));
    HL_EXPECT_ERROR(feature_map_kind_from_string("softmax", "stage1.json: feature_map"),
                    "stage1.json: feature_map", "'softmax'", "per_half_softmax");
    HL_EXPECT_ERROR(feature_map_kind_from_string("Per_Half_Softmax"), "feature_map", "Per_Half_Softmax");
  }

  // Autograd of every kind (raw exp's c included) against a central difference along a random direction.
  void feature_gradients_match_finite_differences() {
    const at::Tensor u = at::randn({1, 2, 3, 4}, kF64).set_requires_grad(true);  // [B, H, T, P]
    const at::Tensor W = at::randn({2, 4, 4}, kF64).set_requires_grad(true);     // [H, m, P]
    const at::Tensor b = at::randn({2, 4}, kF64).set_requires_grad(true);        // [H, m]
    const at::Tensor w = at::randn({1, 2, 3, 8}, kF64);                          // [B, H, T, 2m]
    for (FeatureMapKind kind :
         {FeatureMapKind::kPerHalfSoftmax, FeatureMapKind::kJointSoftmax, FeatureMapKind::kRawExp}) {
      const at::Tensor f = (hedgehog_features(u, W, b, kind) * w).sum();
      const auto grads = torch::autograd::grad({f}, {u, W, b});
      const at::Tensor du = at::randn_like(u), dW = at::randn_like(W), db = at::randn_like(b);
      const double analytic =
          ((grads[0] * du).sum() + (grads[1] * dW).sum() + (grads[2] * db).sum()).item<double>();
      const double h = 1e-6;
      const at::NoGradGuard no_grad;
      const double fp =
          (hedgehog_features(u + h * du, W + h * dW, b + h * db, kind) * w).sum().item<double>();
      const double fm =
          (hedgehog_features(u - h * du, W - h * dW, b - h * db, kind) * w).sum().item<double>();
      const double numeric = (fp - fm) / (2 * h);
      qInfo("%s gradient: autograd %.10g, central difference %.10g", feature_map_kind_name(kind).c_str(),
            analytic, numeric);
      QVERIFY2(std::abs(analytic - numeric) < 1e-7 * std::max(1.0, std::abs(numeric)),
               feature_map_kind_name(kind).c_str());
    }
  }

  // ---- linear attention ---------------------------------------------------------------------------------

  void quadratic_matches_hand_formula_and_rows_sum_to_one() {
    const at::Tensor q = random_features(2, 2, 9, 3, kF64),
                     k = random_features(2, 2, 9, 3, kF64);  // [B, H, T, N]
    const at::Tensor v = at::randn({2, 2, 9, 4}, kF64);      // [B, H, T, P]
    at::Tensor weights;
    const at::Tensor y = linear_attention_quadratic(q, k, v, 0.0, &weights);
    const double err = relative_error(y, linear_attention_by_hand(q, k, v, 0.0));
    qInfo("quadratic vs hand formula: rel err %.3g", err);
    QVERIFY(err < 1e-13);
    QCOMPARE(weights.sizes(), at::IntArrayRef({2, 2, 9, 9}));
    QVERIFY(relative_error(weights.sum(-1), at::ones({2, 2, 9}, kF64)) < 1e-14);
    QCOMPARE(weights.triu(1).abs().max().item<double>(), 0.0);  // causal: nothing from the future
    QVERIFY(weights.min().item<double>() >= 0.0);
    // eps enters once, in the row's denominator.
    const double eps = 0.3;
    QVERIFY(relative_error(linear_attention_quadratic(q, k, v, eps), linear_attention_by_hand(q, k, v, eps)) <
            1e-13);
  }

  void chunked_matches_quadratic_float32() {
    double worst = 0;
    for (int64_t T : {1, 7, 64, 100}) {
      const at::Tensor q = random_features(2, 3, T, 8, kF32),
                       k = random_features(2, 3, T, 8, kF32);  // [B,H,T,N]
      const at::Tensor v = at::randn({2, 3, T, 8}, kF32);      // [B,H,T,P]
      const at::Tensor ref = linear_attention_quadratic(q, k, v, 1e-6);
      for (int64_t chunk : {1, 16, 64}) {
        const at::Tensor y = linear_attention_chunked(q, k, v, chunk, 1e-6);
        QCOMPARE(y.sizes(), ref.sizes());
        const double err = relative_error(y, ref);
        worst = std::max(worst, err);
        QVERIFY2(err <= 1e-5, ("T=" + std::to_string(T) + " chunk=" + std::to_string(chunk) +
                               " err=" + std::to_string(err))
                                  .c_str());
      }
    }
    qInfo("chunked vs quadratic (float32), worst over T x chunk: rel err %.3g", worst);
  }

  void eps_placement_is_identical_in_all_forms() {
    // A large eps makes any difference in where it is added visible.
    const double eps = 0.7;
    const at::Tensor q = random_features(1, 2, 13, 3, kF64), k = random_features(1, 2, 13, 3, kF64);
    const at::Tensor v = at::randn({1, 2, 13, 5}, kF64);
    const at::Tensor ref = linear_attention_by_hand(q, k, v, eps);
    QVERIFY(relative_error(linear_attention_quadratic(q, k, v, eps), ref) < 1e-13);
    QVERIFY(relative_error(linear_attention_chunked(q, k, v, 4, eps), ref) < 1e-13);
    LinearAttentionState state;
    std::vector<at::Tensor> ys;
    for (int64_t t = 0; t < 13; ++t) {
      LinearAttentionStep step =
          linear_attention_recurrent_step(state, q.select(2, t), k.select(2, t), v.select(2, t), eps);
      ys.push_back(step.y);
      state = step.state;
    }
    QVERIFY(relative_error(at::stack(ys, 2), ref) < 1e-13);
  }

  void recurrent_steps_equal_quadratic() {
    const int64_t T = 23;
    const at::Tensor q = random_features(2, 2, T, 4, kF64),
                     k = random_features(2, 2, T, 4, kF64);  // [B,H,T,N]
    const at::Tensor v = at::randn({2, 2, T, 3}, kF64);      // [B,H,T,P]
    const at::Tensor ref = linear_attention_quadratic(q, k, v, 1e-9);
    LinearAttentionState state = linear_attention_zero_state(2, 2, 8, 3, kF64);
    std::vector<at::Tensor> ys;
    for (int64_t t = 0; t < T; ++t) {
      LinearAttentionStep step =
          linear_attention_recurrent_step(state, q.select(2, t), k.select(2, t), v.select(2, t), 1e-9);
      ys.push_back(step.y);  // [B, H, P]
      state = step.state;
    }
    const double err = relative_error(at::stack(ys, 2), ref);
    qInfo("recurrent steps vs quadratic (float64): rel err %.3g", err);
    QVERIFY(err < 1e-12);
    // The state after T equals the chunked form's final state.
    LinearAttentionState final_state;
    linear_attention_chunked(q, k, v, 5, 1e-9, nullptr, &final_state);
    QVERIFY(relative_error(final_state.S, state.S) < 1e-13);
    QVERIFY(relative_error(final_state.z, state.z) < 1e-13);
  }

  void chunked_continues_from_a_state() {
    const int64_t T = 41, T1 = 18;
    const at::Tensor q = random_features(1, 2, T, 4, kF64), k = random_features(1, 2, T, 4, kF64);
    const at::Tensor v = at::randn({1, 2, T, 3}, kF64);
    const at::Tensor whole = linear_attention_chunked(q, k, v, 8, 1e-9);
    LinearAttentionState mid;
    const at::Tensor first = linear_attention_chunked(q.slice(2, 0, T1), k.slice(2, 0, T1), v.slice(2, 0, T1),
                                                      8, 1e-9, nullptr, &mid);
    const at::Tensor second =
        linear_attention_chunked(q.slice(2, T1, T), k.slice(2, T1, T), v.slice(2, T1, T), 8, 1e-9, &mid);
    QVERIFY(relative_error(at::cat({first, second}, 2), whole) < 1e-13);
  }

  void chunked_gradients_match_quadratic() {
    const int64_t T = 37;
    const at::Tensor q = random_features(2, 2, T, 4, kF64).detach().set_requires_grad(true);  // [B, H, T, N]
    const at::Tensor k = random_features(2, 2, T, 4, kF64).detach().set_requires_grad(true);  // [B, H, T, N]
    const at::Tensor v = at::randn({2, 2, T, 5}, kF64).set_requires_grad(true);               // [B, H, T, P]
    const at::Tensor upstream = at::randn({2, 2, T, 5}, kF64);                                // dL/dy
    const auto ref =
        torch::autograd::grad({linear_attention_quadratic(q, k, v, 1e-6)}, {q, k, v}, {upstream});
    for (int64_t chunk : {1, 16, 64}) {
      const auto got =
          torch::autograd::grad({linear_attention_chunked(q, k, v, chunk, 1e-6)}, {q, k, v}, {upstream});
      const char* names[] = {"phi_q", "phi_k", "v"};
      for (int i = 0; i < 3; ++i) {
        const double err = relative_error(got[i], ref[i]);
        if (chunk == 16) qInfo("grad %s chunked(16) vs quadratic (float64): rel err %.3g", names[i], err);
        QVERIFY2(err < 1e-11, names[i]);
      }
    }
  }

  // Autocast hands the attention float32 feature maps and a lower-precision v: the ATen forms run the
  // widest dtype, so the result is the all-float64 one when one input is float64.
  void mixed_dtypes_run_in_the_widest() {
    const at::Tensor q = random_features(2, 3, 37, 8, kF32), k = random_features(2, 3, 37, 8, kF32);
    const at::Tensor v = at::randn({2, 3, 37, 8}, kF32);  // [B,H,T,P]
    const auto f64 = at::kDouble;
    const at::Tensor want = linear_attention_quadratic(q.to(f64), k.to(f64), v.to(f64), 1e-6);
    const at::Tensor chunked = linear_attention_chunked(q, k, v.to(f64), 16, 1e-6);
    const at::Tensor quadratic = linear_attention_quadratic(q.to(f64), k, v, 1e-6);
    QCOMPARE(chunked.scalar_type(), f64);
    QCOMPARE(quadratic.scalar_type(), f64);
    QVERIFY(relative_error(chunked, want) < 1e-12);
    QVERIFY(relative_error(quadratic, want) < 1e-12);
  }

  // The per-head gain: each head's output times its gain (against the form by hand); a gain of the wrong
  // length is refused.
  void gain_scales_each_head() {
    const at::Tensor q = random_features(2, 3, 11, 4, kF64), k = random_features(2, 3, 11, 4, kF64);
    const at::Tensor v = at::randn({2, 3, 11, 5}, kF64);
    const at::Tensor gain = at::tensor({0.5, 2.0, -1.5}, kF64);  // [H]
    const at::Tensor want = linear_attention_by_hand(q, k, v, 1e-6) * gain.view({1, 3, 1, 1});
    const at::Tensor got = linear_attention_chunked(q, k, v, 4, 1e-6, nullptr, nullptr, gain);
    QVERIFY(relative_error(got, want) < 1e-12);
    bool thrown = false;
    try {
      linear_attention_chunked(q, k, v, 4, 1e-6, nullptr, nullptr, at::ones({2}, kF64));
    } catch (const c10::Error& e) {
      thrown = std::string(e.what_without_backtrace()).find("gain must be [H]") != std::string::npos;
    }
    QVERIFY(thrown);
  }

  void shape_mismatch_is_rejected() {
    const at::Tensor q = random_features(1, 2, 5, 3, kF32);
    bool thrown = false;
    try {
      linear_attention_chunked(q, q, at::randn({1, 2, 6, 4}, kF32), 4, 1e-6);
    } catch (const c10::Error&) {
      thrown = true;
    }
    QVERIFY(thrown);
  }
};

QTEST_APPLESS_MAIN(TestHedgehogOps)
#include "test_hedgehog_ops.moc"
