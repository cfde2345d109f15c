// The resumable run (core/run): it trains what the comparison runner trains, stops and resumes with
// bit-identical losses and weights, reports probes whose content can be checked against the models, and
// refuses checkpoints that do not fit.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <QTest>
#include <cmath>
#include <map>

#include "core/data/corpus.h"
#include "core/data/tokenizer_encoder.h"
#include "core/distill/recipe_run.h"
#include "core/io/checkpoint.h"
#include "core/io/tokenizer.h"
#include "core/run/distill_run.h"
#include "tests/distill_fixture.h"
#include "tests/test_util.h"

using namespace hedgelab;
using hedgelab::testing::fixtures_dir;

namespace {

using Fixture = testing::DistillFixture;

// Records everything a run reports.
struct Recorder : run::RunObserver {
  std::vector<std::string> steps;  // "stage1 3 <total bits> <parts bits>"
  std::map<std::string, std::vector<double>> totals;
  std::vector<snapshot::ProbeSnapshot> probes;
  std::vector<std::pair<run::Checkpoint, std::string>> checkpoints;
  std::vector<std::string> states;
  std::vector<std::string> stages;
  bool finished = false;

  void on_state(snapshot::RunState from, snapshot::RunState to, const std::string& reason) override {
    states.push_back(std::string(snapshot::to_string(from)) + ">" + snapshot::to_string(to));
  }
  void on_stage_start(const std::string& stage, int64_t total) override {
    stages.push_back(stage + ":" + std::to_string(total));
  }
  void on_step(const std::string& stage, const snapshot::StepReport& r) override {
    std::string line = stage + " " + std::to_string(r.step);
    char buf[64];
    std::snprintf(buf, sizeof buf, " %.17g", r.total);
    line += buf;
    for (const auto& [n, v] : r.parts) {
      std::snprintf(buf, sizeof buf, " %.17g", v);
      line += " " + n + buf;
    }
    steps.push_back(line);
    totals[stage].push_back(r.total);
  }
  void on_probe(const snapshot::ProbeSnapshot& s) override { probes.push_back(s); }
  void on_checkpoint(const run::Checkpoint& c, const std::string& why) override {
    checkpoints.emplace_back(c, why);
  }
  void on_finished(const snapshot::RunSummary&) override { finished = true; }
};

std::map<std::string, at::Tensor> parameters_of(const models::HedgeMambaStudent& s) {
  std::map<std::string, at::Tensor> out;
  models::HedgeMambaStudent h = s;
  for (const auto& p : h->named_parameters())
    out[p.key()] = p.value().detach().clone();
  return out;
}

bool bit_identical(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [n, t] : a)
    if (!b.count(n) || !at::equal(t, b.at(n))) return false;
  return true;
}

double max_abs_diff(const snapshot::Grid& a, const snapshot::Grid& b) {
  double m = 0.0;
  for (size_t i = 0; i < a.values.size(); ++i)
    m = std::max(m, std::abs(double(a.values[i]) - double(b.values[i])));
  return m;
}

}  // namespace

