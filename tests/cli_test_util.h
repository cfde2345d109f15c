// Running hedgelab-cli as a process from a test (the executable's path comes from HEDGELAB_CLI_PATH).
#pragma once

#include <QtCore/qfloat16.h>
#include <QProcess>
#include <QString>
#include <QStringList>
#include <filesystem>
#include <string>

namespace hedgelab::testing {

struct CliResult {
  int exit_code = -1;  // -1 when the process crashed or was killed
  std::string out, err;
};

// `hedgelab-cli --threads 1 --log-level off ARGS…`, killed after `timeout_ms`.
inline CliResult run_cli(const QStringList& args, int timeout_ms = 240000) {
  QProcess p;
  QStringList all{"--threads", "1", "--log-level", "off"};
  all += args;
  p.start(HEDGELAB_CLI_PATH, all);
  if (!p.waitForFinished(timeout_ms)) {
    p.kill();
    p.waitForFinished();
  }
  CliResult r;
  r.exit_code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
  r.out = p.readAllStandardOutput().toStdString();
  r.err = p.readAllStandardError().toStdString();
  return r;
}

inline QString q(const std::filesystem::path& p) {
  return QString::fromStdString(p.string());
}

}  // namespace hedgelab::testing
