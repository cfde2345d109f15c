// The §7 figures on plain data, against values worked out by hand. Built without LibTorch: it also proves
// that core/snapshot's headers stand alone.
#include <QTest>
#include <cmath>

#include "core/snapshot/probe_snapshot.h"
#include "core/snapshot/probe_stats.h"
#include "core/snapshot/run_reports.h"

using namespace hedgelab::snapshot;

namespace {
Grid causal_uniform(int64_t n) {
  Grid g(n, n);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t s = 0; s <= t; ++s)
      g.at(t, s) = 1.0f / float(t + 1);
  return g;
}
}  // namespace

class TestProbeStats : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void entropy_of_uniform_rows_is_mean_log_length() {
    const Grid g = causal_uniform(4);
    const double want = (std::log(1.0) + std::log(2.0) + std::log(3.0) + std::log(4.0)) / 4.0;
    QVERIFY(std::abs(mean_row_entropy(g) - want) < 1e-7);
    // Unnormalised rows are renormalised first: scaling changes nothing.
    Grid scaled = g;
    for (auto& v : scaled.values)
      v *= 7.0f;
    QVERIFY(std::abs(mean_row_entropy(scaled) - want) < 1e-6);
    Grid spiky(3, 3);
    for (int64_t t = 0; t < 3; ++t)
      spiky.at(t, 0) = 1.0f;
    QCOMPARE(mean_row_entropy(spiky), 0.0);
  }

  void kl_is_zero_on_equal_rows_and_matches_a_hand_value() {
    const Grid g = causal_uniform(3);
    QVERIFY(std::abs(mean_row_kl(g, g)) < 1e-9);
    Grid p(2, 2), q(2, 2);
    p.at(0, 0) = q.at(0, 0) = 1.0f;
    p.at(1, 0) = 0.25f, p.at(1, 1) = 0.75f;
    q.at(1, 0) = 0.5f, q.at(1, 1) = 0.5f;
    const double row1 = 0.25 * std::log(0.25 / 0.5) + 0.75 * std::log(0.75 / 0.5);
    QVERIFY(std::abs(mean_row_kl(p, q) - row1 / 2.0) < 1e-7);
    // A zero in q where p has mass: large but finite.
    q.at(1, 0) = 0.0f;
    QVERIFY(std::isfinite(mean_row_kl(p, q)) && mean_row_kl(p, q) > 1.0);
  }

  void spearman_of_monotone_reversed_and_tied_data() {
    const std::vector<float> a = {1, 2, 3, 4, 5};
    QVERIFY(std::abs(spearman(a, {10, 20, 30, 40, 50}) - 1.0) < 1e-12);
    QVERIFY(
        std::abs(spearman(a, {std::exp(1.f), std::exp(2.f), std::exp(3.f), std::exp(4.f), std::exp(5.f)}) -
                 1.0) < 1e-12);  // rank-based: any monotone map
    QVERIFY(std::abs(spearman(a, {5, 4, 3, 2, 1}) + 1.0) < 1e-12);
    // Ties take average ranks: b ranks 1.5, 1.5, 3, 4, 5 → ρ = Pearson of ranks.
    const std::vector<float> b = {7, 7, 8, 9, 10};
    const double ra[] = {1, 2, 3, 4, 5}, rb[] = {1.5, 1.5, 3, 4, 5};
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < 5; ++i) {
      sab += (ra[i] - 3) * (rb[i] - 3);
      saa += (ra[i] - 3) * (ra[i] - 3);
      sbb += (rb[i] - 3) * (rb[i] - 3);
    }
    QVERIFY(std::abs(spearman(a, b) - sab / std::sqrt(saa * sbb)) < 1e-12);
    QCOMPARE(spearman(a, {3, 3, 3, 3, 3}), 0.0);
  }

  void lower_triangle_order() {
    Grid g(3, 3);
    for (int64_t i = 0; i < 9; ++i)
      g.values[i] = float(i);
    QCOMPARE(lower_triangle(g), (std::vector<float>{0, 3, 4, 6, 7, 8}));
  }

  void state_names() { QCOMPARE(std::string(to_string(RunState::Paused)), std::string("paused")); }
};

QTEST_APPLESS_MAIN(TestProbeStats)
#include "test_probe_stats.moc"