class TestRun : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void trains_what_the_comparison_runner_trains() {
    Fixture f;
    auto r = f.recipe();
    Recorder rec;
    run::DistillRun run(r, f.teacher, f.corpus, f.probe(r), &rec);
    QCOMPARE(run.run(), snapshot::RunState::Finished);
    QVERIFY(rec.finished);
    QCOMPARE(rec.totals["stage1"].size(), size_t(8));
    QCOMPARE(rec.totals["stage2"].size(), size_t(6));
    QCOMPARE(rec.stages, (std::vector<std::string>{"stage1:8", "stage2:6"}));
    distill::RecipeRunner runner(r, f.teacher, f.corpus);
    const auto want = runner.run_hedgemamba(r, "hedgemamba");
    QCOMPARE(run.summary().perplexity, want.perplexity);  // same steps, same data: bit-identical
    QCOMPARE(run.summary().stage1_tokens, int64_t(8 * 32));
    QCOMPARE(run.summary().stage2_tokens, int64_t(6 * 32));
    QCOMPARE(run.stage(), std::string("done"));
    // Checkpoints: at steps 5 of each stage ("interval") and the end.
    std::vector<std::string> whys;
    for (const auto& [c, why] : rec.checkpoints)
      whys.push_back(c.stage + ":" + std::to_string(c.step) + ":" + why);
    QCOMPARE(whys, (std::vector<std::string>{"stage1:5:interval", "stage2:5:interval", "done:0:end"}));
  }

  void resumes_bit_identically_from_any_stop() {
    Fixture f;
    auto r = f.recipe();
    Recorder full;
    run::DistillRun a(r, f.teacher, f.corpus, f.probe(r), &full);
    a.run();
    const auto want = parameters_of(a.student());
    for (int64_t k : {3, 8, 11}) {  // inside stage 1, at the boundary, inside stage 2
      Recorder first, second;
      run::DistillRun b(r, f.teacher, f.corpus, f.probe(r), &first);
      QCOMPARE(b.run(k), snapshot::RunState::Finished);
      QVERIFY(b.summary().stopped_early);
      QCOMPARE(first.checkpoints.back().second, std::string("stop"));
      const run::Checkpoint cp = first.checkpoints.back().first;
      run::DistillRun c(r, f.teacher, f.corpus, f.probe(r), &second);
      c.restore(cp);
      QCOMPARE(c.run(), snapshot::RunState::Finished);
      std::vector<std::string> joined = first.steps;
      joined.insert(joined.end(), second.steps.begin(), second.steps.end());
      QCOMPARE(joined, full.steps);  // every loss, every part, to the last bit
      QVERIFY2(bit_identical(parameters_of(c.student()), want), ("stop at " + std::to_string(k)).c_str());
      QCOMPARE(c.summary().perplexity, a.summary().perplexity);
    }
  }

  void pause_and_run_again_continues_the_same_run() {
    Fixture f;
    auto r = f.recipe();
    Recorder full, paused;
    run::DistillRun a(r, f.teacher, f.corpus, f.probe(r), &full);
    a.run();
    run::DistillRun b(r, f.teacher, f.corpus, f.probe(r), &paused);
    b.pause();  // honoured before the first step
    QCOMPARE(b.run(), snapshot::RunState::Paused);
    QCOMPARE(b.steps_done(), int64_t(0));
    QCOMPARE(paused.checkpoints.back().second, std::string("pause"));
    QCOMPARE(b.run(), snapshot::RunState::Finished);
    QCOMPARE(paused.steps, full.steps);
    QVERIFY(std::find(paused.states.begin(), paused.states.end(), "paused>running") != paused.states.end());
  }

  void probes_hold_what_the_models_compute() {
    Fixture f;
    auto r = f.recipe();
    Recorder rec;
    run::DistillRun run(r, f.teacher, f.corpus, f.probe(r), &rec);
    run.run();
    // Stage 1 at steps 0, 3, 6, 8 (last); stage 2 at 0, 3, 6 (last).
    std::vector<std::string> at;
    for (const auto& s : rec.probes)
      at.push_back(s.stage + ":" + std::to_string(s.step));
    QCOMPARE(at, (std::vector<std::string>{"stage1:0", "stage1:3", "stage1:6", "stage1:8", "stage2:0",
                                           "stage2:3", "stage2:6"}));
    const auto& s1 = rec.probes[3];  // stage 1 finished
    const auto& s2 = rec.probes[4];  // the fresh student
    const int64_t Tp = static_cast<int64_t>(s1.tokens.size());
    QCOMPARE(Tp, int64_t(f.probe(r).ids.size()));
    QCOMPARE(s1.attention.size(), size_t(s1.layers * s1.heads));
    // The teacher's maps are its softmax weights, recomputed here independently.
    at::NoGradGuard no_grad;
    at::Tensor ids = at::tensor(f.probe(r).ids, at::kLong).unsqueeze(0);
    auto t = f.teacher->forward(ids, {false, true});
    for (int64_t l = 0; l < s1.layers; ++l)
      for (int64_t h = 0; h < s1.heads; ++h)
        for (int64_t i = 0; i < Tp; ++i)
          for (int64_t j = 0; j < Tp; ++j)
            QVERIFY(std::abs(s1.head(l, h).teacher.at(i, j) - t.attn_probs[l][0][h][i][j].item<float>()) <
                    1e-6);
    for (int64_t l = 0; l < s1.layers; ++l)
      for (int64_t h = 0; h < s1.heads; ++h) {
        const auto& a = s1.head(l, h);
        // ā is φ_q(q_t)ᵀφ_k(k_s) normalised over s ≤ t: exp(feature_logits) row-normalised gives it back.
        size_t idx = 0;
        for (int64_t i = 0; i < Tp; ++i) {
          double z = 0;
          for (int64_t j = 0; j <= i; ++j)
            z += std::exp(double(a.feature_logits[idx + j]));
          for (int64_t j = 0; j <= i; ++j)
            QVERIFY(std::abs(std::exp(double(a.feature_logits[idx + j])) / z - a.student.at(i, j)) < 1e-4);
          idx += i + 1;
        }
        // The fresh mixer (α ≈ 1, unit gate) has the stage-1 model's map as its implied attention.
        QVERIFY2(max_abs_diff(s2.head(l, h).student, a.student) < 1e-4,
                 ("layer " + std::to_string(l) + " head " + std::to_string(h)).c_str());
        QVERIFY(a.teacher_entropy > 0 && a.row_kl >= 0 && std::abs(a.spearman) <= 1.0);
      }
    for (int64_t l = 0; l < s1.layers; ++l) {
      QVERIFY(std::abs(s2.alignment[l].teacher_forced - s1.alignment[l].teacher_forced) < 1e-4);
      QVERIFY(s1.alignment[l].teacher_forced > 0.0 && s1.alignment[l].teacher_forced <= 1.0 + 1e-6);
    }
    QVERIFY(s1.mixers.empty());
    QCOMPARE(s2.mixers.size(), size_t(s2.layers));
    const auto& m = s2.mixers[0];
    QCOMPARE(m.delta.rows, s2.heads);
    QCOMPARE(m.delta.cols, Tp);
    QCOMPARE(m.gate.rows, Tp);
    for (float g : m.gate.values)
      QVERIFY(std::abs(g - 1.0f) < 1e-6);  // W_z = 0 at init: g = 2σ(0) = 1
    for (float a : m.alpha.values)
      QVERIFY(a > 0.999f && a <= 1.0f);
    QCOMPARE(int64_t(m.final_state.size()), s2.heads);
    QCOMPARE(m.state_norm.cols, Tp);
    QCOMPARE(m.conv_x.cols, int64_t(r.model.conv_width));
    // The implied attention by hand from the snapshot's own Δ, α and C_tᵀB_s (the feature logits):
    // M_ts ∝ (C_tᵀB_s) Δ_s Π_{s<r≤t} α_r, rows normalised — for the fresh mixer (α ≈ 1, unit gate: the
    // Hedgehog map, checked above) and for the trained one of the last stage-2 snapshot (α < 1).
    for (const auto* sn : {&rec.probes[4], &rec.probes[6]})
      for (int64_t l = 0; l < sn->layers; ++l)
        for (int64_t h = 0; h < sn->heads; ++h) {
          const auto& mx = sn->mixers[l];
          const auto& a = sn->head(l, h);
          double worst = 0.0;
          size_t idx = 0;
          for (int64_t t = 0; t < Tp; ++t) {
            std::vector<double> row(static_cast<size_t>(t + 1));
            double z = 0.0, zs = 0.0;
            for (int64_t j = 0; j <= t; ++j) {
              double decay = 0.0;
              for (int64_t k = j + 1; k <= t; ++k)
                decay += std::log(double(mx.alpha.at(h, k)));
              row[j] = std::exp(double(a.feature_logits[idx + j])) * mx.delta.at(h, j) * std::exp(decay);
              z += row[j];
              zs += a.student.at(t, j);
            }
            for (int64_t j = 0; j <= t; ++j)
              worst = std::max(worst, std::abs(row[j] / z - a.student.at(t, j) / zs));
            idx += t + 1;
          }
          QVERIFY2(worst < 1e-4, ("implied attention by hand, " + sn->stage + " step " +
                                  std::to_string(sn->step) + " layer " + std::to_string(l) + " head " +
                                  std::to_string(h) + ": " + std::to_string(worst))
                                     .c_str());
        }
    double min_alpha = 1.0;
    for (float v : rec.probes[6].mixers[0].alpha.values)
      min_alpha = std::min(min_alpha, double(v));
    QVERIFY(min_alpha < 1.0);  // the trained mixer does decay: the hand formula was tested with α ≠ 1
  }

  void refuses_checkpoints_that_do_not_fit() {
    Fixture f;
    auto r = f.recipe();
    Recorder rec;
    run::DistillRun a(r, f.teacher, f.corpus, f.probe(r), &rec);
    a.run(10);
    const run::Checkpoint cp = rec.checkpoints.back().first;
    auto other = r;
    other.stage2.lr = 5e-3;
    run::DistillRun b(other, f.teacher, f.corpus, f.probe(other));
    HL_EXPECT_ERROR(b.restore(cp), "checkpoint of hedgemamba", "stage2.lr");
    run::Checkpoint bad = cp;
    bad.meta["format"] = "something else";
    run::DistillRun c(r, f.teacher, f.corpus, f.probe(r));
    HL_EXPECT_ERROR(c.restore(bad), "meta.format", "hedgelab_run_checkpoint");
    bad = cp;
    bad.tensors.erase(std::remove_if(bad.tensors.begin(), bad.tensors.end(),
                                     [](const auto& p) { return p.first.rfind("stage1.", 0) == 0; }),
                      bad.tensors.end());
    run::DistillRun d(r, f.teacher, f.corpus, f.probe(r));
    HL_EXPECT_ERROR(d.restore(bad), "stage1.", "missing");
  }
};

QTEST_APPLESS_MAIN(TestRun)
#include "test_run.moc"
