// The desktop lab's run control: the window drives a run on the demo teacher through every state
// (QSignalSpy on the controller), pause takes effect between steps, stop leaves a resumable session, random
// sequences of start/pause/resume/stop/close end without deadlock or crash, the views receive the data, an
// opened session fills the plots, and invalid recipe fields are refused with a message.
#include <QFile>
#include <QLineEdit>
#include <QListWidget>
#include <QPushButton>
#include <QRandomGenerator>
#include <QSettings>
#include <QSignalSpy>
#include <QStatusBar>
#include <QTableWidget>
#include <QTest>

#include <QFileInfo>
#include "app/gui/run_controller.h"
#include "app/gui/session_document.h"
#include "sessions/session_reader.h"
#include "tests/gui_test_util.h"
#include "views/alignment_view.h"
#include "views/comparison_view.h"
#include "views/loss_curves_view.h"

using namespace hedgelab;
using namespace hedgelab::testing;
using gui::UiRunState;

class TestGuiRun : public QObject {
  Q_OBJECT

  TempDir tmp_;
  std::filesystem::path corpus_;

  gui::WindowOptions options() const {
    gui::WindowOptions o;
    o.sessions_folder = QString::fromStdString((tmp_ / "runs").string());
    o.restore_settings = false;
    return o;
  }

 private Q_SLOTS:
  void initTestCase() {
    QCoreApplication::setOrganizationName("HedgeLabTest");
    QCoreApplication::setApplicationName("test_gui_run");
    QSettings().clear();
    corpus_ = write_tiny_corpus(tmp_);
  }

  void walks_every_state() {
    gui::MainWindow w(options());
    set_tiny_recipe(w.run_panel(), corpus_, 6, 8);
    QSignalSpy states(&w.controller(), &gui::RunController::state_changed);
    QVERIFY(w.start_run());
    QVERIFY2(wait_until([&] {
               return w.controller().state() == UiRunState::Running &&
                      w.controller().data().steps_received() >= 2;
             }),
             qPrintable(w.controller().last_message()));
    w.controller().pause();
    QCOMPARE(w.controller().state(), UiRunState::Pausing);
    QVERIFY(wait_until([&] { return w.controller().state() == UiRunState::Paused; }));
    // Paused between steps: no step arrives while paused.
    const int64_t at_pause = w.controller().data().steps_received();
    QTest::qWait(400);
    QCOMPARE(w.controller().data().steps_received(), at_pause);
    w.controller().resume();
    QVERIFY(wait_until([&] { return w.controller().data().steps_received() > at_pause; }));
    w.controller().stop();
    QVERIFY(wait_until([&] { return w.controller().state() == UiRunState::Stopped; }));
    QList<UiRunState> seen;
    for (const auto& args : states)
      seen << args.at(0).value<UiRunState>();
    for (UiRunState s : {UiRunState::Loading, UiRunState::Running, UiRunState::Pausing, UiRunState::Paused,
                         UiRunState::Stopping, UiRunState::Stopped})
      QVERIFY2(seen.contains(s), gui::to_string(s));

    // The stopped session is listed as a file, resumable, and resuming finishes the run in a new file.
    QCOMPARE(w.document_count(), 1);
    const QString path = w.controller().info().session_path;
    auto reader = sessions::SessionReader::open(path.toStdString());
    QVERIFY(!reader.checkpoints().empty());
    QVERIFY(w.resume_session(path));
    QVERIFY(wait_until([&] { return w.controller().state() == UiRunState::Finished; }, 120000));
    QVERIFY(w.controller().info().resumed);
    QVERIFY(w.controller().info().session_path != path);
    auto resumed = sessions::SessionReader::open(w.controller().info().session_path.toStdString());
    QCOMPARE(resumed.contents().state, sessions::SessionState::Complete);
    QCOMPARE(static_cast<int>(resumed.summary().size()), 1);  // the run's own row
    QCOMPARE(resumed.summary()[0].run, std::string("hedgemamba"));
    QVERIFY(!resumed.summary()[0].stopped_early);
    QVERIFY(w.controller().data().summary().size() == 2);  // teacher + student rows in the window
  }

