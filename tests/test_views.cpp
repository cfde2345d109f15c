// The inspection views fed synthetic snapshots of known content (offscreen): the attention maps hold P, the
// row-renormalised student map and their difference cell by cell; the head table holds the figures; a click
// on a thumbnail opens that head; the kernel view's pairs, ρ bars and feature weights are the snapshot's;
// the Mamba view draws gate, state, taps and the implied attention beside P, and says why a stage-1 snapshot
// has none; every view exports its plots and data; the teaching texts cover every view and a 10-minute plan.
#include <QFile>
#include <QSignalSpy>
#include <QTableWidget>
#include <QTest>
#include <QTextStream>
#include <algorithm>
#include <cmath>
#include <memory>

#include "tests/test_util.h"
#include "views/attention_view.h"
#include "views/inspection_common.h"
#include "views/kernel_view.h"
#include "views/mamba_view.h"
#include "views/teaching.h"

using namespace hedgelab;
using namespace hedgelab::views;

namespace {

constexpr int64_t kL = 2, kH = 3, kTp = 5;

// Deterministic distinct values in (0, 1].
float value(int64_t a, int64_t b, int64_t c, int64_t d) {
  return static_cast<float>(((a * 131 + b * 31 + c * 7 + d * 3) % 97 + 1) / 97.0);
}

// A causal map whose row t is proportional to value(...) over s ≤ t, scaled by `row_scale` (1 = rows sum 1).
snapshot::Grid causal_map(int64_t l, int64_t h, int salt, double row_scale) {
  snapshot::Grid g(kTp, kTp);
  for (int64_t t = 0; t < kTp; ++t) {
    double z = 0;
    for (int64_t s = 0; s <= t; ++s)
      z += value(l, h, t * 10 + s, salt);
    for (int64_t s = 0; s <= t; ++s)
      g.at(t, s) = static_cast<float>(value(l, h, t * 10 + s, salt) / z * row_scale);
  }
  return g;
}

std::shared_ptr<snapshot::ProbeSnapshot> synthetic(bool stage2) {
  auto s = std::make_shared<snapshot::ProbeSnapshot>();
  s->run = "hedgemamba";
  s->stage = stage2 ? "stage2" : "stage1";
  s->step = 40;
  s->layers = kL;
  s->heads = kH;
  s->tokens = {"The", " quick", " brown", " fox", "\n"};
  for (int64_t l = 0; l < kL; ++l) {
    s->alignment.push_back({0.5 + 0.1 * l, 0.4 + 0.1 * l});
    snapshot::FeatureMapWeights f;
    for (int64_t h = 0; h < kH; ++h) {
      snapshot::HeadAttention a;
      a.teacher = causal_map(l, h, 1, 1.0);
      a.student = causal_map(l, h, 2, 2.5);  // unnormalised rows (an implied attention)
      a.teacher_entropy = 1.0 + l + 0.1 * h;
      a.student_entropy = 1.5 + l + 0.1 * h;
      a.row_kl = 0.01 * (1 + l * kH + h);
      a.spearman = 0.9 - 0.2 * h - 0.05 * l;
      for (int64_t i = 0; i < kTp * (kTp + 1) / 2; ++i) {
        a.teacher_logits.push_back(static_cast<float>(i) * 0.5f - 2.0f);
        a.feature_logits.push_back(value(l, h, i, 3) * 4.0f - 2.0f);
      }
      s->attention.push_back(a);
      snapshot::Grid wq(4, 6), wk(4, 6);
      for (int64_t r = 0; r < 4; ++r)
        for (int64_t c = 0; c < 6; ++c) {
          wq.at(r, c) = value(l, h, r, c) - 0.5f;
          wk.at(r, c) = 0.5f - value(l, h, c, r);
        }
      f.q.push_back(wq);
      f.k.push_back(wk);
    }
    s->features.push_back(f);
    if (stage2) {
      snapshot::MixerInternals m;
      m.delta = snapshot::Grid(kH, kTp);
      m.alpha = snapshot::Grid(kH, kTp);
      m.state_norm = snapshot::Grid(kH, kTp);
      for (int64_t h = 0; h < kH; ++h)
        for (int64_t t = 0; t < kTp; ++t) {
          m.delta.at(h, t) = 1.0f + 0.1f * h + 0.01f * t;
          m.alpha.at(h, t) = 1.0f - 0.02f * h - 0.001f * t;
          m.state_norm.at(h, t) = 1.0f + t * (1 + h);
        }
      m.gate = snapshot::Grid(kTp, 8);
      for (int64_t t = 0; t < kTp; ++t)
        for (int64_t c = 0; c < 8; ++c)
          m.gate.at(t, c) = 2.0f * value(l, t, c, 9);
      for (int64_t h = 0; h < kH; ++h) {
        snapshot::Grid st(8, 4);
        for (int64_t n = 0; n < 8; ++n)
          for (int64_t p = 0; p < 4; ++p)
            st.at(n, p) = value(l, h, n, p) - 0.4f;
        m.final_state.push_back(st);
      }
      m.conv_x = snapshot::Grid(8, 4);
      m.conv_k = snapshot::Grid(8, 4);
      m.conv_q = snapshot::Grid(8, 4);
      for (int64_t c = 0; c < 8; ++c)
        for (int64_t w = 0; w < 4; ++w) {
          m.conv_x.at(c, w) = value(l, c, w, 11) - 0.5f;
          m.conv_k.at(c, w) = value(l, c, w, 12) - 0.5f;
          m.conv_q.at(c, w) = value(l, c, w, 13) - 0.5f;
        }
      s->mixers.push_back(m);
    }
  }
  return s;
}

// The (x, y) rows of `series` in a PlotCanvas CSV ("series,x,y").
std::vector<std::pair<double, double>> csv_series(const QString& path, const QString& series) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  std::vector<std::pair<double, double>> out;
  QTextStream in(&f);
  while (!in.atEnd()) {
    QStringList cells = in.readLine().split(',');
    if (cells.size() != 3) continue;
    if (cells[0].startsWith('"') && cells[0].endsWith('"')) cells[0] = cells[0].mid(1, cells[0].size() - 2);
    if (cells[0] == series) out.emplace_back(cells[1].toDouble(), cells[2].toDouble());
  }
  return out;
}

