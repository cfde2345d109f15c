// Sessions through hedgelab-cli: a run stopped at step k and resumed gives the same losses and the same final
// student as an uninterrupted one; export writes a folder eval loads or fails cleanly; a run killed with
// SIGKILL at 20 random moments leaves 20 sessions that open, holding every step printed more than 2 s
// before the kill, with a last complete checkpoint that loads and resumes.
#include <QtCore/qfloat16.h>
#include <QElapsedTimer>
#include <QProcess>
#include <QTest>
#include <csignal>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "sessions/checkpoints.h"
#include "sessions/session_reader.h"
#include "tests/cli_test_util.h"
#include "tests/test_util.h"

using hedgelab::testing::CliResult;
using hedgelab::testing::fixtures_dir;
using hedgelab::testing::q;
using hedgelab::testing::run_cli;
using hedgelab::testing::TempDir;
using hedgelab::testing::write_file;
namespace fs = std::filesystem;
namespace sessions = hedgelab::sessions;

namespace {

struct TinyRecipe {
  TempDir tmp;
  fs::path recipe = tmp / "tiny.json";
  explicit TinyRecipe(int64_t stage1_steps = 8, int64_t stage2_steps = 8, int64_t checkpoint_every = 3) {
    std::string text;
    for (int i = 0; i < 400; ++i)
      text += "The quick brown fox " + std::to_string(i % 17) + " jumps over the lazy dog.\n";
    write_file(tmp / "corpus.txt", text);
    const int64_t per_step = 16 * 2;
    nlohmann::json j = {{"name", "tiny"},
                        {"teacher", (fixtures_dir() / "gpt_neox_parallel").string()},
                        {"corpus", (tmp / "corpus.txt").string()},
                        {"data",
                         {{"context", 16},
                          {"batch_size", 2},
                          {"eval_every", 4},
                          {"eval_windows", 2},
                          {"probe_every", 5},
                          {"probe_text", "The quick brown fox"},
                          {"checkpoint_every", checkpoint_every}}},
                        {"model", {{"chunk", 8}}},
                        {"stage1", {{"tokens", stage1_steps * per_step}, {"warmup_steps", 1}}},
                        {"stage2", {{"tokens", stage2_steps * per_step}, {"warmup_steps", 1}}}};
    write_file(recipe, j.dump());
  }
};

bool has_steps(const sessions::SessionReader& r, const std::string& run, const std::string& stage) {
  for (const auto& s : r.contents().series)
    if (s.run == run && s.stage == stage && s.steps > 0) return true;
  return false;
}

double perplexity_of(const CliResult& r, const char* run) {
  for (const auto& row : nlohmann::json::parse(r.out)["runs"])
    if (row["run"] == run) return row["perplexity"].get<double>();
  return -1.0;
}

}  // namespace