  void views_receive_reports() {
    gui::MainWindow w(options());
    set_tiny_recipe(w.run_panel(), corpus_, 4, 6);
    QVERIFY(w.start_run());
    QVERIFY(wait_until([&] { return w.controller().state() == UiRunState::Finished; }, 120000));
    w.refresh_views(true);
    // Loss: the total over all 10 steps; stage-1 per-layer parts; perplexity with the teacher line.
    const auto* loss = w.loss_view();
    QCOMPARE(loss->loss_plot()->curve_points(0), 10);
    QVERIFY(loss->layer_plot()->curve_points(0) == 4);
    QVERIFY(loss->perplexity_plot()->curve_points(0) >= 2);
    // Alignment: one column per snapshot.
    const auto& data = w.controller().data();
    QVERIFY(data.snapshots().size() >= 4);
    const int last = static_cast<int>(data.snapshots().size()) - 1;
    QCOMPARE(w.alignment_view()->forced_heatmap()->heatmap_value(0, last),
             static_cast<double>(static_cast<float>(data.snapshots().back().alignment[0].teacher_forced)));
  }

  void opening_a_session_fills_the_plots() {
    // A session written by the CLI-equivalent path: run one, then open it in a fresh window.
    QString path;
    {
      gui::MainWindow w(options());
      set_tiny_recipe(w.run_panel(), corpus_, 3, 3);
      QVERIFY(w.start_run());
      QVERIFY(wait_until([&] { return w.controller().state() == UiRunState::Finished; }, 120000));
      path = w.controller().info().session_path;
    }
    gui::MainWindow w(options());
    QString error;
    QVERIFY2(w.open_session(path, &error), qPrintable(error));
    w.refresh_views(true);
    QCOMPARE(w.loss_view()->loss_plot()->curve_points(0), 6);
    auto reader = sessions::SessionReader::open(path.toStdString());
    const auto total = reader.metric("hedgemamba", "stage2", "total");
    QCOMPARE(static_cast<int>(total.values.size()), 3);
    // Bad files are refused with a message naming them, and nothing is added.
    write_file(tmp_ / "not-a-session.h5", "hello");
    QVERIFY(!w.open_session(QString::fromStdString((tmp_ / "not-a-session.h5").string()), &error));
    QVERIFY2(error.contains("not-a-session.h5"), qPrintable(error));
    QCOMPARE(w.document_count(), 1);
    // Two sessions compared: overlay curves and a recipe diff naming the differing field.
    QString other;
    {
      gui::MainWindow w2(options());
      set_tiny_recipe(w2.run_panel(), corpus_, 2, 3);
      w2.run_panel().set_field("stage2.kd_temperature", "3");
      QVERIFY(w2.start_run());
      QVERIFY(wait_until([&] { return w2.controller().state() == UiRunState::Finished; }, 120000));
      other = w2.controller().info().session_path;
    }
    QVERIFY(w.open_session(other, &error));
    QCOMPARE(w.document_count(), 2);
    auto* list = w.findChild<QListWidget*>("sessions_list");
    QVERIFY(list && list->count() == 2);
    list->item(0)->setCheckState(Qt::Checked);
    list->item(1)->setCheckState(Qt::Checked);
    w.refresh_views(true);
    auto* diff = w.comparison_view()->recipe_diff_table();
    QStringList fields;
    for (int r = 0; r < diff->rowCount(); ++r)
      fields << diff->item(r, 0)->text();
    QVERIFY2(fields.contains("stage2.kd_temperature"), qPrintable(fields.join(", ")));
    QVERIFY2(fields.contains("stage1.tokens"), qPrintable(fields.join(", ")));
    QVERIFY(!fields.contains("data.context"));  // equal in both: not listed
    QCOMPARE(w.comparison_view()->overlay_plot()->curve_points(0) > 0, true);
    QCOMPARE(w.comparison_view()->summary_table()->rowCount(), 2);  // each session's own row

    // Plots and tables export: PNG, SVG, PDF and CSV with one row per point (the first session: 6 steps).
    w.select_document(0);
    w.refresh_views(true);
    auto* plot = w.loss_view()->loss_plot();
    for (const char* ext : {"png", "svg", "pdf"}) {
      const QString out = QString::fromStdString((tmp_ / (std::string("loss.") + ext)).string());
      QVERIFY2(plot->export_to(out, &error, 640, 400), qPrintable(error));
      QVERIFY(QFileInfo(out).size() > 500);
    }
    const QString csv = QString::fromStdString((tmp_ / "loss.csv").string());
    QVERIFY2(plot->export_csv(csv, &error), qPrintable(error));
    QFile f(csv);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QStringList lines = QString::fromUtf8(f.readAll()).split('\n', Qt::SkipEmptyParts);
    QCOMPARE(lines.front(), QString("series,x,y"));
    QVERIFY(lines.filter("\"total\",").size() == 6);
    QVERIFY(!plot->export_to(QString::fromStdString((tmp_ / "loss.bmpx").string()), &error));
    QVERIFY2(error.contains("bmpx"), qPrintable(error));
    const QString table_csv = QString::fromStdString((tmp_ / "table.csv").string());
    QVERIFY2(views::export_table_csv(w.comparison_view()->summary_table(), table_csv, &error),
             qPrintable(error));
    QVERIFY(QFileInfo(table_csv).size() > 20);
  }

