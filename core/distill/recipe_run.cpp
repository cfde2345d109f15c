#include "core/distill/recipe_run.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "core/common/error.h"
#include "core/data/batches.h"
#include "core/distill/stages.h"

namespace hedgelab::distill {

namespace {

constexpr int64_t kFinalEvalWindows = 512;
constexpr int64_t kEvalBatch = 8;

bool contains(const std::vector<std::string>& v, const char* name) {
  return std::find(v.begin(), v.end(), name) != v.end();
}

models::HedgehogLM clone_stage1(const models::HedgehogLM& from) {
  models::HedgehogLM copy(from->config(), from->options());
  copy->to(from->base()->lm_head_weight().device());
  models::detail::copy_parameters(*from, *copy, "stage-1 copy");
  return copy;
}

}  // namespace

RecipeRunner::RecipeRunner(RecipeConfig recipe, models::GptNeoXForCausalLM teacher,
                           const data::TokenCorpus& corpus, RunEvents events)
    : recipe_(std::move(recipe)), teacher_(std::move(teacher)), corpus_(corpus), events_(std::move(events)) {
  final_windows_ = prepare_run(recipe_, teacher_, corpus_, kFinalEvalWindows);  // [N, T+1]
}

double RecipeRunner::evaluate(const std::function<at::Tensor(const at::Tensor&)>& logits_of,
                              int64_t max_windows) const {
  at::NoGradGuard no_grad;
  const ops::AutocastScope autocast(autocast_of(recipe_));
  const int64_t n =
      max_windows > 0 ? std::min<int64_t>(max_windows, final_windows_.size(0)) : final_windows_.size(0);
  return models::perplexity(logits_of, final_windows_.narrow(0, 0, n), kEvalBatch).perplexity;
}

double RecipeRunner::teacher_perplexity() {
  if (teacher_ppl_ == 0.0)
    teacher_ppl_ = evaluate([this](const at::Tensor& ids) { return teacher_->forward(ids).logits; }, 0);
  return teacher_ppl_;
}

RunSummary RecipeRunner::evaluate_teacher() {
  const auto t0 = std::chrono::steady_clock::now();
  RunSummary s;
  s.run = "teacher";
  s.perplexity = teacher_perplexity();
  s.ratio_to_teacher = 1.0;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

bool RecipeRunner::run_trainer(Trainer& trainer, const std::string& run, const std::string& stage,
                               RunSummary& summary) {
  if (events_.on_stage_start) events_.on_stage_start(run, stage, trainer.config().total_steps);
  while (trainer.state() != RunState::Finished) {
    const bool stop_flag = events_.stop_requested && events_.stop_requested->load();
    const bool at_limit = events_.stop_at_step > 0 && summary.steps + trainer.step() >= events_.stop_at_step;
    if (stop_flag || at_limit) {
      summary.stopped_early = true;
      break;
    }
    const RunState st = trainer.run_until(trainer.step() + 1);
    if (st == RunState::Paused || st == RunState::Failed)
      throw Error(run + " " + stage,
                  trainer.last_error().empty() ? "training stopped" : trainer.last_error());
  }
  summary.steps += trainer.step();
  return !summary.stopped_early;
}

models::HedgehogLM RecipeRunner::train_stage1(const RecipeConfig& recipe, const std::string& run,
                                              RunSummary& summary) {
  models::HedgehogLM hh = make_stage1_model(teacher_, recipe);
  const int64_t steps = recipe.stage1_steps();
  if (steps == 0 || summary.stopped_early) return hh;
  data::BatchCursor cursor(corpus_.train(), recipe.data.context, recipe.data.batch_size,
                           static_cast<uint64_t>(recipe.seed));
  TrainerCallbacks cb;
  cb.on_step = [&](const StepReport& r) {
    if (events_.on_step) events_.on_step(run, "stage1", r);
  };
  cb.eval = [&](int64_t) {
    return std::vector<std::pair<std::string, double>>{
        {"heldout_perplexity",
         evaluate([&](const at::Tensor& ids) { return hh->forward(ids); }, recipe.data.eval_windows)}};
  };
  cb.on_eval = [&](const EvalReport& r) {
    if (events_.on_eval) events_.on_eval(run, "stage1", r);
  };
  Trainer trainer(trainable_parameters(*hh),
                  stage_trainer_config(recipe.stage1.weight_decay, recipe.stage1_schedule(),
                                       recipe.stage1.grad_clip, recipe.data, steps),
                  stage1_step(recipe, teacher_, hh, cursor), cb);
  run_trainer(trainer, run, "stage1", summary);
  summary.stage1_tokens = trainer.tokens_seen();
  set_all_trainable(*hh, false);
  return hh;
}

void RecipeRunner::train_stage2(const RecipeConfig& recipe, const std::string& run, Stage2Model model,
                                int64_t tokens, const models::HedgehogLM* kd_stage1, RunSummary& summary) {
  const int64_t steps = steps_for_tokens(tokens, recipe.data);
  if (steps == 0 || summary.stopped_early) return;
  const auto& s2 = recipe.stage2;
  const train::WarmupCosine schedule{s2.lr, s2.min_lr, std::min(s2.warmup_steps, steps), steps};
  data::BatchCursor cursor(corpus_.train(), recipe.data.context, recipe.data.batch_size,
                           static_cast<uint64_t>(recipe.seed));
  TrainerCallbacks cb;
  cb.on_step = [&](const StepReport& r) {
    if (events_.on_step) events_.on_step(run, "stage2", r);
  };
  cb.eval = [&](int64_t) {
    model.set_training(false);
    const double ppl = evaluate(model.logits, recipe.data.eval_windows);
    model.set_training(true);
    return std::vector<std::pair<std::string, double>>{{"heldout_perplexity", ppl}};
  };
  cb.on_eval = [&](const EvalReport& r) {
    if (events_.on_eval) events_.on_eval(run, "stage2", r);
  };
  model.set_training(true);
  Trainer trainer(model.parameters,
                  stage_trainer_config(s2.weight_decay, schedule, s2.grad_clip, recipe.data, steps),
                  stage2_step(recipe, teacher_, model, kd_stage1, cursor), cb);
  run_trainer(trainer, run, "stage2", summary);
  summary.stage2_tokens = trainer.tokens_seen();
  model.set_training(false);
}

RunSummary RecipeRunner::run_hedgemamba(const RecipeConfig& recipe, const std::string& run,
                                        models::HedgeMambaStudent* student_out,
                                        const models::HedgehogLM* trained_stage1) {
  const auto t0 = std::chrono::steady_clock::now();
  RunSummary summary;
  summary.run = run;
  models::HedgehogLM stage1 = trained_stage1 ? *trained_stage1 : train_stage1(recipe, run, summary);
  if (trained_stage1) summary.stage1_tokens = recipe.stage1_steps() * recipe.tokens_per_step();
  auto student = make_student(stage1, recipe);
  Stage2Model m = stage2_model_of(student);
  const bool kd_from_stage1 = recipe.stage2.kd_target == "stage1";
  train_stage2(recipe, run, m, recipe.stage2.tokens, kd_from_stage1 ? &stage1 : nullptr, summary);
  summary.perplexity =
      evaluate([student](const at::Tensor& ids) mutable { return student->forward(ids); }, 0);
  summary.ratio_to_teacher = summary.perplexity / teacher_perplexity();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (student_out) *student_out = student;
  return summary;
}

RunSummary RecipeRunner::run_hedgehog(const models::HedgehogLM* trained_stage1) {
  const auto t0 = std::chrono::steady_clock::now();
  RunSummary summary;
  summary.run = "hedgehog";
  models::HedgehogLM model =
      trained_stage1 ? clone_stage1(*trained_stage1) : train_stage1(recipe_, "hedgehog", summary);
  if (trained_stage1) summary.stage1_tokens = recipe_.stage1_steps() * recipe_.tokens_per_step();
  // A KD target of "stage1" is the model as stage 1 left it, kept frozen beside the one that trains on.
  std::optional<models::HedgehogLM> frozen;
  if (recipe_.stage2.kd_target == "stage1") frozen = clone_stage1(model);
  Stage2Model m = stage2_model_of(model);
  train_stage2(recipe_, "hedgehog", m, recipe_.stage2.tokens, frozen ? &*frozen : nullptr, summary);
  summary.perplexity = evaluate([model](const at::Tensor& ids) mutable { return model->forward(ids); }, 0);
  summary.ratio_to_teacher = summary.perplexity / teacher_perplexity();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return summary;
}

RunSummary RecipeRunner::run_direct() {
  const auto t0 = std::chrono::steady_clock::now();
  RunSummary summary;
  summary.run = "direct";
  auto student = models::HedgeMambaStudentImpl::direct(teacher_, mixer_options(recipe_),
                                                       static_cast<uint64_t>(recipe_.seed));
  student->set_activation_checkpointing(recipe_.activation_checkpointing);
  Stage2Model m = stage2_model_of(student);
  // The whole budget goes to the one-step distillation (the KD target is always the teacher here).
  RecipeConfig recipe = recipe_;
  recipe.stage2.kd_target = "teacher";
  train_stage2(recipe, "direct", m, recipe_.stage1.tokens + recipe_.stage2.tokens, nullptr, summary);
  summary.perplexity =
      evaluate([student](const at::Tensor& ids) mutable { return student->forward(ids); }, 0);
  summary.ratio_to_teacher = summary.perplexity / teacher_perplexity();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return summary;
}

std::vector<RunSummary> RecipeRunner::compare(bool with_ablations) {
  std::vector<RunSummary> out;
  const auto& runs = recipe_.comparison.runs;
  const bool needs_stage1 = contains(runs, "hedgehog") || contains(runs, "hedgemamba") || with_ablations;
  std::optional<models::HedgehogLM> stage1;
  RunSummary stage1_summary;
  stage1_summary.run = "stage1";
  if (needs_stage1) stage1 = train_stage1(recipe_, "stage1", stage1_summary);
  for (const auto& run : runs) {
    if (run == "teacher")
      out.push_back(evaluate_teacher());
    else if (run == "hedgehog")
      out.push_back(run_hedgehog(&*stage1));
    else if (run == "direct")
      out.push_back(run_direct());
    else if (run == "hedgemamba")
      out.push_back(run_hedgemamba(recipe_, "hedgemamba", nullptr, &*stage1));
    if (events_.stop_requested && events_.stop_requested->load()) return out;
  }
  if (!with_ablations) return out;
  const auto& ablations =
      recipe_.comparison.ablations.empty() ? valid_ablations() : recipe_.comparison.ablations;
  for (const auto& a : ablations) {
    const RecipeConfig r = with_ablation(recipe_, a);
    // Mixer ablations leave stage 1 as it was; a re-split of the budget needs its own stage 1.
    const bool resplit = a.rfind("split_", 0) == 0;
    out.push_back(run_hedgemamba(r, a, nullptr, resplit ? nullptr : &*stage1));
    if (events_.stop_requested && events_.stop_requested->load()) break;
  }
  return out;
}

}  // namespace hedgelab::distill
