// Live knobs of a run (DistillRun::request_knobs): an edit changes the learning rate and the stage-2 loss
// weights from the next step on (checked against the schedule and the weighted sum of the reported parts),
// is reported to observers and recorded as a session "knob" event, survives a checkpoint and resume bit for
// bit, changes the probe interval, and bad values are refused.
#include <QTest>
#include <cmath>
#include <functional>
#include <map>

#include "core/run/distill_run.h"
#include "core/train/lr_schedule.h"
#include "sessions/session_reader.h"
#include "sessions/session_recorder.h"
#include "sessions/session_writer.h"
#include "tests/distill_fixture.h"
#include "tests/test_util.h"

using namespace hedgelab;

namespace {

using Fixture = testing::DistillFixture;

struct Step {
  std::string stage;
  snapshot::StepReport report;
};

// Records steps, knob reports, probes and checkpoints; `after_step` may request edits on the run's thread.
struct Recorder : run::RunObserver {
  std::vector<Step> steps;
  std::vector<std::string> knobs;  // "stage2 2"
  std::vector<snapshot::KnobEdit> applied;
  std::vector<std::string> probes;
  std::vector<run::Checkpoint> checkpoints;
  std::function<void(const std::string&, int64_t)> after_step;

  void on_step(const std::string& stage, const snapshot::StepReport& r) override {
    steps.push_back({stage, r});
    if (after_step) after_step(stage, r.step);
  }
  void on_knobs(const std::string& stage, int64_t step, const snapshot::KnobEdit& e) override {
    knobs.push_back(stage + " " + std::to_string(step));
    applied.push_back(e);
  }
  void on_probe(const snapshot::ProbeSnapshot& s) override {
    probes.push_back(s.stage + ":" + std::to_string(s.step));
  }
  void on_checkpoint(const run::Checkpoint& c, const std::string&) override { checkpoints.push_back(c); }

  const snapshot::StepReport& at(const std::string& stage, int64_t step) const {
    for (const auto& s : steps)
      if (s.stage == stage && s.report.step == step) return s.report;
    throw std::runtime_error("no step " + stage + " " + std::to_string(step));
  }
  std::vector<std::string> lines() const {  // every step to the last bit
    std::vector<std::string> out;
    char buf[64];
    for (const auto& s : steps) {
      std::string line = s.stage + " " + std::to_string(s.report.step);
      std::snprintf(buf, sizeof buf, " %.17g %.17g", s.report.total, s.report.lr);
      line += buf;
      for (const auto& [n, v] : s.report.parts) {
        std::snprintf(buf, sizeof buf, " %.17g", v);
        line += " " + n + buf;
      }
      out.push_back(line);
    }
    return out;
  }
};

double part(const snapshot::StepReport& r, const std::string& name) {
  for (const auto& [n, v] : r.parts)
    if (n == name) return v;
  throw std::runtime_error("no part " + name);
}

// The weighted total of a stage-2 report recomputed from its unweighted parts (no align parts here).
double weighted_total(const snapshot::StepReport& r, double ce_w, double kd_w) {
  return ce_w * part(r, "ce") + kd_w * part(r, "kd");
}

bool close(double a, double b, double rel = 1e-6) {
  return std::abs(a - b) <= rel * std::max(1.0, std::max(std::abs(a), std::abs(b)));
}

snapshot::KnobEdit stage2_edit() {
  snapshot::KnobEdit e;
  e.lr = 2.5e-3;
  e.ce_weight = 0.25;
  e.kd_weight = 3.0;
  e.kd_temperature = 2.0;
  return e;
}

}  // namespace

