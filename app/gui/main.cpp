// hedgelab: the desktop lab. Parses the command line, builds the window and, for --screenshot, renders it to
// a PNG once the session is open or the demo run has reached its step, then exits.
#include <spdlog/spdlog.h>
#include <torch/cuda.h>

#include <QApplication>
#include <QCommandLineParser>
#include <QTimer>
#include <cstdio>

#include "app/gui/about.h"
#include "app/gui/appearance.h"
#include "app/gui/main_window.h"
#include "app/gui/screenshot.h"

using namespace hedgelab::gui;

int main(int argc, char** argv) {
  QApplication::setHighDpiScaleFactorRoundingPolicy(Qt::HighDpiScaleFactorRoundingPolicy::PassThrough);
  QApplication app(argc, argv);
  QApplication::setOrganizationName("HedgeLab");
  QApplication::setApplicationName("hedgelab");
  QApplication::setApplicationVersion(HEDGELAB_VERSION);
  QApplication::setDesktopFileName("org.hedgelab.HedgeLab");

  QCommandLineParser parser;
  parser.setApplicationDescription(
      "HedgeLab: distil a Transformer teacher into a HedgeMamba student and watch it learn, layer by layer.\n"
      "Without options it opens the window; runs are recorded as HDF5 sessions.");
  parser.addHelpOption();
  parser.addVersionOption();
  const QCommandLineOption demo("demo",
                                "Load the demo teacher and preset, turn teaching mode on and start the run.");
  const QCommandLineOption run_steps("run-steps", "With --demo: stop (resumable) after N steps.", "N");
  const QCommandLineOption open("open", "Open a session file (repeat for several).", "SESSION");
  const QCommandLineOption screenshot("screenshot", "Render the window (or --view) to PATH (PNG) and exit.",
                                      "PATH");
  const QCommandLineOption view("view",
                                "With --screenshot: the view to render (window, run, loss, alignment, "
                                "comparison, attention, kernel, mamba, inspector).",
                                "NAME", "window");
  const QCommandLineOption sessions("sessions-folder", "Where new sessions are written.", "DIR");
  const QCommandLineOption teaching("teaching",
                                    "Teaching mode: larger fonts and explanations beside the views.");
  const QCommandLineOption theme("theme", "system (default), dark or light.", "THEME");
  const QCommandLineOption fresh("no-settings", "Neither read nor write the saved layout and choices.");
  parser.addOptions({demo, run_steps, open, screenshot, view, sessions, teaching, theme, fresh});
  parser.process(app);

  bool ok = true;
  const qint64 steps = parser.value(run_steps).isEmpty() ? 0 : parser.value(run_steps).toLongLong(&ok);
  if (!ok || steps < 0) {
    std::fprintf(stderr, "hedgelab: --run-steps: expected a number of steps >= 0, got '%s'\n",
                 qPrintable(parser.value(run_steps)));
    return 2;
  }
  const bool shooting = parser.isSet(screenshot);
  if (shooting && !parser.isSet(open) && !parser.isSet(demo)) {
    std::fprintf(stderr, "hedgelab: --screenshot needs --open SESSION or --demo --run-steps N\n");
    return 2;
  }

  WindowOptions options;
  options.cuda_available = torch::cuda::is_available();
  options.sessions_folder = parser.value(sessions);
  options.teaching = parser.isSet(teaching);
  options.restore_settings = !parser.isSet(fresh) && !shooting;
  MainWindow window(options);
  if (parser.isSet(theme)) apply_theme(theme_from_string(parser.value(theme)));
  window.resize(1600, 1000);
  window.show();
  spdlog::info("{}", version_line().toStdString());

  for (const QString& path : parser.values(open)) {
    QString error;
    if (!window.open_session(path, shooting ? &error : nullptr) && shooting) {
      std::fprintf(stderr, "hedgelab: %s\n", qPrintable(error));
      return 1;
    }
  }
  if (parser.isSet(demo)) window.start_demo(shooting && steps == 0 ? 20 : steps);
  if (!shooting) return app.exec();

  // --screenshot: wait for the demo run to reach its step (or the session to be shown), then render.
  int exit_code = 0;
  auto shoot = [&] {
    QString error;
    if (!save_screenshot(window, parser.value(view), parser.value(screenshot), &error)) {
      std::fprintf(stderr, "hedgelab: %s\n", qPrintable(error));
      exit_code = 1;
    } else {
      std::printf("%s\n", qPrintable(parser.value(screenshot)));
    }
    window.close();
    app.exit(exit_code);
  };
  if (parser.isSet(demo)) {
    QObject::connect(&window.controller(), &RunController::state_changed, &app, [&](UiRunState s) {
      if (s == UiRunState::Stopped || s == UiRunState::Finished) QTimer::singleShot(300, &app, shoot);
      if (s == UiRunState::Failed) {
        std::fprintf(stderr, "hedgelab: the demo run failed: %s\n",
                     qPrintable(window.controller().last_message()));
        app.exit(1);
      }
    });
  } else {
    QTimer::singleShot(300, &app, shoot);
  }
  return app.exec();
}
