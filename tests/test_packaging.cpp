// packaging/: the .desktop file and the AppStream metainfo pass their validators, and `cmake --install`
// places the binaries, presets, demo teacher, desktop file, metainfo and icon where the app finds them.
#include <QProcess>
#include <QStandardPaths>
#include <QTest>

#include "tests/test_util.h"

using namespace hedgelab::testing;

namespace {
int run(const QString& program, const QStringList& args, QString* output) {
  QProcess p;
  p.setProcessChannelMode(QProcess::MergedChannels);
  p.start(program, args);
  if (!p.waitForFinished(600000)) return -1;
  *output = QString::fromUtf8(p.readAll());
  return p.exitCode();
}
}  // namespace

class TestPackaging : public QObject {
  Q_OBJECT
  TempDir tmp_;

 private Q_SLOTS:
  void desktop_file_validates() {
    const QString tool = QStandardPaths::findExecutable("desktop-file-validate");
    if (tool.isEmpty()) QSKIP("desktop-file-validate is not installed (package desktop-file-utils)");
    QString out;
    QCOMPARE(run(tool, {HEDGELAB_PACKAGING_DIR "/org.hedgelab.HedgeLab.desktop"}, &out), 0);
    QVERIFY2(!out.contains("error"), qPrintable(out));
  }

  void metainfo_validates() {
    const QString tool = QStandardPaths::findExecutable("appstreamcli");
    if (tool.isEmpty()) QSKIP("appstreamcli is not installed (package appstream)");
    QString out;
    QVERIFY2(run(tool, {"validate", "--no-net", HEDGELAB_PACKAGING_DIR "/org.hedgelab.HedgeLab.metainfo.xml"},
                 &out) == 0,
             qPrintable(out));
  }

  void install_places_everything() {
    QString out;
    const QString prefix = QString::fromStdString((tmp_ / "prefix").string());
    QVERIFY2(run("cmake", {"--install", HEDGELAB_BUILD_DIR, "--prefix", prefix}, &out) == 0, qPrintable(out));
    for (const char* f :
         {"bin/hedgelab", "bin/hedgelab-cli", "share/hedgelab/presets/demo.json",
          "share/hedgelab/demo-teacher/model.safetensors", "share/applications/org.hedgelab.HedgeLab.desktop",
          "share/metainfo/org.hedgelab.HedgeLab.metainfo.xml",
          "share/icons/hicolor/scalable/apps/org.hedgelab.HedgeLab.svg"})
      QVERIFY2(std::filesystem::exists(tmp_ / "prefix" / f), f);
    // The installed CLI finds its presets and demo teacher through the install prefix.
    QProcess p;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.remove("HEDGELAB_RESOURCES_DIR");
    p.setProcessEnvironment(env);
    p.start(prefix + "/bin/hedgelab-cli", {"--version"});
    QVERIFY(p.waitForFinished(60000));
    QCOMPARE(p.exitCode(), 0);
  }
};

QTEST_GUILESS_MAIN(TestPackaging)
#include "test_packaging.moc"