class TestKnobs : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void an_edit_holds_from_the_next_step() {
    Fixture f;
    auto r = f.recipe();
    QVERIFY(r.stage2.align_weight == 0.0);  // the totals below are CE and KD alone
    Recorder base, edited;
    run::DistillRun a(r, f.teacher, f.corpus, f.probe(r), &base);
    a.run();
    run::DistillRun b(r, f.teacher, f.corpus, f.probe(r), &edited);
    snapshot::KnobEdit s1;
    s1.lr = 4e-3;
    edited.after_step = [&](const std::string& stage, int64_t step) {
      if (stage == "stage1" && step == 3) b.request_knobs(s1);
      if (stage == "stage2" && step == 2) b.request_knobs(stage2_edit());
    };
    QCOMPARE(b.run(), snapshot::RunState::Finished);
    QCOMPARE(edited.knobs, (std::vector<std::string>{"stage1 3", "stage2 2"}));
    QCOMPARE(*edited.applied[1].kd_temperature, 2.0);
    QVERIFY(!edited.applied[0].ce_weight);  // only what was asked
    // Up to the first edit the runs agree to the bit.
    for (int64_t k = 1; k <= 3; ++k)
      QCOMPARE(edited.at("stage1", k).total, base.at("stage1", k).total);
    // Stage 1 from step 4: the schedule with peak 4e-3 and min_lr scaled alike.
    train::WarmupCosine s = r.stage1_schedule();
    const double scale = 4e-3 / s.peak_lr;
    s.peak_lr = 4e-3;
    s.min_lr *= scale;
    for (int64_t k = 4; k <= 8; ++k) {
      QVERIFY(close(edited.at("stage1", k).lr, s.at(k - 1), 1e-12));
      QVERIFY(close(edited.at("stage1", k).lr, base.at("stage1", k).lr * scale, 1e-9));
    }
    QCOMPARE(edited.at("stage1", 3).lr, base.at("stage1", 3).lr);
    // Stage 2 keeps the recipe's schedule until its own edit (the stage-1 lr was that stage's).
    QCOMPARE(edited.at("stage2", 1).lr, r.stage2_schedule().at(0));
    const auto& s2 = r.stage2;
    for (int64_t k = 1; k <= 2; ++k) {
      const auto& rep = edited.at("stage2", k);
      QVERIFY(close(rep.total, weighted_total(rep, s2.ce_weight, s2.kd_weight)));
    }
    train::WarmupCosine t = r.stage2_schedule();
    t.min_lr *= 2.5e-3 / t.peak_lr;
    t.peak_lr = 2.5e-3;
    for (int64_t k = 3; k <= 6; ++k) {
      const auto& rep = edited.at("stage2", k);
      QVERIFY2(close(rep.total, weighted_total(rep, 0.25, 3.0)), std::to_string(k).c_str());
      QVERIFY(!close(rep.total, weighted_total(rep, s2.ce_weight, s2.kd_weight)));
      QVERIFY(close(rep.lr, t.at(k - 1), 1e-12));
    }
    const auto now = b.knob_values();
    QCOMPARE(*now.lr, 2.5e-3);
    QCOMPARE(*now.ce_weight, 0.25);
    QCOMPARE(*now.kd_weight, 3.0);
    QCOMPARE(*now.kd_temperature, 2.0);
    QCOMPARE(*now.probe_every, r.data.probe_every);
  }

  void the_temperature_changes_the_kd_part() {
    // τ enters only through the KD term: with a first-step edit of τ alone, CE agrees to the bit and KD not.
    Fixture f;
    auto r = f.recipe();
    r.stage1.tokens = 0;  // straight into stage 2
    Recorder base, edited;
    run::DistillRun a(r, f.teacher, f.corpus, f.probe(r), &base);
    a.run();
    run::DistillRun b(r, f.teacher, f.corpus, f.probe(r), &edited);
    snapshot::KnobEdit e;
    e.kd_temperature = 4.0;
    b.request_knobs(e);  // pending before the run: applied before step 1
    b.run();
    QCOMPARE(edited.knobs, (std::vector<std::string>{"stage2 0"}));
    QCOMPARE(part(edited.at("stage2", 1), "ce"), part(base.at("stage2", 1), "ce"));
    QVERIFY(part(edited.at("stage2", 1), "kd") != part(base.at("stage2", 1), "kd"));
  }

  void edits_survive_checkpoint_and_resume() {
    Fixture f;
    auto r = f.recipe();
    auto edit_at = [](run::DistillRun& run, Recorder& rec) {
      rec.after_step = [&run](const std::string& stage, int64_t step) {
        if (stage == "stage1" && step == 2) {
          snapshot::KnobEdit e;
          e.lr = 3e-3;
          e.probe_every = 2;
          run.request_knobs(e);
        }
        if (stage == "stage2" && step == 1) run.request_knobs(stage2_edit());
      };
    };
    Recorder full;
    run::DistillRun a(r, f.teacher, f.corpus, f.probe(r), &full);
    edit_at(a, full);
    a.run();
    for (int64_t stop : {5, 11}) {  // inside stage 1 (its lr edited), inside stage 2 (everything edited)
      Recorder first, second;
      run::DistillRun b(r, f.teacher, f.corpus, f.probe(r), &first);
      edit_at(b, first);
      QCOMPARE(b.run(stop), snapshot::RunState::Finished);
      const run::Checkpoint cp = first.checkpoints.back();
      QVERIFY(cp.meta.contains("knobs"));
      QCOMPARE(cp.meta["knobs"]["stage1_lr"].get<double>(), 3e-3);
      run::DistillRun c(r, f.teacher, f.corpus, f.probe(r), &second);
      edit_at(c, second);  // the edits still ahead of the checkpoint (none at 11)
      c.restore(cp);
      QCOMPARE(c.knob_values().probe_every.value(), int64_t(2));
      c.run();
      auto joined = first.lines();
      const auto rest = second.lines();
      joined.insert(joined.end(), rest.begin(), rest.end());
      QCOMPARE(joined, full.lines());
      QCOMPARE(c.summary().perplexity, a.summary().perplexity);
    }
    // The probe interval of 2 from stage-1 step 3 on: 0, 2 (interval 3 before the edit: step 3 is not a
    // multiple of 2), 4, 6, 8 (last); stage 2 at 0, 2, 4, 6.
    QCOMPARE(full.probes, (std::vector<std::string>{"stage1:0", "stage1:4", "stage1:6", "stage1:8",
                                                    "stage2:0", "stage2:2", "stage2:4", "stage2:6"}));
  }

  void sessions_record_knob_events() {
    Fixture f;
    auto r = f.recipe();
    testing::TempDir dir;
    const auto probe = f.probe(r);
    auto writer = sessions::SessionWriter::create(
        dir / "knobs.h5", sessions::make_provenance(),
        sessions::layout_for(r, f.teacher->config(), static_cast<int64_t>(probe.ids.size())));
    sessions::SessionRecorder recorder(writer, "hedgemamba");
    Recorder rec;
    run::ObserverList observers;
    observers.add(&recorder);
    observers.add(&rec);
    run::DistillRun run(r, f.teacher, f.corpus, probe, &observers);
    rec.after_step = [&](const std::string& stage, int64_t step) {
      if (stage == "stage2" && step == 4) run.request_knobs(stage2_edit());
    };
    run.run();
    writer.close();
    const auto events = sessions::SessionReader::open(dir / "knobs.h5").events();
    std::vector<nlohmann::json> knobs;
    for (const auto& e : events) {
      if (e.kind == "knob") knobs.push_back(e.detail);
      QVERIFY(e.kind != "notice");  // a CPU run has no fused kernel to miss
    }
    QCOMPARE(knobs.size(), size_t(1));
    const auto& d = knobs[0];
    QCOMPARE(d["stage"].get<std::string>(), std::string("stage2"));
    QCOMPARE(d["step"].get<int64_t>(), int64_t(4));
    QCOMPARE(d["lr"].get<double>(), 2.5e-3);
    QCOMPARE(d["ce_weight"].get<double>(), 0.25);
    QCOMPARE(d["kd_weight"].get<double>(), 3.0);
    QCOMPARE(d["kd_temperature"].get<double>(), 2.0);
    QVERIFY(!d.contains("align_weight") && !d.contains("probe_every"));
  }

  // A notice (run::RunObserver::on_notice: on CUDA, the fused kernels a stage's first step did not take)
  // passes through an ObserverList to every observer and is recorded as a session "notice" event.
  void sessions_record_notices() {
    Fixture f;
    auto r = f.recipe();
    testing::TempDir dir;
    auto writer = sessions::SessionWriter::create(
        dir / "notice.h5", sessions::make_provenance(),
        sessions::layout_for(r, f.teacher->config(), static_cast<int64_t>(f.probe(r).ids.size())));
    sessions::SessionRecorder recorder(writer, "hedgemamba");
    struct Heard : run::RunObserver {
      std::vector<std::string> notices;
      void on_notice(const std::string& stage, const std::string& text) override {
        notices.push_back(stage + ": " + text);
      }
    } heard;
    run::ObserverList observers;
    observers.add(&recorder);
    observers.add(&heard);
    observers.on_notice("stage2", "mixer_output unsupported 16");
    writer.close();
    QCOMPARE(heard.notices, std::vector<std::string>{"stage2: mixer_output unsupported 16"});
    const auto events = sessions::SessionReader::open(dir / "notice.h5").events();
    QCOMPARE(events.size(), size_t(1));
    QCOMPARE(events[0].kind, std::string("notice"));
    QCOMPARE(events[0].detail["run"].get<std::string>(), std::string("hedgemamba"));
    QCOMPARE(events[0].detail["stage"].get<std::string>(), std::string("stage2"));
    QCOMPARE(events[0].detail["text"].get<std::string>(), std::string("mixer_output unsupported 16"));
  }

  void bad_values_are_refused() {
    Fixture f;
    auto r = f.recipe();
    run::DistillRun run(r, f.teacher, f.corpus, f.probe(r));
    snapshot::KnobEdit e;
    e.lr = -1.0;
    HL_EXPECT_ERROR(run.request_knobs(e), "knob lr", "> 0");
    e = {};
    e.kd_weight = std::nan("");
    HL_EXPECT_ERROR(run.request_knobs(e), "knob kd_weight", ">= 0");
    e = {};
    e.kd_temperature = 0.0;
    HL_EXPECT_ERROR(run.request_knobs(e), "knob kd_temperature");
    e = {};
    e.probe_every = -2;
    HL_EXPECT_ERROR(run.request_knobs(e), "knob probe_every");
    QVERIFY(run.knob_values().lr == r.stage1_schedule().peak_lr);  // nothing applied
    auto quiet = r;
    quiet.data.probe_every = 0;
    run::DistillRun no_probe(quiet, f.teacher, f.corpus, run::ProbeText{});
    e = {};
    e.probe_every = 2;
    HL_EXPECT_ERROR(no_probe.request_knobs(e), "knob probe_every", "no probe text");
  }
};

QTEST_APPLESS_MAIN(TestKnobs)
#include "test_knobs.moc"
