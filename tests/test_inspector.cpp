// The ImGui inspector inside Qt (runs under Xvfb with Mesa's software OpenGL): it renders a non-blank frame
// at the widget's size, a synthetic click on a grid cell selects that cell, a knob typed into its field
// emits knobs_edited with the typed value only, the figures are the snapshot's, and a hidden host stops
// repainting.
#include <QApplication>
#include <QSignalSpy>
#include <QTest>
#include <QWheelEvent>
#include <cmath>
#include <set>

#include "views/inspector_view.h"

using namespace hedgelab;
using namespace hedgelab::views;

namespace {

std::shared_ptr<snapshot::ProbeSnapshot> synthetic() {
  auto s = std::make_shared<snapshot::ProbeSnapshot>();
  s->run = "hedgemamba";
  s->stage = "stage1";
  s->step = 12;
  s->layers = 3;
  s->heads = 4;
  s->tokens = {"a", "b"};
  for (int l = 0; l < 3; ++l) {
    s->alignment.push_back({0.9 - 0.1 * l, 0.8 - 0.2 * l});
    for (int h = 0; h < 4; ++h) {
      snapshot::HeadAttention a;
      a.teacher_entropy = 1.0 + 0.1 * h;
      a.student_entropy = 1.2 + 0.05 * l;
      a.row_kl = 0.02 * (l + 1) * (h + 1);
      a.spearman = 0.95 - 0.1 * h - 0.2 * l;
      s->attention.push_back(a);
    }
  }
  return s;
}

// Frames until the host has consumed its queued input, then a couple more (queued signals delivered too).
void pump(ImGuiHost& host) {
  for (int i = 0; i < 64 && host.input_pending(); ++i) {
    host.render_frame();
    QCoreApplication::processEvents();
  }
  for (int i = 0; i < 3; ++i) {
    host.render_frame();
    QCoreApplication::processEvents();
  }
}

int distinct_colors(const QImage& image) {
  std::set<QRgb> colors;
  for (int y = 0; y < image.height(); y += 2)
    for (int x = 0; x < image.width(); x += 2)
      colors.insert(image.pixel(x, y));
  return static_cast<int>(colors.size());
}

}  // namespace

