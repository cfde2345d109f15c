// hedgelab as a user starts it, under Xvfb: --screenshot of the window mid-run (the demo stopped after a few
// steps) and of one view from the saved session are written and not blank; --help and --version answer;
// bad arguments fail with a one-line message.
#include <QImage>
#include <QProcess>
#include <QTest>
#include <set>

#include "tests/test_util.h"

using namespace hedgelab::testing;

namespace {
struct Result {
  int code = -1;
  QString out, err;
};

Result run_gui(const QStringList& args, int timeout_ms = 300000) {
  QProcess p;
  p.start(HEDGELAB_GUI_PATH, args);
  Result r;
  if (!p.waitForFinished(timeout_ms)) {
    p.kill();
    p.waitForFinished();
    r.err = "timed out";
    return r;
  }
  r.code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
  r.out = QString::fromUtf8(p.readAllStandardOutput());
  r.err = QString::fromUtf8(p.readAllStandardError());
  return r;
}

// Distinct colours in a sample of the image: a rendered window has many.
int colours(const QString& path) {
  const QImage image(path);
  std::set<QRgb> seen;
  for (int y = 0; y < image.height(); y += 4)
    for (int x = 0; x < image.width(); x += 4)
      seen.insert(image.pixel(x, y));
  return static_cast<int>(seen.size());
}
}  // namespace

class TestGuiScreenshot : public QObject {
  Q_OBJECT
  TempDir tmp_;

 private Q_SLOTS:
  void help_and_version() {
    Result r = run_gui({"--version"}, 60000);
    QCOMPARE(r.code, 0);
    QVERIFY2(r.out.contains("hedgelab"), qPrintable(r.out));
    r = run_gui({"--help"}, 60000);
    QCOMPARE(r.code, 0);
    QVERIFY(r.out.contains("--screenshot"));
    r = run_gui({"--screenshot", (tmp_ / "x.png").c_str()}, 60000);
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("--open SESSION or --demo"), qPrintable(r.err));
    r = run_gui({"--demo", "--run-steps", "many"}, 60000);
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("--run-steps"), qPrintable(r.err));
  }

  void window_mid_run_and_views_of_the_session() {
    const QString shot = QString::fromStdString((tmp_ / "window.png").string());
    const QString runs = QString::fromStdString((tmp_ / "runs").string());
    Result r = run_gui({"--screenshot", shot, "--demo", "--run-steps", "6", "--sessions-folder", runs});
    QVERIFY2(r.code == 0, qPrintable(r.err.right(2000)));
    QVERIFY2(colours(shot) > 50, qPrintable(QString::number(colours(shot))));
    QImage image(shot);
    QVERIFY(image.width() >= 800 && image.height() >= 600);

    // The demo's session, reopened: each view renders from it.
    QStringList sessions;
    for (const auto& e : std::filesystem::directory_iterator(tmp_ / "runs"))
      if (e.path().extension() == ".h5") sessions << QString::fromStdString(e.path().string());
    QCOMPARE(sessions.size(), 1);
    const QStringList views = {"loss",      "alignment", "run",   "comparison",
                               "attention", "kernel",    "mamba", "inspector"};
    for (const QString& view : views) {
      const QString path = QString::fromStdString((tmp_ / ("view-" + view.toStdString() + ".png")).string());
      r = run_gui({"--screenshot", path, "--open", sessions[0], "--view", view});
      QVERIFY2(r.code == 0, qPrintable(view + ": " + r.err.right(2000)));
      QVERIFY2(colours(path) > 8, qPrintable(view));
    }
    r = run_gui({"--screenshot", shot, "--open", sessions[0], "--view", "no-such-view"});
    QCOMPARE(r.code, 1);
    QVERIFY2(r.err.contains("no-such-view"), qPrintable(r.err));
    r = run_gui({"--screenshot", shot, "--open", (tmp_ / "missing.h5").c_str()});
    QCOMPARE(r.code, 1);
    QVERIFY2(r.err.contains("missing.h5"), qPrintable(r.err));
  }
};

QTEST_GUILESS_MAIN(TestGuiScreenshot)
#include "test_gui_screenshot.moc"