bool near(double a, double b, double tol = 1e-6) {
  return std::abs(a - b) <= tol;
}

}  // namespace

class TestViews : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void plain_computations_match_hand_values() {
    snapshot::Grid g(3, 3);
    g.at(0, 0) = 2.0f;
    g.at(1, 0) = 1.0f;
    g.at(1, 1) = 3.0f;
    g.at(2, 0) = 0.0f;
    g.at(2, 1) = 0.0f;
    g.at(2, 2) = 0.0f;
    g.at(0, 2) = 9.0f;  // above the diagonal: ignored
    const auto n = row_normalised(g);
    QCOMPARE(n.at(0, 0), 1.0f);
    QCOMPARE(n.at(0, 2), 0.0f);
    QCOMPARE(n.at(1, 0), 0.25f);
    QCOMPARE(n.at(1, 1), 0.75f);
    QCOMPARE(n.at(2, 2), 0.0f);  // an all-zero row stays zero
    snapshot::HeadAttention h;
    h.teacher = snapshot::Grid(2, 2);
    h.teacher.at(0, 0) = 1.0f;
    h.teacher.at(1, 0) = 0.5f;
    h.teacher.at(1, 1) = 0.5f;
    h.student = snapshot::Grid(2, 2);
    h.student.at(0, 0) = 4.0f;
    h.student.at(1, 0) = 0.0f;  // log undefined: the pair is skipped
    h.student.at(1, 1) = 2.0f;
    const auto [x, y] = log_attention_pairs(h);
    QCOMPARE(x.size(), 2);
    QVERIFY(near(x[0], 0.0) && near(y[0], 0.0));                      // (t=0, s=0): 1 and 4/4
    QVERIFY(near(x[1], std::log(0.5)) && near(y[1], std::log(1.0)));  // (t=1, s=1): 0.5 and 2/2
    h.teacher_logits = {1.0f, 2.0f, std::nanf("")};
    h.feature_logits = {-1.0f, 0.5f, 3.0f};
    const auto [lx, ly] = logit_pairs(h);
    QCOMPARE(lx, (QVector<double>{1.0, 2.0}));
    QCOMPARE(ly, (QVector<double>{-1.0, 0.5}));
    const auto [centres, counts] =
        histogram({0.0f, 0.1f, 0.55f, 0.99f, 1.0f, 2.0f, std::nanf("")}, 2, 0.0, 1.0);
    QCOMPARE(centres, (QVector<double>{0.25, 0.75}));
    QCOMPARE(counts, (QVector<double>{2.0, 3.0}));  // 2.0 out of range, NaN skipped, 1.0 in the last bin
    QCOMPARE(token_labels(*synthetic(false)), (QStringList{"The", "␣quick", "␣brown", "␣fox", "↵"}));
  }

  void attention_maps_hold_the_snapshot() {
    auto s = synthetic(false);
    AttentionView view;
    view.resize(1200, 800);
    view.show();
    view.set_snapshot(s);
    view.set_selection(1, 2);
    QCOMPARE(view.layer(), 1);
    QCOMPARE(view.head(), 2);
    const auto& a = s->head(1, 2);
    for (int i = 0; i < kTp; ++i) {
      // The student's row t renormalised by hand: value(...) / Σ_{s≤t} value(...) (the 2.5 scale drops out).
      double z = 0;
      for (int j = 0; j <= i; ++j)
        z += value(1, 2, i * 10 + j, 2);
      for (int j = 0; j < kTp; ++j) {
        const double p = j <= i ? value(1, 2, i * 10 + j, 1) : 0.0;
        double pz = 0;
        for (int k = 0; k <= i; ++k)
          pz += value(1, 2, i * 10 + k, 1);
        const double want_p = j <= i ? p / pz : 0.0;
        const double want_q = j <= i ? value(1, 2, i * 10 + j, 2) / z : 0.0;
        QVERIFY(near(view.teacher_plot()->heatmap_value(i, j), a.teacher.at(i, j)));
        QVERIFY(near(view.teacher_plot()->heatmap_value(i, j), want_p, 1e-6));
        QVERIFY2(near(view.student_plot()->heatmap_value(i, j), want_q, 1e-6),
                 qPrintable(QString("student (%1,%2)").arg(i).arg(j)));
        QVERIFY(near(view.difference_plot()->heatmap_value(i, j), want_p - want_q, 1e-6));
      }
    }
    QVERIFY(std::isnan(view.teacher_plot()->heatmap_value(kTp, 0)));
    // The table: one row per head of the layer, the figures in columns 1–4.
    QCOMPARE(view.head_table()->rowCount(), int(kH));
    for (int h = 0; h < kH; ++h) {
      const auto& b = s->head(1, h);
      QCOMPARE(view.head_table()->item(h, 1)->data(Qt::UserRole).toDouble(), b.teacher_entropy);
      QCOMPARE(view.head_table()->item(h, 2)->data(Qt::UserRole).toDouble(), b.student_entropy);
      QCOMPARE(view.head_table()->item(h, 3)->data(Qt::UserRole).toDouble(), b.row_kl);
      QCOMPARE(view.head_table()->item(h, 4)->data(Qt::UserRole).toDouble(), b.spearman);
    }
    // A click on a thumbnail of the overview opens that head.
    view.show_overview(true);
    QSignalSpy spy(&view, &AttentionView::selection_changed);
    const QRect r = view.thumbnails()->thumbnail_rect(0, 1);
    QVERIFY(r.isValid());
    QTest::mouseClick(view.thumbnails(), Qt::LeftButton, {}, r.center());
    QCOMPARE(spy.count(), 1);
    QCOMPARE(view.layer(), 0);
    QCOMPARE(view.head(), 1);
    QVERIFY(near(view.teacher_plot()->heatmap_value(3, 1), s->head(0, 1).teacher.at(3, 1)));
    // Switching snapshots redraws the same head from the new one.
    auto later = synthetic(false);
    later->attention[1].teacher.at(4, 2) = 0.123f;
    view.set_snapshot(later);
    QVERIFY(near(view.teacher_plot()->heatmap_value(4, 2), 0.123));
  }

  void kernel_view_holds_pairs_bars_and_weights() {
    auto s = synthetic(false);
    KernelView view;
    view.resize(1000, 800);
    view.show();
    view.set_snapshot(s);
    view.set_selection(1, 1);
    const auto& w = s->features[1].q[1];
    for (int r = 0; r < w.rows; ++r)
      for (int c = 0; c < w.cols; ++c)
        QVERIFY(near(view.weights_plot()->heatmap_value(r, c), w.at(r, c)));
    view.show_key_weights(true);
    QVERIFY(near(view.weights_plot()->heatmap_value(2, 5), s->features[1].k[1].at(2, 5)));
    testing::TempDir dir;
    QString error;
    QVERIFY2(view.export_all(QString::fromStdString(dir.path().string()), "png", &error), qPrintable(error));
    const QString base = QString::fromStdString(dir.path().string()) + "/";
    const auto rho = csv_series(base + "kernel_spearman.csv", "ρ");
    QCOMPARE(rho.size(), size_t(kH));
    for (int h = 0; h < kH; ++h)
      QVERIFY(near(rho[h].first, h) && near(rho[h].second, s->head(1, h).spearman, 1e-6));
    const auto logits = csv_series(base + "kernel_logits.csv", "pairs");
    QCOMPARE(logits.size(), s->head(1, 1).teacher_logits.size());
    for (size_t i = 0; i < logits.size(); ++i) {
      QVERIFY(near(logits[i].first, s->head(1, 1).teacher_logits[i], 1e-6));
      QVERIFY(near(logits[i].second, s->head(1, 1).feature_logits[i], 1e-6));
    }
    const auto pairs = csv_series(base + "kernel_log_attention.csv", "pairs");
    QCOMPARE(pairs.size(), size_t(kTp * (kTp + 1) / 2));  // every entry of both maps is positive
    // The plot keeps points sorted by x: compare as sorted lists against the pairs computed from the maps.
    const auto [wx, wy] = log_attention_pairs(s->head(1, 1));
    std::vector<std::pair<double, double>> want;
    for (int i = 0; i < wx.size(); ++i)
      want.emplace_back(wx[i], wy[i]);
    auto got = pairs;
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    for (size_t i = 0; i < want.size(); ++i)
      QVERIFY(near(got[i].first, want[i].first, 1e-6) && near(got[i].second, want[i].second, 1e-6));
    QVERIFY(std::any_of(got.begin(), got.end(),
                        [](auto p) { return near(p.first, 0.0) && near(p.second, 0.0); }));
    for (const char* f : {"kernel_log_attention.png", "kernel_logits.png", "kernel_feature_weights.png"})
      QVERIFY(QFile(base + f).size() > 1000);
  }

  void mamba_view_draws_the_mixer_or_says_why_not() {
    MambaView view;
    view.resize(1200, 800);
    view.show();
    view.set_snapshot(synthetic(false));
    QVERIFY(!view.showing_internals());
    QVERIFY(view.note().contains("no Mamba mixers"));
    auto s = synthetic(true);
    view.set_snapshot(s);
    QVERIFY(view.showing_internals());
    view.set_selection(1, 2);
    const auto& m = s->mixers[1];
    // Only the current tab (Δ, α, ‖S_t‖) is drawn; the gate map waits until its tab is shown.
    QVERIFY(std::isnan(view.gate_map()->heatmap_value(0, 0)));
    view.show_tab(MambaView::kGateTab);
    for (int t = 0; t < kTp; ++t)
      for (int c = 0; c < 8; ++c)
        QVERIFY(near(view.gate_map()->heatmap_value(t, c), m.gate.at(t, c)));
    view.show_tab(MambaView::kStateTab);
    for (int n = 0; n < 8; ++n)
      for (int p = 0; p < 4; ++p)
        QVERIFY(near(view.final_state_plot()->heatmap_value(n, p), m.final_state[2].at(n, p)));
    view.set_conv(1);
    QVERIFY(near(view.conv_plot()->heatmap_value(5, 3), m.conv_k.at(5, 3)));
    // The implied attention beside the teacher's map, rows renormalised, on the same scale.
    view.show_tab(MambaView::kAttentionTab);
    const auto implied = row_normalised(s->head(1, 2).student);
    for (int i = 0; i < kTp; ++i)
      for (int j = 0; j <= i; ++j) {
        QVERIFY(near(view.teacher_plot()->heatmap_value(i, j), s->head(1, 2).teacher.at(i, j)));
        QVERIFY(near(view.implied_plot()->heatmap_value(i, j), implied.at(i, j)));
      }
    // A new snapshot: the export draws every tab first (the time tab is not the current one now).
    auto next = synthetic(true);
    next->mixers[1].delta.at(1, 3) = 7.0f;
    view.set_snapshot(next);
    testing::TempDir dir;
    QString error;
    const QString base = QString::fromStdString(dir.path().string()) + "/";
    QVERIFY2(view.export_all(base, "svg", &error), qPrintable(error));
    const auto& mn = next->mixers[1];
    // Δ of head 1 over t, and the gate histogram counting every gate value.
    const auto delta = csv_series(base + "mamba_delta.csv", "head 1");
    QCOMPARE(delta.size(), size_t(kTp));
    for (int t = 0; t < kTp; ++t)
      QVERIFY(near(delta[t].second, mn.delta.at(1, t), 1e-6));
    QVERIFY(near(delta[3].second, 7.0));
    double counted = 0;
    for (const auto& [x, n] : csv_series(base + "mamba_gate_histogram.csv", "count"))
      counted += n;
    QCOMPARE(counted, double(mn.gate.values.size()));
    QVERIFY(QFile(base + "mamba_implied_attention.svg").size() > 1000);
  }

  void teaching_texts_cover_every_view() {
    for (const char* v : {"loss_curves", "alignment", "attention", "kernel", "mamba", "inspector"}) {
      QVERIFY2(teaching_plain(v).size() > 200, v);
      QVERIFY(teaching_html(v).startsWith("<h3>"));
    }
    QVERIFY(teaching_plain("nonexistent").isEmpty());
    int minutes = 0;
    for (const auto& step : class_plan()) {
      QVERIFY2(!teaching_plain(step.view).isEmpty(), qPrintable(step.view));
      minutes += step.minutes;
    }
    QCOMPARE(minutes, 10);
    TeachingPanel panel;
    panel.set_view("kernel");
    QVERIFY(panel.text().contains("Kernel approximation"));
    QVERIFY(panel.text().contains("As training moves."));
    auto* view = new QWidget;
    std::unique_ptr<QWidget> frame(with_teaching(view, "mamba"));
    QCOMPARE(view->parentWidget(), frame.get());
  }
};

QTEST_MAIN(TestViews)
#include "test_views.moc"