class TestInspector : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void figures_are_the_snapshots() {
    const auto s = synthetic();
    QCOMPARE(figure_value(*s, InspectorFigure::CosineForced, 2, 3), 0.9 - 0.2);
    QCOMPARE(figure_value(*s, InspectorFigure::CosineFree, 1, -1), 0.8 - 0.2);
    QVERIFY(std::abs(figure_value(*s, InspectorFigure::EntropyGap, 1, 2) - ((1.2 + 0.05) - (1.0 + 0.2))) <
            1e-12);
    QCOMPARE(figure_value(*s, InspectorFigure::RowKl, 2, 1), 0.02 * 3 * 2);
    QCOMPARE(figure_value(*s, InspectorFigure::Spearman, 0, 3), 0.95 - 0.3);
    QVERIFY(std::isnan(figure_value(*s, InspectorFigure::Spearman, 3, 0)));
    QVERIFY(std::isnan(figure_value(*s, InspectorFigure::RowKl, 0, 4)));
  }

  void renders_a_frame_at_the_widget_size() {
    InspectorView view;
    view.resize(700, 500);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    view.set_snapshot(synthetic());
    const QImage frame = view.render_frame();
    const qreal dpr = view.devicePixelRatioF();
    if (qEnvironmentVariableIsSet("HEDGELAB_EXPECT_DPR"))  // the HiDPI registration of this suite
      QCOMPARE(dpr, qEnvironmentVariable("HEDGELAB_EXPECT_DPR").toDouble());
    QCOMPARE(frame.size(), QSize(qRound(700 * dpr), qRound(500 * dpr)));
    QVERIFY(view.frames() > 0);
    QVERIFY2(distinct_colors(frame) > 20, "the frame looks blank");
    // Every cell of the grid was laid out, inside the widget.
    for (int l = 0; l < 3; ++l)
      for (int h = 0; h < 4; ++h) {
        const QRectF r = view.cell_rect(InspectorFigure::Spearman, l, h);
        QVERIFY(!r.isEmpty() && QRectF(view.rect()).contains(r));
      }
    // The cell's colour is drawn where the grid says: the centre pixels of two different cells differ.
    const QPointF a = view.cell_rect(InspectorFigure::Spearman, 0, 0).center() * dpr;
    const QPointF b = view.cell_rect(InspectorFigure::Spearman, 2, 3).center() * dpr;
    QVERIFY(frame.pixel(a.toPoint()) != frame.pixel(b.toPoint()));
    // Resizing: the next frame follows.
    view.resize(500, 400);
    QCOMPARE(view.render_frame().size(), QSize(qRound(500 * dpr), qRound(400 * dpr)));
  }

  void a_click_on_a_cell_selects_it() {
    InspectorView view;
    view.resize(700, 500);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    view.set_snapshot(synthetic());
    view.render_frame();
    QSignalSpy spy(&view, &InspectorView::cell_selected);
    const QRectF r = view.cell_rect(InspectorFigure::RowKl, 1, 2);
    QVERIFY(!r.isEmpty());
    QTest::mouseMove(&view, r.center().toPoint());
    QTest::mouseClick(&view, Qt::LeftButton, {}, r.center().toPoint());
    pump(view);
    QCOMPARE(spy.count(), 1);
    QCOMPARE(spy[0][0].toInt(), 1);
    QCOMPARE(spy[0][1].toInt(), 2);
    QCOMPARE(spy[0][2].toInt(), static_cast<int>(InspectorFigure::RowKl));
    QCOMPARE(view.selected_layer(), 1);
    QCOMPARE(view.selected_head(), 2);
    // A per-layer cosine cell reports head −1.
    const QRectF c = view.cell_rect(InspectorFigure::CosineFree, 2, 0);
    QTest::mouseClick(&view, Qt::LeftButton, {}, c.center().toPoint());
    pump(view);
    QCOMPARE(spy.count(), 2);
    QCOMPARE(spy[1][0].toInt(), 2);
    QCOMPARE(spy[1][1].toInt(), -1);
  }

  void a_knob_edit_emits_the_typed_value() {
    InspectorView view;
    view.resize(700, 500);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    view.set_snapshot(synthetic());
    snapshot::KnobEdit now;
    now.lr = 1e-3;
    now.kd_weight = 1.0;
    now.probe_every = 25;
    view.set_knob_values(now);
    view.render_frame();
    QSignalSpy spy(&view, &InspectorView::knobs_edited);
    for (const auto& [name, text, check] : std::vector<std::tuple<std::string, QString, int>>{
             {"kd_weight", "2.5", 0}, {"probe_every", "7", 1}}) {
      const QRectF field = view.knob_rect(name);
      QVERIFY2(!field.isEmpty(), name.c_str());
      QTest::mouseClick(&view, Qt::LeftButton, {}, field.center().toPoint());
      pump(view);
      QTest::keyClick(&view, Qt::Key_A, Qt::ControlModifier);  // select the field's text
      pump(view);
      QTest::keyClicks(&view, text);
      pump(view);
      QTest::keyClick(&view, Qt::Key_Return);
      pump(view);
      (void)check;
    }
    QCOMPARE(spy.count(), 2);
    const auto first = spy[0][0].value<snapshot::KnobEdit>();
    QVERIFY(first.kd_weight.has_value());
    QCOMPARE(*first.kd_weight, 2.5);
    QVERIFY(!first.lr && !first.ce_weight && !first.probe_every);
    const auto second = spy[1][0].value<snapshot::KnobEdit>();
    QCOMPARE(second.probe_every.value_or(-1), int64_t(7));
    QVERIFY(!second.kd_weight);
    QCOMPARE(*view.knob_values().kd_weight, 2.5);
    QCOMPARE(*view.knob_values().lr, 1e-3);  // untouched
    // Read-only knobs (a saved session) emit nothing.
    view.set_knobs_enabled(false);
    QTest::mouseClick(&view, Qt::LeftButton, {}, view.knob_rect("lr").center().toPoint());
    pump(view);
    QTest::keyClicks(&view, "9");
    QTest::keyClick(&view, Qt::Key_Return);
    pump(view);
    QCOMPARE(spy.count(), 2);
  }

  void the_wheel_scrolls_the_grid() {
    InspectorView view;
    view.resize(400, 160);  // shorter than the grid and the knobs: the window scrolls
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    view.set_snapshot(synthetic());
    view.render_frame();
    const QRectF before = view.cell_rect(InspectorFigure::RowKl, 2, 0);
    const QPointF at(200, 80);
    QWheelEvent wheel(at, view.mapToGlobal(at), QPoint(), QPoint(0, -240), Qt::NoButton, Qt::NoModifier,
                      Qt::NoScrollPhase, false);
    QApplication::sendEvent(&view, &wheel);
    pump(view);
    const QRectF after = view.cell_rect(InspectorFigure::RowKl, 2, 0);
    QVERIFY2(after.top() < before.top() - 10,
             qPrintable(QString("%1 → %2").arg(before.top()).arg(after.top())));
    QCOMPARE(after.left(), before.left());
  }

  void the_font_scale_enlarges_the_text() {
    InspectorView view;
    view.resize(700, 500);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    view.set_snapshot(synthetic());
    view.render_frame();
    const QRectF normal = view.cell_rect(InspectorFigure::Spearman, 0, 0);
    const QRectF field = view.knob_rect("lr");
    view.set_font_scale(2.0f);  // teaching mode
    view.render_frame();
    // Two header lines of twice the height push the grid down; the knob field grows with its text.
    QVERIFY(view.cell_rect(InspectorFigure::Spearman, 0, 0).top() > normal.top() + 10);
    QVERIFY(view.knob_rect("lr").height() > field.height() * 1.5);
  }

  void repaints_on_a_timer_only_while_visible() {
    InspectorView view;
    view.set_frame_interval(10);
    view.resize(300, 200);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    QTRY_VERIFY_WITH_TIMEOUT(view.frames() >= 5, 5000);
    view.hide();
    QCoreApplication::processEvents();
    const int64_t at_hide = view.frames();
    QTest::qWait(200);
    QVERIFY(view.frames() <= at_hide + 1);
  }
};

QTEST_MAIN(TestInspector)
#include "test_inspector.moc"