class TestCliSessions : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void stop_resume_export() {
    TinyRecipe t;
    const auto full =
        run_cli({"distill", "--preset", q(t.recipe), "--session", q(t.tmp / "full.h5"), "--json"});
    QVERIFY2(full.exit_code == 0, full.err.c_str());
    for (int k : {5, 8, 11}) {
      const fs::path first = t.tmp / ("first-" + std::to_string(k) + ".h5");
      const fs::path second = t.tmp / ("second-" + std::to_string(k) + ".h5");
      auto r = run_cli({"distill", "--preset", q(t.recipe), "--session", q(first), "--stop-at-step",
                        QString::number(k), "--json"});
      QVERIFY2(r.exit_code == 0, r.err.c_str());
      r = run_cli({"distill", "--resume", q(first), "--session", q(second), "--json"});
      QVERIFY2(r.exit_code == 0, r.err.c_str());
      QCOMPARE(perplexity_of(r, "hedgemamba"), perplexity_of(full, "hedgemamba"));  // bit-identical
      // Every loss the continuation recorded equals the uninterrupted run's at the same step.
      auto a = sessions::SessionReader::open(t.tmp / "full.h5");
      auto b = sessions::SessionReader::open(second);
      for (const char* stage : {"stage1", "stage2"}) {
        if (!has_steps(b, "hedgemamba", stage)) continue;
        const auto sa = a.steps("hedgemamba", stage), sb = b.steps("hedgemamba", stage);
        for (const auto& row : sb) {
          QVERIFY(row.step >= 1 && row.step <= int64_t(sa.size()));
          QCOMPARE(row.total, sa[size_t(row.step - 1)].total);
        }
      }
    }
    // Export the finished run; eval loads it.
    auto r = run_cli({"export", "--session", q(t.tmp / "full.h5"), "--out", q(t.tmp / "student"), "--json"});
    QVERIFY2(r.exit_code == 0, r.err.c_str());
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"})
      QVERIFY2(fs::exists(t.tmp / "student" / f), f);
    r = run_cli({"eval", "--checkpoint", q(t.tmp / "student"), "--corpus", q(t.tmp / "corpus.txt"),
                 "--context", "16", "--json"});
    QVERIFY2(r.exit_code == 0, r.err.c_str());
    // Refusals: a non-empty destination, a destination under a file; nothing half-written left behind.
    r = run_cli({"export", "--session", q(t.tmp / "full.h5"), "--out", q(t.tmp / "student")});
    QCOMPARE(r.exit_code, 1);
    QVERIFY(r.err.find("not empty") != std::string::npos);
    write_file(t.tmp / "blocker", "a file");
    r = run_cli({"export", "--session", q(t.tmp / "full.h5"), "--out", q(t.tmp / "blocker" / "student")});
    QCOMPARE(r.exit_code, 1);
    QVERIFY2(r.err.find("blocker") != std::string::npos, r.err.c_str());
    for (const auto& e : fs::directory_iterator(t.tmp.path()))
      QVERIFY2(e.path().filename().string().find(".partial") == std::string::npos, e.path().c_str());
    r = run_cli({"export", "--session", q(t.tmp / "corpus.txt"), "--out", q(t.tmp / "x")});
    QCOMPARE(r.exit_code, 1);
    QVERIFY2(r.err.find("corpus.txt") != std::string::npos, r.err.c_str());
    r = run_cli({"distill", "--resume", q(t.tmp / "nothing.h5")});
    QCOMPARE(r.exit_code, 1);
    QVERIFY2(r.err.find("nothing.h5") != std::string::npos, r.err.c_str());
  }

  void sigkill_at_random_moments_leaves_sessions_that_open() {
    TinyRecipe t(250, 250, 20);
    std::mt19937 rng(20261122);
    std::uniform_int_distribution<int> delay_ms(1500, 7000);
    int with_checkpoint = 0, checked_runs = 0;
    fs::path resumable;
    for (int i = 0; i < 20; ++i) {
      const fs::path session = t.tmp / ("killed-" + std::to_string(i) + ".h5");
      QProcess p;
      p.start(HEDGELAB_CLI_PATH, {"--threads", "1", "--log-level", "off", "distill", "--preset", q(t.recipe),
                                  "--session", q(session), "--progress", "jsonl"});
      QVERIFY(p.waitForStarted());
      const int delay = delay_ms(rng);
      QElapsedTimer clock;
      clock.start();
      while (clock.elapsed() < delay && p.state() == QProcess::Running)
        p.waitForReadyRead(std::max<int>(1, delay - int(clock.elapsed())));
      const double kill_time = sessions::unix_now();
      // Only a running child: a finished one has processId() 0, and kill(0, …) would signal this test's own
      // process group (the test, ctest and whatever started them).
      const qint64 pid = p.processId();
      if (p.state() == QProcess::Running && pid > 0) ::kill(static_cast<pid_t>(pid), SIGKILL);
      p.waitForFinished();
      const std::string out = p.readAllStandardOutput().toStdString();
      if (!fs::exists(session)) continue;  // killed before the session was created: nothing to lose
      auto reader = sessions::SessionReader::open(session);  // throws (fails the test) if it does not open
      std::map<std::string, std::set<int64_t>> stored;
      for (const char* stage : {"stage1", "stage2"})
        if (has_steps(reader, "hedgemamba", stage))
          for (const auto& row : reader.steps("hedgemamba", stage))
            stored[stage].insert(row.step);
      size_t old_lines = 0;
      std::istringstream lines(out);
      for (std::string line; std::getline(lines, line);) {
        nlohmann::json j;
        try {
          j = nlohmann::json::parse(line);
        } catch (const std::exception&) {
          continue;  // the line the kill cut short
        }
        if (j["time"].get<double>() > kill_time - 2.0) continue;
        ++old_lines;
        const std::string stage = j["stage"];
        QVERIFY2(stored[stage].count(j["step"].get<int64_t>()),
                 (session.string() + ": " + stage + " step " + std::to_string(j["step"].get<int64_t>()) +
                  " printed more than 2 s before the kill is missing")
                     .c_str());
      }
      if (old_lines > 0) ++checked_runs;
      auto checkpoint = sessions::load_last_complete_checkpoint(reader, "hedgemamba");
      if (checkpoint) {
        ++with_checkpoint;
        QCOMPARE(checkpoint->meta["format"].get<std::string>(), std::string("hedgelab_run_checkpoint"));
        QVERIFY(!checkpoint->tensors.empty());
        resumable = session;
      }
      qInfo("kill %d after %d ms: %zu steps stored, %zu older than 2 s checked, checkpoint %s", i, delay,
            stored["stage1"].size() + stored["stage2"].size(), old_lines,
            checkpoint ? (checkpoint->stage + " " + std::to_string(checkpoint->step)).c_str() : "none");
    }
    QVERIFY2(with_checkpoint >= 5, "too few kills came after the first checkpoint: the test lost its teeth");
    QVERIFY2(checked_runs >= 5, "too few kills came 2 s after the first step: the test lost its teeth");
    // A killed run resumes to the same end as an uninterrupted one.
    const auto full =
        run_cli({"distill", "--preset", q(t.recipe), "--session", q(t.tmp / "full.h5"), "--json"});
    QVERIFY2(full.exit_code == 0, full.err.c_str());
    const auto resumed = run_cli({"distill", "--resume", q(resumable), "--json"});
    QVERIFY2(resumed.exit_code == 0, resumed.err.c_str());
    QCOMPARE(perplexity_of(resumed, "hedgemamba"), perplexity_of(full, "hedgemamba"));
  }
};

QTEST_GUILESS_MAIN(TestCliSessions)
#include "test_cli_sessions.moc"