  void a_knob_edit_reaches_the_run_and_the_session() {
    // The inspector's knobs_edited goes to RunController::apply_knobs (wired in InspectionDocks); the worker
    // applies it between steps, reports it back, and the session records a "knob" event.
    gui::MainWindow w(options());
    set_tiny_recipe(w.run_panel(), corpus_, 12, 2);
    QSignalSpy applied(&w.controller(), &gui::RunController::knobs_applied);
    QVERIFY(w.start_run());
    QVERIFY(wait_until([&] { return w.controller().data().steps_received() >= 2; }));
    snapshot::KnobEdit edit;
    edit.lr = 0.0042;
    edit.kd_temperature = 3.5;
    w.controller().apply_knobs(edit);
    QVERIFY(wait_until([&] { return applied.size() == 1; }));
    const auto got = applied.at(0).at(2).value<snapshot::KnobEdit>();
    QVERIFY(got.lr && std::abs(*got.lr - 0.0042) < 1e-12);
    QVERIFY(got.kd_temperature && *got.kd_temperature == 3.5);
    const qint64 at = applied.at(0).at(1).toLongLong();
    // The next step's learning rate follows the new peak's schedule (below or at the peak, above 0).
    QVERIFY(wait_until([&] { return w.controller().data().steps_received() >= at + 2; }));
    const auto& lr = w.controller().data().metric("lr");
    QVERIFY(lr.y.back() <= 0.0042 + 1e-12 && lr.y.back() > 0);
    // A value out of range is refused with a message naming the field; nothing changes.
    QSignalSpy problems(&w.controller(), &gui::RunController::problem);
    snapshot::KnobEdit bad;
    bad.kd_temperature = -1.0;
    w.controller().apply_knobs(bad);
    QVERIFY(wait_until([&] { return problems.size() == 1; }));
    QVERIFY2(problems.at(0).at(1).toString().contains("kd_temperature") ||
                 problems.at(0).at(1).toString().contains("τ"),
             qPrintable(problems.at(0).at(1).toString()));
    w.controller().stop();
    QVERIFY(wait_until([&] { return !w.controller().active(); }));
    auto reader = sessions::SessionReader::open(w.controller().info().session_path.toStdString());
    int knob_events = 0;
    for (const auto& e : reader.events())
      if (e.kind == "knob") {
        ++knob_events;
        QVERIFY2(e.detail.dump().find("0.0042") != std::string::npos, e.detail.dump().c_str());
      }
    QCOMPARE(knob_events, 1);
    // Reopened, the session shows the knobs as the run left them: the edit over the recipe's values.
    auto doc = gui::SessionDocument::open(w.controller().info().session_path);
    QVERIFY(doc->knobs().lr && std::abs(*doc->knobs().lr - 0.0042) < 1e-12);
    QVERIFY(doc->knobs().kd_temperature && *doc->knobs().kd_temperature == 3.5);
    QVERIFY(doc->knobs().probe_every && *doc->knobs().probe_every == 2);
  }

