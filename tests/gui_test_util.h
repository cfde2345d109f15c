// What the GUI suites share: a tiny recipe on the demo teacher (a corpus file of ~10K tokens, windows of 32
// tokens, 2 per step) so that runs take seconds, and waiting on the event loop with a deadline.
#pragma once

#include <QCoreApplication>
#include <QElapsedTimer>
#include <QTest>
#include <functional>
#include <string>

#include "app/gui/main_window.h"
#include "app/gui/run_panel.h"
#include "tests/test_util.h"

namespace hedgelab::testing {

inline std::filesystem::path write_tiny_corpus(const TempDir& tmp) {
  std::string text;
  for (int i = 0; i < 250; ++i)
    text += "In the beginning " + std::to_string(i % 17) + " the earth was without form, and void.\n";
  const auto path = tmp / "corpus.txt";
  write_file(path, text);
  return path;
}

// The run panel set to the demo preset on the tiny corpus: `stage1` and `stage2` steps of 2 × 32 tokens.
inline void set_tiny_recipe(gui::RunPanel& panel, const std::filesystem::path& corpus, int stage1, int stage2,
                            int probe_every = 2) {
  panel.set_preset("demo");
  panel.set_teacher({});
  panel.set_corpus(QString::fromStdString(corpus.string()));
  panel.set_field("data.context", "32");
  panel.set_field("data.batch_size", "2");
  panel.set_field("data.accumulation", "1");
  panel.set_field("stage1.tokens", QString::number(stage1 * 64));
  panel.set_field("stage2.tokens", QString::number(stage2 * 64));
  panel.set_field("data.eval_every", "3");
  panel.set_field("data.probe_every", QString::number(probe_every));
  panel.set_field("data.checkpoint_every", "4");
}

// Turns the event loop until `done` or `ms` passed; true when done.
inline bool wait_until(const std::function<bool()>& done, int ms = 60000) {
  QElapsedTimer t;
  t.start();
  while (!done()) {
    if (t.elapsed() > ms) return false;
    QCoreApplication::processEvents(QEventLoop::AllEvents, 20);
    QTest::qWait(5);
  }
  return true;
}

}  // namespace hedgelab::testing
