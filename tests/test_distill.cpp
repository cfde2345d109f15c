// The recipe's losses against hand-written formulas, and the recipe runner end to end on a fixture teacher:
// deterministic, honouring stop requests, producing every comparison row.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <QTest>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>

#include "core/data/corpus.h"
#include "core/data/tokenizer_encoder.h"
#include "core/distill/losses.h"
#include "core/distill/recipe_run.h"
#include "core/distill/stages.h"
#include "core/io/checkpoint.h"
#include "core/io/tokenizer.h"
#include "core/ops/logit_losses.h"
#include "tests/distill_fixture.h"
#include "tests/test_util.h"

using namespace hedgelab;
using hedgelab::testing::fixtures_dir;

namespace {

double close(double a, double b) {
  return std::abs(a - b) <= 1e-9 * std::max(1.0, std::abs(b));
}

using Fixture = testing::DistillFixture;

// One stage-1 step of `recipe` on a fresh cursor: the weighted loss and the gradient of every trainable
// parameter of `hh` (zeroed first). `recompute_qkv` sets HEDGELAB_STAGE1_RECOMPUTE_QKV for the step's
// construction, which is when the step decides.
struct Stage1Result {
  double loss = 0;
  std::map<std::string, at::Tensor> grads;
};
Stage1Result one_stage1_step(const distill::RecipeConfig& recipe, Fixture& f, models::HedgehogLM hh,
                             bool recompute_qkv) {
  if (recompute_qkv)
    setenv("HEDGELAB_STAGE1_RECOMPUTE_QKV", "1", 1);
  else
    unsetenv("HEDGELAB_STAGE1_RECOMPUTE_QKV");
  data::BatchCursor cursor(f.corpus.train(), recipe.data.context, recipe.data.batch_size, 7);
  auto step = distill::stage1_step(recipe, f.teacher, hh, cursor);
  unsetenv("HEDGELAB_STAGE1_RECOMPUTE_QKV");
  for (auto& p : hh->parameters())
    if (p.grad().defined()) p.mutable_grad().zero_();
  const distill::LossParts parts = step(0, 0);
  at::Tensor total = at::zeros({});
  for (const auto& part : parts.parts)
    total = total + part.value * part.weight;
  total.backward();
  Stage1Result r;
  r.loss = total.item<double>();
  for (const auto& item : hh->named_parameters())
    if (item.value().requires_grad() && item.value().grad().defined())
      r.grads[item.key()] = item.value().grad().clone();
  return r;
}

}  // namespace

