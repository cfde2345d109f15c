// The desktop lab while the demo trains: the UI thread's event-loop latency (a 10 ms timer's lateness, p50 /
// p99 / max) with every view visible and redrawing, and the training time of the same steps in the window
// against hedgelab-cli on the same preset (wall time of the run at the last step, from each session).
//
//   bench_gui_latency [--steps N] [--cli PATH] [--show VIEW]   (under xvfb-run; --show inspector brings the
//   OpenGL inspector to the front, which switches the window to OpenGL composition)
#include <QApplication>
#include <QDockWidget>
#include <QElapsedTimer>
#include <QProcess>
#include <QTimer>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "app/gui/main_window.h"
#include "app/gui/run_panel.h"
#include "sessions/session_reader.h"

using namespace hedgelab;

namespace {
double wall_at_last_step(const std::string& session) {
  auto r = sessions::SessionReader::open(session);
  double wall = 0.0;
  for (const char* stage : {"stage1", "stage2"}) {
    try {
      const auto s = r.metric("hedgemamba", stage, "wall_seconds");
      if (!s.values.empty()) wall = s.values.back();
    } catch (const std::exception&) {
    }
  }
  return wall;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}
}  // namespace

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QApplication::setOrganizationName("HedgeLabBench");
  qint64 steps = 400;
  QString cli, show;
  const QStringList args = app.arguments();
  for (int i = 1; i + 1 < args.size(); ++i) {
    if (args[i] == "--steps") steps = args[i + 1].toLongLong();
    if (args[i] == "--cli") cli = args[i + 1];
    if (args[i] == "--show") show = args[i + 1];
  }
  const auto dir = std::filesystem::temp_directory_path() /
                   ("hedgelab-bench-gui-" + std::to_string(QCoreApplication::applicationPid()));
  std::filesystem::create_directories(dir);

  gui::WindowOptions o;
  o.sessions_folder = QString::fromStdString((dir / "gui").string());
  o.restore_settings = false;
  gui::MainWindow window(o);
  window.resize(1600, 1000);
  window.show();
  window.run_panel().set_preset("demo");
  if (!show.isEmpty()) {
    for (QWidget* w = window.view_widget(show); w; w = w->parentWidget())
      if (auto* dock = qobject_cast<QDockWidget*>(w)) {
        dock->show();
        dock->raise();
      }
    std::printf("showing %s\n", qPrintable(show));
  }

  // The probe: a 10 ms timer on the UI thread; its lateness is the event loop's latency.
  std::vector<double> late_ms;
  QElapsedTimer clock;
  qint64 last = -1;
  QTimer probe;
  probe.setTimerType(Qt::PreciseTimer);
  probe.setInterval(10);
  QObject::connect(&probe, &QTimer::timeout, [&] {
    const qint64 now = clock.nsecsElapsed();
    if (last >= 0) late_ms.push_back(std::max(0.0, (now - last) * 1e-6 - 10.0));
    last = now;
  });
  QObject::connect(&window.controller(), &gui::RunController::state_changed, [&](gui::UiRunState s) {
    if (s == gui::UiRunState::Running && !probe.isActive()) {
      clock.start();
      probe.start();
    }
    if (s == gui::UiRunState::Stopped || s == gui::UiRunState::Finished || s == gui::UiRunState::Failed) {
      probe.stop();
      app.quit();
    }
  });
  window.start_run(steps);
  app.exec();
  const std::string gui_session = window.controller().info().session_path.toStdString();
  const double gui_wall = wall_at_last_step(gui_session);
  std::printf(
      "UI event-loop latency over %zu ticks of a 10 ms timer: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
      late_ms.size(), percentile(late_ms, 0.5), percentile(late_ms, 0.99),
      late_ms.empty() ? 0.0 : *std::max_element(late_ms.begin(), late_ms.end()));
  std::printf("GUI: %lld steps of the demo preset in %.1f s (session wall time)\n",
              static_cast<long long>(steps), gui_wall);
  if (!cli.isEmpty()) {
    const std::string cli_session = (dir / "cli.h5").string();
    QProcess p;
    p.setProcessChannelMode(QProcess::ForwardedErrorChannel);
    p.start(cli, {"distill", "--preset", "demo", "--stop-at-step", QString::number(steps), "--session",
                  QString::fromStdString(cli_session), "--progress", "jsonl"});
    p.waitForFinished(-1);
    const double cli_wall = wall_at_last_step(cli_session);
    std::printf("CLI: %lld steps in %.1f s; the GUI took %+.1f%%\n", static_cast<long long>(steps), cli_wall,
                100.0 * (gui_wall / cli_wall - 1.0));
  }
  std::filesystem::remove_all(dir);
  return 0;
}
