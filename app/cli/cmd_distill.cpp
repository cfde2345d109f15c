// distill: the recipe from a preset, or with --compare the runs of docs/method.md §5 as a table.
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "app/cli/args.h"
#include "app/cli/commands.h"
#include "app/cli/loading.h"
#include "core/common/error.h"
#include "core/distill/recipe_run.h"
#include "core/util/atomic_file.h"
#include "core/util/progress.h"

namespace hedgelab::cli {

namespace {
nlohmann::json summary_json(const distill::RunSummary& s) {
  return {{"run", s.run},
          {"perplexity", s.perplexity},
          {"ratio_to_teacher", s.ratio_to_teacher},
          {"stage1_tokens", s.stage1_tokens},
          {"stage2_tokens", s.stage2_tokens},
          {"steps", s.steps},
          {"seconds", s.seconds},
          {"stopped_early", s.stopped_early}};
}

void print_table(const std::vector<distill::RunSummary>& rows, bool csv) {
  if (csv) {
    std::printf("run,perplexity,ratio_to_teacher,stage1_tokens,stage2_tokens,seconds\n");
    for (const auto& r : rows)
      std::printf("%s,%.6f,%.6f,%lld,%lld,%.1f\n", r.run.c_str(), r.perplexity, r.ratio_to_teacher,
                  static_cast<long long>(r.stage1_tokens), static_cast<long long>(r.stage2_tokens),
                  r.seconds);
    return;
  }
  std::printf("\n%-20s %12s %10s %14s %14s %9s\n", "run", "perplexity", "ratio", "stage-1 tok", "stage-2 tok",
              "seconds");
  for (const auto& r : rows)
    std::printf("%-20s %12.4f %10.4f %14lld %14lld %9.0f%s\n", r.run.c_str(), r.perplexity,
                r.ratio_to_teacher, static_cast<long long>(r.stage1_tokens),
                static_cast<long long>(r.stage2_tokens), r.seconds,
                r.stopped_early ? "  (stopped early)" : "");
}

}  // namespace

int run_distill(const Args& args) {
  ArgParser p(
      "distill",
      "Distil a GPT-NeoX teacher into a HedgeMamba student with the two-stage recipe of a preset\n"
      "(resources/presets; docs/presets.md). --compare runs teacher, hedgehog, direct and hedgemamba at\n"
      "equal token budgets on the same data order and prints held-out perplexity and the ratio to the\n"
      "teacher; --ablations adds no gate, no conv, no selective decay and the token splits.");
  p.option("preset", "NAME", "preset name or a recipe .json file", "demo")
      .option("teacher", "DIR", "teacher checkpoint (overrides the preset's)", "")
      .option("corpus", "PATH", "corpus (overrides the preset's)", "")
      .option("tokens-stage1", "N", "stage-1 token budget", "")
      .option("tokens-stage2", "N", "stage-2 token budget", "")
      .option("seed", "S", "seed of batch order and the direct baseline's init", "")
      .option("stop-at-step", "K", "stop a run after K optimizer steps (both stages counted)", "0")
      .option("out", "DIR", "save the trained student here (config.json, model.safetensors, tokenizer.json)",
              "")
      .flag("compare", "run the comparison table of the paper")
      .flag("ablations", "with --compare: add the ablation rows")
      .flag("no-cache", "tokenize again instead of reading the tokenization cache")
      .flag("json", "print the result as JSON")
      .flag("csv", "with --compare: print the table as CSV");
  if (!p.parse(args)) return 0;
  if (p.enabled("ablations") && !p.enabled("compare"))
    throw UsageError("distill: --ablations needs --compare");

  distill::RecipeConfig recipe = distill::load_preset(p.str("preset"));
  nlohmann::json overrides = nlohmann::json::object();
  if (!p.str("teacher").empty()) overrides["teacher"] = p.str("teacher");
  if (!p.str("corpus").empty()) overrides["corpus"] = p.str("corpus");
  if (!p.str("tokens-stage1").empty()) overrides["stage1"]["tokens"] = p.integer("tokens-stage1", 0);
  if (!p.str("tokens-stage2").empty()) overrides["stage2"]["tokens"] = p.integer("tokens-stage2", 0);
  if (!p.str("seed").empty()) overrides["seed"] = p.integer("seed", 0);
  distill::apply_overrides(recipe, overrides, "command line");
  const std::string out_dir = p.str("out");
  if (!out_dir.empty()) {
    // Fail before hours of training, not after: the folder must be creatable and writable.
    std::error_code ec;
    std::filesystem::create_directories(out_dir, ec);
    const auto probe = std::filesystem::path(out_dir) / ".hedgelab-write-test";
    if (ec) throw Error(out_dir, "cannot create the output folder: " + ec.message());
    util::write_file_atomically(probe, std::string("ok"));
    std::filesystem::remove(probe, ec);
  }

  auto teacher = load_teacher(recipe.teacher == "demo" ? "" : recipe.teacher);
  auto tok = load_tokenizer(teacher.folder);
  auto corpus = load_corpus_with(tok, recipe.corpus == "default" ? "" : recipe.corpus, !p.enabled("no-cache"),
                                 recipe.data.heldout_fraction);

  const bool as_json = p.enabled("json") || p.enabled("csv");
  std::unique_ptr<util::ProgressBar> bar;
  distill::RunEvents events;
  events.stop_requested = &InterruptGuard::flag();
  events.stop_at_step = p.integer("stop-at-step", 0);
  events.on_stage_start = [&](const std::string& run, const std::string& stage, int64_t steps) {
    if (bar) bar->finish();
    bar = std::make_unique<util::ProgressBar>(run + " " + stage, steps, "steps");
    bar->set_enabled(!as_json);
  };
  events.on_step = [&](const std::string&, const std::string&, const distill::StepReport& r) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "loss %.4f lr %.2e |g| %.2f %.0f tok/s", r.total, r.lr, r.grad_norm,
                  r.tokens_per_second);
    if (bar) bar->update(r.step, buf);
  };
  events.on_eval = [&](const std::string& run, const std::string& stage, const distill::EvalReport& e) {
    for (const auto& [name, value] : e.metrics)
      spdlog::info("{} {} step {}: {} {:.4f}", run, stage, e.step, name, value);
  };
  distill::RecipeRunner runner(recipe, teacher.model, corpus, events);
  spdlog::info(
      "recipe {}: stage 1 {} steps, stage 2 {} steps of {} tokens; final evaluation on {} held-out windows",
      recipe.name, recipe.stage1_steps(), recipe.stage2_steps(), recipe.tokens_per_step(),
      runner.heldout_windows().size(0));

  InterruptGuard interrupt_guard;
  std::vector<distill::RunSummary> rows;
  models::HedgeMambaStudent student{nullptr};
  if (p.enabled("compare")) {
    rows = runner.compare(p.enabled("ablations"));
  } else {
    rows.push_back(runner.evaluate_teacher());
    rows.push_back(runner.run_hedgemamba(recipe, "hedgemamba", &student));
  }
  if (bar) bar->finish();
  if (!out_dir.empty() && student) {
    models::save_student(student, out_dir);
    util::write_file_atomically(std::filesystem::path(out_dir) / "tokenizer.json", tok.to_json_text());
    spdlog::info("student saved in {}", out_dir);
  }

  if (p.enabled("csv")) {
    print_table(rows, true);
  } else if (p.enabled("json")) {
    nlohmann::json j = {{"recipe", recipe.to_json()}, {"runs", nlohmann::json::array()}};
    for (const auto& r : rows)
      j["runs"].push_back(summary_json(r));
    if (!out_dir.empty()) j["student"] = out_dir;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    print_table(rows, false);
    if (!out_dir.empty()) std::printf("\nstudent saved in %s\n", out_dir.c_str());
  }
  return 0;
}

}  // namespace hedgelab::cli