class TestDistill : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void cosine_alignment_matches_formula() {
    at::Tensor a = at::randn({2, 3, 5}, at::kDouble), b = at::randn({2, 3, 5}, at::kDouble);
    double want = 0;
    for (int i = 0; i < 2; ++i)
      for (int t = 0; t < 3; ++t) {
        const double dot = (a[i][t] * b[i][t]).sum().item<double>();
        want += 1.0 - dot / (a[i][t].norm().item<double>() * b[i][t].norm().item<double>());
      }
    want /= 6;
    QVERIFY(std::abs(distill::cosine_alignment_loss(a, b).item<double>() - want) < 1e-6);
    QVERIFY(distill::cosine_alignment_loss(a, a).item<double>() < 1e-6);
    QVERIFY(std::abs(distill::cosine_alignment_loss(a, -a).item<double>() - 2.0) < 1e-6);
  }

  void attention_cross_entropy_matches_formula() {
    // Causal rows of a softmax P and of a normalised ā.
    at::Tensor mask = at::ones({4, 4}, at::kBool).triu(1);
    at::Tensor p = at::softmax(at::randn({1, 2, 4, 4}, at::kDouble).masked_fill(mask, -INFINITY), -1);
    at::Tensor a = at::softmax(at::randn({1, 2, 4, 4}, at::kDouble).masked_fill(mask, -INFINITY), -1);
    double want = 0;
    for (int h = 0; h < 2; ++h)
      for (int t = 0; t < 4; ++t)
        for (int s = 0; s <= t; ++s)
          want -= p[0][h][t][s].item<double>() * std::log(a[0][h][t][s].item<double>());
    want /= 8;
    QVERIFY(std::abs(distill::attention_weight_cross_entropy(p, a).item<double>() - want) < 1e-5);
  }

  void distillation_kl_matches_formula_and_vanishes_on_equal_logits() {
    at::Tensor zt = at::randn({2, 3, 7}, at::kDouble), zs = at::randn({2, 3, 7}, at::kDouble);
    at::Tensor targets = at::randint(0, 7, {2, 3}, at::kLong);
    const double tau = 2.5;
    double want = 0;
    for (int i = 0; i < 2; ++i)
      for (int t = 0; t < 3; ++t) {
        at::Tensor p = at::softmax(zt[i][t] / tau, 0), q = at::softmax(zs[i][t] / tau, 0);
        want += (p * (p.log() - q.log())).sum().item<double>();
      }
    want = tau * tau * want / 6;
    QVERIFY(std::abs(ops::logit_losses(zs, zt, targets, tau).kd.item<double>() - want) < 1e-5);
    QVERIFY(std::abs(ops::logit_losses_reference(zs, zt, targets, tau).kd.item<double>() - want) < 1e-5);
    QVERIFY(std::abs(ops::logit_losses(zt, zt, targets, tau).kd.item<double>()) < 1e-6);
  }

  void next_token_cross_entropy_matches_formula() {
    at::Tensor logits = at::randn({2, 3, 5}, at::kDouble);
    at::Tensor targets = at::randint(0, 5, {2, 3}, at::kLong);
    double want = 0;
    for (int i = 0; i < 2; ++i)
      for (int t = 0; t < 3; ++t)
        want -= at::log_softmax(logits[i][t], 0)[targets[i][t].item<int64_t>()].item<double>();
    const at::Tensor other = at::randn({2, 3, 5}, at::kDouble);
    QVERIFY(std::abs(ops::logit_losses(logits, other, targets, 1.0).ce.item<double>() - want / 6) < 1e-5);
  }

  // The gradient the fused kernel writes (cuda/logit_losses_params.h), in closed form against autograd
  // through the reference: ∂(w_ce ce + w_kd kd)/∂zs = w_ce (softmax(zs) − onehot(y))/N + w_kd τ (q − p)/N;
  // none reaches the KD target.
  void logit_losses_gradient_matches_its_closed_form() {
    const int64_t N = 6, V = 11;
    const double tau = 2.0, w_ce = 0.7, w_kd = 1.3;
    at::Tensor zs = at::randn({2, 3, V}, at::kDouble).requires_grad_(true);
    at::Tensor zt = at::randn({2, 3, V}, at::kDouble).requires_grad_(true);
    at::Tensor targets = at::randint(0, V, {2, 3}, at::kLong);
    const ops::LogitLosses l = ops::logit_losses(zs, zt, targets, tau);
    (w_ce * l.ce + w_kd * l.kd).backward();
    const at::Tensor z = zs.detach().reshape({N, V}), t = zt.detach().reshape({N, V});
    const at::Tensor onehot = at::one_hot(targets.reshape({N}), V).to(at::kDouble);
    const at::Tensor want = w_ce * (at::softmax(z, -1) - onehot) / N +
                            w_kd * tau * (at::softmax(z / tau, -1) - at::softmax(t / tau, -1)) / N;
    // The reference works in float32 (as the fused kernel does): 1e-6 against gradients of about 1/N.
    QVERIFY((zs.grad().reshape({N, V}) - want).abs().max().item<double>() < 1e-6);
    QVERIFY(!zt.grad().defined() || zt.grad().abs().max().item<double>() == 0.0);
  }

  void logit_losses_reject_bad_input_by_name() {
    const at::Tensor z = at::randn({2, 3, 5}), y = at::randint(0, 5, {2, 3}, at::kLong);
    auto fails_with = [](const std::function<void()>& f, const char* needle) {
      try {
        f();
      } catch (const c10::Error& e) {
        return std::string(e.what_without_backtrace()).find(needle) != std::string::npos;
      }
      return false;
    };
    QVERIFY(fails_with([&] { ops::logit_losses(z, at::randn({2, 3, 6}), y, 1.0); }, "teacher logits"));
    QVERIFY(fails_with([&] { ops::logit_losses(z, z, y.narrow(1, 0, 2), 1.0); }, "targets must be"));
    QVERIFY(fails_with([&] { ops::logit_losses(z, z, y.to(at::kInt), 1.0); }, "int64"));
    QVERIFY(fails_with([&] { ops::logit_losses(z, z, y, 0.0); }, "temperature"));
    QVERIFY(fails_with([&] { ops::logit_losses_reference(z, z, y, -1.0); }, "temperature"));
  }

  void stage1_lowers_the_alignment_loss() {
    Fixture f;
    auto recipe = f.recipe();
    recipe.stage1.tokens = 20 * 32;
    std::vector<double> losses;
    distill::RunEvents ev;
    ev.on_step = [&](const std::string&, const std::string& stage, const distill::StepReport& r) {
      if (stage == "stage1") losses.push_back(r.total);
    };
    distill::RecipeRunner runner(recipe, f.teacher, f.corpus, ev);
    distill::RunSummary s;
    runner.train_stage1(recipe, "stage1", s);
    QCOMPARE(losses.size(), size_t(20));
    QVERIFY2(
        losses.back() < 0.9 * losses.front(),
        ("stage-1 loss " + std::to_string(losses.front()) + " -> " + std::to_string(losses.back())).c_str());
    QCOMPARE(s.stage1_tokens, int64_t(20 * 32));
  }

  // Stage 1 takes the teacher's rotated q, k, v when the student's query_key_value is frozen and equal to the
  // teacher's; the loss and every gradient must be those of recomputing them from ln1(x), with and without
  // activation checkpointing. With q/k/v trainable it must recompute, or q/k/v would get no gradient.
  void stage1_reuses_the_teachers_qkv_only_while_frozen() {
    Fixture f;
    for (bool checkpointing : {false, true}) {
      auto recipe = f.recipe();
      recipe.activation_checkpointing = checkpointing;
      auto hh = distill::make_stage1_model(f.teacher, recipe);
      {
        at::NoGradGuard no_grad;  // away from the identity start, so the gradients are not special
        for (auto& p : hh->feature_map_parameters())
          p.add_(at::randn_like(p) * 0.3);
      }
      QVERIFY(hh->shares_frozen_qkv_with(*f.teacher));
      const Stage1Result reused = one_stage1_step(recipe, f, hh, false);
      const Stage1Result recomputed = one_stage1_step(recipe, f, hh, true);
      qInfo("checkpointing %d: stage-1 loss reused %.9g, recomputed %.9g", checkpointing, reused.loss,
            recomputed.loss);
      QVERIFY(std::abs(reused.loss - recomputed.loss) <= 1e-6 * std::abs(recomputed.loss));
      QCOMPARE(reused.grads.size(), recomputed.grads.size());
      QVERIFY(!reused.grads.empty());
      for (const auto& [name, g] : recomputed.grads) {
        const at::Tensor& h = reused.grads.at(name);
        const double scale = std::max(g.abs().max().item<double>(), 1e-30);
        const double err = (h - g).abs().max().item<double>() / scale;
        QVERIFY2(err <= 1e-5, (name + ": gradient differs by " + std::to_string(err)).c_str());
      }
    }
    // q/k/v trainable: no reuse, and the projection gets its gradient.
    auto recipe = f.recipe();
    recipe.stage1.trainable = {"feature_maps", "output_gain", "qkv"};
    auto hh = distill::make_stage1_model(f.teacher, recipe);
    QVERIFY(!hh->shares_frozen_qkv_with(*f.teacher));
    const Stage1Result r = one_stage1_step(recipe, f, hh, false);
    const std::string qkv = "gpt_neox.layers.0.attention.query_key_value.weight";
    QVERIFY2(r.grads.count(qkv) == 1, "query_key_value got no gradient");
    QVERIFY(r.grads.at(qkv).abs().sum().item<double>() > 0.0);
    // Frozen but no longer the teacher's (a student resumed from another run): no reuse either.
    auto frozen = distill::make_stage1_model(f.teacher, f.recipe());
    {
      at::NoGradGuard no_grad;
      for (auto& item : frozen->named_parameters())
        if (item.key() == "gpt_neox.layers.1.attention.query_key_value.bias") item.value().add_(1e-3);
    }
    QVERIFY(!frozen->shares_frozen_qkv_with(*f.teacher));
  }

  // Stage 2 with λ_align: the logits and the per-layer mixer outputs come from one student forward; each
  // part equals its formula on a separate logits forward and a separate capturing forward of the same
  // batch, for the HedgeMamba student and for the Hedgehog model as stage-2 student.
  void stage2_alignment_parts_match_separate_forwards() {
    Fixture f;
    auto recipe = f.recipe();
    recipe.stage2.align_weight = 0.5;
    auto hh = distill::make_stage1_model(f.teacher, recipe);
    auto student = distill::make_student(hh, recipe);
    for (int which = 0; which < 2; ++which) {
      distill::Stage2Model model =
          which == 0 ? distill::stage2_model_of(student) : distill::stage2_model_of(hh);
      data::BatchCursor cursor(f.corpus.train(), recipe.data.context, recipe.data.batch_size, 11);
      data::BatchCursor same(f.corpus.train(), recipe.data.context, recipe.data.batch_size, 11);
      auto step = distill::stage2_step(recipe, f.teacher, model, nullptr, cursor);
      const distill::LossParts parts = step(0, 0);
      const at::Tensor batch = same.next();
      const int64_t T = recipe.data.context, L = f.teacher->config().num_layers;
      const at::Tensor ids = batch.narrow(1, 0, T), targets = batch.narrow(1, 1, T);
      at::NoGradGuard no_grad;
      const models::TeacherOutput t = f.teacher->forward(ids, {true, false});
      const at::Tensor logits = model.logits(ids);  // [B, T, V]
      const ops::LogitLosses ll = ops::logit_losses(logits, t.logits, targets, recipe.stage2.kd_temperature);
      std::map<std::string, std::pair<double, double>> want = {
          {"ce", {ll.ce.item<double>(), recipe.stage2.ce_weight}},
          {"kd", {ll.kd.item<double>(), recipe.stage2.kd_weight}}};
      const auto outs = model.logits_and_layer_outputs(ids).second;
      QCOMPARE(static_cast<int64_t>(outs.size()), L);
      for (int64_t l = 0; l < L; ++l)
        want["align.layers." + std::to_string(l)] = {
            distill::cosine_alignment_loss(outs[l], t.attn_output[l]).item<double>(), 0.5 / L};
      QCOMPARE(parts.parts.size(), want.size());
      for (const auto& part : parts.parts) {
        QVERIFY2(want.count(part.name) == 1, part.name.c_str());
        const auto [value, weight] = want.at(part.name);
        QVERIFY2(
            std::abs(part.value.item<double>() - value) <= 1e-6 * std::max(1.0, std::abs(value)),
            (part.name + ": " + std::to_string(part.value.item<double>()) + " vs " + std::to_string(value))
                .c_str());
        QVERIFY(close(part.weight, weight));
      }
    }
  }

  void hedgemamba_run_is_deterministic_and_stoppable() {
    Fixture f;
    distill::RecipeRunner a(f.recipe(), f.teacher, f.corpus);
    distill::RecipeRunner b(f.recipe(), f.teacher, f.corpus);
    const auto ra = a.run_hedgemamba(f.recipe(), "hedgemamba");
    const auto rb = b.run_hedgemamba(f.recipe(), "hedgemamba");
    QVERIFY(std::isfinite(ra.perplexity));
    QCOMPARE(ra.perplexity, rb.perplexity);  // bit-identical given the seed
    QCOMPARE(ra.steps, int64_t(8 + 6));
    distill::RunEvents ev;
    ev.stop_at_step = 5;
    distill::RecipeRunner c(f.recipe(), f.teacher, f.corpus, ev);
    const auto rc = c.run_hedgemamba(f.recipe(), "hedgemamba");
    QVERIFY(rc.stopped_early);
    QCOMPARE(rc.steps, int64_t(5));
    QCOMPARE(rc.stage2_tokens, int64_t(0));
  }

  void compare_yields_every_run() {
    Fixture f;
    distill::RecipeRunner runner(f.recipe(), f.teacher, f.corpus);
    const auto rows = runner.compare(false);
    QCOMPARE(rows.size(), size_t(4));
    QCOMPARE(rows[0].run, std::string("teacher"));
    QCOMPARE(rows[0].ratio_to_teacher, 1.0);
    for (const auto& r : rows)
      QVERIFY2(std::isfinite(r.perplexity) && r.perplexity > 1.0, r.run.c_str());
    QCOMPARE(rows[2].run, std::string("direct"));
    QCOMPARE(rows[2].stage2_tokens, int64_t(8 * 32 + 6 * 32));  // the whole budget in one stage
    QVERIFY(close(rows[3].ratio_to_teacher, rows[3].perplexity / rows[0].perplexity));
  }

  void recipe_errors_are_named() {
    Fixture f;
    auto r = f.recipe();
    r.device = "cuda";
    HL_EXPECT_ERROR(distill::RecipeRunner(r, f.teacher, f.corpus), "device", "cuda");
    r = f.recipe();
    r.data.batch_size = 4096;
    HL_EXPECT_ERROR(distill::RecipeRunner(r, f.teacher, f.corpus), "corpus.txt", "fewer than");
  }
};

QTEST_APPLESS_MAIN(TestDistill)
#include "test_distill.moc"