  // A run's notice (on CUDA: a fused kernel not taken) is shown in the status bar, with no dialog to click.
  void a_notice_goes_to_the_status_bar() {
    gui::MainWindow w(options());
    QSignalSpy problems(&w.controller(), &gui::RunController::problem);
    Q_EMIT w.controller().notice(
        "stage2: up to the first step, ATen's form ran where a fused kernel is registered");
    QCOMPARE(w.statusBar()->currentMessage(),
             QString("stage2: up to the first step, ATen's form ran where a fused kernel is registered"));
    QCOMPARE(problems.count(), 0);
  }

  void invalid_fields_are_refused() {
    gui::MainWindow w(options());
    auto& panel = w.run_panel();
    set_tiny_recipe(panel, corpus_, 2, 2);
    QVERIFY(panel.recipe().has_value());
    panel.set_field("data.context", "-5");
    QVERIFY(!panel.recipe().has_value());
    QVERIFY2(panel.error().contains("data.context"), qPrintable(panel.error()));
    auto* start = panel.findChild<QPushButton*>("start");
    QVERIFY(start && !start->isEnabled());
    QVERIFY(!w.start_run());
    panel.set_field("data.context", "32");
    panel.set_field("stage2.kd_temperature", "abc");
    QVERIFY(!panel.recipe().has_value());
    QVERIFY2(panel.error().contains("kd_temperature"), qPrintable(panel.error()));
    panel.set_field("stage2.kd_temperature", "2");
    QVERIFY(panel.recipe().has_value());
    QVERIFY(start->isEnabled());
    // A teacher folder that does not exist: the run fails to start with a message, and no session is left.
    panel.set_teacher(QString::fromStdString((tmp_ / "no-such-teacher").string()));
    QSignalSpy problems(&w.controller(), &gui::RunController::problem);
    QVERIFY(w.start_run());
    QVERIFY(wait_until([&] { return w.controller().state() == UiRunState::Failed; }));
    QCOMPARE(problems.size(), 1);
    QVERIFY2(problems.at(0).at(1).toString().contains("no-such-teacher"),
             qPrintable(problems.at(0).at(1).toString()));
  }

  void random_sequences_end_cleanly() {
    // 200 random sequences of start / pause / resume / stop / close against one controller and window
    // each; every one must end with the run stopped or finished and the window closed.
    QRandomGenerator rng(1234);
    const int sequences = qEnvironmentVariableIntValue("HEDGELAB_GUI_SEQUENCES") > 0
                              ? qEnvironmentVariableIntValue("HEDGELAB_GUI_SEQUENCES")
                              : 200;
    for (int i = 0; i < sequences; ++i) {
      auto w = std::make_unique<gui::MainWindow>(options());
      set_tiny_recipe(w->run_panel(), corpus_, 2, 3, 0);
      const int ops = 2 + static_cast<int>(rng.bounded(6));
      for (int k = 0; k < ops; ++k) {
        switch (rng.bounded(5)) {
          case 0:
            w->start_run();
            break;
          case 1:
            w->controller().pause();
            break;
          case 2:
            w->controller().resume();
            break;
          case 3:
            w->controller().stop();
            break;
          case 4:
            w->controller().toggle_pause();
            break;
        }
        QTest::qWait(static_cast<int>(rng.bounded(60)));
      }
      QVERIFY2(w->close(), qPrintable(QString("sequence %1").arg(i)));  // stops and waits when a run is live
      QVERIFY2(
          !w->controller().active(),
          qPrintable(
              QString("sequence %1 left the run %2").arg(i).arg(gui::to_string(w->controller().state()))));
      w.reset();
    }
  }
};

QTEST_MAIN(TestGuiRun)
#include "test_gui_run.moc"
