// distill: the recipe from a preset as a resumable run recorded in a session, or with --compare the runs of
// docs/method.md §5 as a table.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "app/cli/args.h"
#include "app/cli/commands.h"
#include "app/cli/loading.h"
#include "app/launch/session_run.h"
#include "core/common/error.h"
#include "core/common/threads.h"
#include "core/distill/recipe_run.h"
#include "core/run/distill_run.h"
#include "core/util/atomic_file.h"
#include "core/util/progress.h"
#include "sessions/checkpoints.h"
#include "sessions/session_reader.h"
#include "sessions/session_writer.h"

namespace hedgelab::cli {

namespace {

nlohmann::json summary_json(const snapshot::RunSummary& s) {
  return {{"run", s.run},
          {"perplexity", s.perplexity},
          {"ratio_to_teacher", s.ratio_to_teacher},
          {"stage1_tokens", s.stage1_tokens},
          {"stage2_tokens", s.stage2_tokens},
          {"steps", s.steps},
          {"seconds", s.seconds},
          {"stopped_early", s.stopped_early}};
}

void print_table(const std::vector<snapshot::RunSummary>& rows, bool csv) {
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

// Progress on the terminal: a bar per stage with ETA (or one JSON line per step with --progress jsonl), the
// evaluations in the log, and Ctrl+C turned into a clean stop with a checkpoint.
class CliProgress : public run::RunObserver {
 public:
  CliProgress(bool bars, bool jsonl, std::string run) : bars_(bars), jsonl_(jsonl), run_(std::move(run)) {}
  void attach(run::DistillRun* r) { run_object_ = r; }

  void on_stage_start(const std::string& stage, int64_t total_steps) override {
    if (bar_) bar_->finish();
    bar_ = std::make_unique<util::ProgressBar>(run_ + " " + stage, total_steps, "steps");
    bar_->set_enabled(bars_);
  }
  void on_step(const std::string& stage, const snapshot::StepReport& r) override {
    if (jsonl_) {
      const nlohmann::json j = {{"run", run_},
                                {"stage", stage},
                                {"step", r.step},
                                {"total_steps", r.total_steps},
                                {"loss", r.total},
                                {"lr", r.lr},
                                {"tokens_per_s", r.tokens_per_second},
                                {"time", sessions::unix_now()}};
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
    char buf[128];
    std::snprintf(buf, sizeof buf, "loss %.4f lr %.2e |g| %.2f %.0f tok/s", r.total, r.lr, r.grad_norm,
                  r.tokens_per_second);
    if (bar_) bar_->update(r.step, buf);
    if (run_object_ && InterruptGuard::flag().load()) run_object_->stop();
  }
  void on_eval(const std::string& stage, const snapshot::EvalReport& e) override {
    for (const auto& [name, value] : e.metrics)
      spdlog::info("{} {} step {}: {} {:.4f}", run_, stage, e.step, name, value);
  }
  void on_state(snapshot::RunState, snapshot::RunState to, const std::string& reason) override {
    if (to == snapshot::RunState::Paused && reason != "pause requested") spdlog::error("{}", reason);
  }
  void finish() {
    if (bar_) bar_->finish();
  }

 private:
  bool bars_, jsonl_;
  std::string run_;
  run::DistillRun* run_object_ = nullptr;
  std::unique_ptr<util::ProgressBar> bar_;
};

}  // namespace

int run_distill(const Args& args) {
  ArgParser p(
      "distill",
      "Distil a GPT-NeoX teacher into a HedgeMamba student with the two-stage recipe of a preset\n"
      "(resources/presets; docs/presets.md). The run is recorded in an HDF5 session "
      "(docs/session-format.md)\n"
      "with checkpoints beside it; --resume continues a stopped or crashed one exactly. --compare runs\n"
      "teacher, hedgehog, direct and hedgemamba at equal token budgets on the same data order and prints\n"
      "held-out perplexity and the ratio to the teacher; --ablations adds no gate, no conv, no selective\n"
      "decay and the token splits.");
  p.option("preset", "NAME", "preset name or a recipe .json file", "demo")
      .option("teacher", "DIR", "teacher checkpoint (overrides the preset's)", "")
      .option("corpus", "PATH", "corpus (overrides the preset's)", "")
      .option("tokens-stage1", "N", "stage-1 token budget", "")
      .option("tokens-stage2", "N", "stage-2 token budget", "")
      .option("seed", "S", "seed of batch order and the direct baseline's init", "")
      .option("device", "D", "cpu or cuda (allowed with --resume: a run may continue elsewhere)", "")
      .option("dtype", "T", "float32, or bfloat16 on cuda (bf16 autocast, float32 weights and losses)", "")
      .option("batch-size", "B", "windows a micro-batch (with --resume: batch-size × accumulation must stay)",
              "")
      .option("accumulation", "A", "micro-batches an optimizer step", "")
      .option("checkpointing", "on|off", "activation checkpointing (recompute blocks in the backward)", "")
      .option("ablation", "NAME",
              "run the recipe with one ablation of docs/method.md §5 (no_gate, no_conv,\n"
              "no_selective_decay, split_10_90, split_25_75, split_50_50, split_75_25)",
              "")
      .option("stop-at-step", "K", "stop after K optimizer steps (both stages counted), with a checkpoint",
              "0")
      .option("session", "FILE", "write the session here (default: runs/<recipe>-<time>.h5)", "")
      .option("resume", "FILE", "continue the run of this session from its last complete checkpoint", "")
      .option("out", "DIR", "save the trained student here (config.json, model.safetensors, tokenizer.json)",
              "")
      .option("progress", "MODE", "bar (a progress bar with ETA) or jsonl (a JSON line per step on stdout)",
              "bar")
      .flag("compare", "run the comparison table of the paper")
      .flag("ablations", "with --compare: add the ablation rows")
      .flag("no-cache", "tokenize again instead of reading the tokenization cache")
      .flag("json", "print the result as JSON")
      .flag("csv", "with --compare: print the table as CSV");
  if (!p.parse(args)) return 0;
  if (p.enabled("ablations") && !p.enabled("compare"))
    throw UsageError("distill: --ablations needs --compare");
  const std::string progress_mode = p.str("progress");
  if (progress_mode != "bar" && progress_mode != "jsonl")
    throw UsageError("distill: --progress: expected bar or jsonl, got '" + progress_mode + "'");
  const std::string resume_from = p.str("resume");
  if (!resume_from.empty() && p.enabled("compare"))
    throw UsageError("distill: --resume continues one run; it does not combine with --compare");

  // The recipe: a preset with overrides, or the recipe a resumed session ran.
  distill::RecipeConfig recipe;
  if (!resume_from.empty()) {
    if (!p.str("preset").empty() && p.str("preset") != "demo")
      spdlog::warn("--resume: the session's recipe is used; --preset {} is ignored", p.str("preset"));
    for (const char* o : {"tokens-stage1", "tokens-stage2", "seed"})
      if (!p.str(o).empty())
        throw UsageError(std::string("distill: --") + o +
                         " cannot change a resumed run (its recipe is fixed)");
    recipe = launch::recipe_of_session(resume_from);
  } else {
    recipe = distill::load_preset(p.str("preset"));
  }
  nlohmann::json overrides = nlohmann::json::object();
  if (!p.str("teacher").empty()) overrides["teacher"] = p.str("teacher");
  if (!p.str("corpus").empty()) overrides["corpus"] = p.str("corpus");
  if (!p.str("tokens-stage1").empty()) overrides["stage1"]["tokens"] = p.integer("tokens-stage1", 0);
  if (!p.str("tokens-stage2").empty()) overrides["stage2"]["tokens"] = p.integer("tokens-stage2", 0);
  if (!p.str("seed").empty()) overrides["seed"] = p.integer("seed", 0);
  // Where and how the run executes: these may change when a run continues (run::DistillRun::restore).
  if (!p.str("device").empty()) overrides["device"] = p.str("device");
  if (!p.str("dtype").empty()) overrides["dtype"] = p.str("dtype");
  if (!p.str("batch-size").empty()) overrides["data"]["batch_size"] = p.integer("batch-size", 1);
  if (!p.str("accumulation").empty()) overrides["data"]["accumulation"] = p.integer("accumulation", 1);
  if (!p.str("checkpointing").empty()) {
    const std::string c = p.str("checkpointing");
    if (c != "on" && c != "off")
      throw UsageError("distill: --checkpointing: expected on or off, got '" + c + "'");
    overrides["activation_checkpointing"] = c == "on";
  }
  distill::apply_overrides(recipe, overrides, "command line");
  if (!p.str("ablation").empty()) {
    if (!resume_from.empty() || p.enabled("compare"))
      throw UsageError("distill: --ablation names one run; use --compare --ablations for the table");
    recipe = distill::with_ablation(recipe, p.str("ablation"));
  }
  const int threads = apply_recipe_threads(static_cast<int>(recipe.threads));
  spdlog::info("{} LibTorch threads", threads);
  const std::string out_dir = p.str("out");
  if (!out_dir.empty()) launch::check_writable_folder(out_dir);
  const bool as_json = p.enabled("json") || p.enabled("csv");
  const bool bars = !as_json && progress_mode == "bar";
  InterruptGuard interrupt_guard;
  std::vector<snapshot::RunSummary> rows;
  models::HedgeMambaStudent student{nullptr};
  std::filesystem::path session_path = p.str("session");
  std::string tokenizer_json;

  if (p.enabled("compare")) {
    if (session_path.empty()) session_path = launch::default_session_path(recipe.name);
    if (std::filesystem::exists(session_path))
      throw Error(session_path.string(),
                  "exists already; a session is never overwritten (choose another --session)");
    if (session_path.has_parent_path()) launch::check_writable_folder(session_path.parent_path());
    auto teacher = load_teacher(recipe.teacher == "demo" ? "" : recipe.teacher);
    auto tok = load_tokenizer(teacher.folder);
    auto corpus = load_corpus_with(tok, recipe.corpus == "default" ? "" : recipe.corpus,
                                   !p.enabled("no-cache"), recipe.data.heldout_fraction);
    const run::ProbeText probe = launch::probe_text_of(tok, recipe.data.probe_text);
    const int64_t probe_tokens = std::min<int64_t>(static_cast<int64_t>(probe.ids.size()),
                                                   teacher.model->config().max_position_embeddings);
    distill::RunEvents events;
    std::unique_ptr<util::ProgressBar> bar;
    std::optional<sessions::SessionWriter> writer;
    const auto t0 = std::chrono::steady_clock::now();
    auto wall = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    events.stop_requested = &InterruptGuard::flag();
    events.stop_at_step = p.integer("stop-at-step", 0);
    events.on_stage_start = [&](const std::string& run, const std::string& stage, int64_t steps) {
      if (bar) bar->finish();
      bar = std::make_unique<util::ProgressBar>(run + " " + stage, steps, "steps");
      bar->set_enabled(bars);
      writer->append_event("start", {{"run", run}, {"stage", stage}, {"steps", steps}});
    };
    events.on_step = [&](const std::string& run, const std::string& stage, const distill::StepReport& r) {
      char buf[128];
      std::snprintf(buf, sizeof buf, "loss %.4f lr %.2e |g| %.2f %.0f tok/s", r.total, r.lr, r.grad_norm,
                    r.tokens_per_second);
      if (bar) bar->update(r.step, buf);
      writer->append_step(run, stage, r, wall());
      writer->flush();
    };
    events.on_eval = [&](const std::string& run, const std::string& stage, const distill::EvalReport& e) {
      for (const auto& [name, value] : e.metrics)
        spdlog::info("{} {} step {}: {} {:.4f}", run, stage, e.step, name, value);
      writer->append_eval(run, stage, e);
    };
    distill::RecipeRunner runner(recipe, teacher.model, corpus, events);
    // Created once the runner has accepted the recipe, teacher and corpus: a refused run leaves no session.
    writer.emplace(sessions::SessionWriter::create(
        session_path, sessions::provenance_for(recipe, teacher.dir, teacher.folder.weight_files(), corpus),
        sessions::layout_for(recipe, teacher.model->config(), probe_tokens)));
    spdlog::info("session {}", session_path.string());
    spdlog::info(
        "recipe {}: stage 1 {} steps, stage 2 {} steps of {} tokens; final evaluation on {} held-out "
        "windows",
        recipe.name, recipe.stage1_steps(), recipe.stage2_steps(), recipe.tokens_per_step(),
        runner.heldout_windows().size(0));
    rows = runner.compare(p.enabled("ablations"));
    if (bar) bar->finish();
    writer->set_summary(rows);
    writer->append_event(InterruptGuard::flag().load() ? "stop" : "finish", {{"runs", rows.size()}});
    if (rows.empty() || !rows.back().stopped_early) writer->close();
  } else {
    CliProgress progress(bars, progress_mode == "jsonl", "hedgemamba");
    launch::RunRequest request;
    request.recipe = recipe;
    request.session = session_path;
    request.resume_from = resume_from;
    request.use_cache = !p.enabled("no-cache");
    launch::SessionRun session(request, &progress);
    session_path = session.session_path();
    tokenizer_json = session.tokenizer().to_json_text();
    run::DistillRun& run = session.run();
    progress.attach(&run);
    spdlog::info("recipe {}: stage 1 {} steps, stage 2 {} steps of {} tokens{}", recipe.name,
                 recipe.stage1_steps(), recipe.stage2_steps(), recipe.tokens_per_step(),
                 session.resumed() ? " (resumed at step " + std::to_string(run.steps_done()) + ")" : "");
    const auto state = session.step(p.integer("stop-at-step", 0));
    progress.finish();
    if (state == snapshot::RunState::Paused) {
      std::string how = "--resume " + session_path.string();
      if (run.last_error().find("out of memory") != std::string::npos && recipe.data.batch_size > 1)
        how += " --batch-size " + std::to_string(recipe.data.batch_size / 2) + " --accumulation " +
               std::to_string(recipe.data.accumulation * 2) +
               (recipe.data.batch_size % 2 ? " (odd: pick a divisor)" : "");
      throw Error("distill", run.last_error() + " (the last good state is checkpointed in " +
                                 session.recorder().last_checkpoint_dir().string() + "; resume with " + how +
                                 ")");
    }
    if (run.stage() == "done") {
      snapshot::RunSummary t;
      t.run = "teacher";
      t.perplexity = run.teacher_perplexity();
      t.ratio_to_teacher = 1.0;
      rows.push_back(t);
      student = run.student();
    }
    rows.push_back(run.summary());
    if (run.summary().stopped_early)
      spdlog::info("stopped at step {} of {}; continue with: hedgelab-cli distill --resume {}",
                   run.steps_done(), run.total_steps(), session_path.string());
  }

  if (!out_dir.empty() && student) {
    models::save_student(student, out_dir);
    util::write_file_atomically(std::filesystem::path(out_dir) / "tokenizer.json", tokenizer_json);
    spdlog::info("student saved in {}", out_dir);
  }

  if (p.enabled("csv")) {
    print_table(rows, true);
  } else if (p.enabled("json")) {
    nlohmann::json j = {
        {"recipe", recipe.to_json()}, {"session", session_path.string()}, {"runs", nlohmann::json::array()}};
    for (const auto& r : rows)
      j["runs"].push_back(summary_json(r));
    if (!out_dir.empty() && student) j["student"] = out_dir;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    print_table(rows, false);
    std::printf("\nsession %s\n", session_path.c_str());
    if (!out_dir.empty() && student) std::printf("student saved in %s\n", out_dir.c_str());
  }
  return 0;
}

}  // namespace hedgelab::cli
