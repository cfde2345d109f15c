// Training throughput of the two stages on a preset (default: demo): tokens/s of stage-1 and stage-2
// optimizer steps as a DistillRun takes them (teacher forward, losses, backward, AdamW), median over timed
// steps after warm-up, plus the cost of one probe snapshot and one checkpoint of each stage.
// Usage: bench_stage_steps [--preset NAME] [--steps N] [--warmup N] [--threads N]. Prints one JSON line per
// stage. Needs the preset's corpus (data/kjv.txt for the demo: scripts/extract-kjv.sh).
#include <ATen/ATen.h>
#include <torch/version.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/common/paths.h"
#include "core/common/threads.h"
#include "core/data/corpus.h"
#include "core/data/tokenizer_encoder.h"
#include "core/distill/recipe.h"
#include "core/io/checkpoint.h"
#include "core/io/tokenizer.h"
#include "core/models/gpt_neox.h"
#include "core/run/distill_run.h"
#include "sessions/session_recorder.h"
#include "sessions/session_writer.h"

using namespace hedgelab;

namespace {

struct Timer : run::RunObserver {
  std::vector<double> tokens_per_s;  // as the trainer measured each step
  void on_step(const std::string&, const snapshot::StepReport& r) override {
    tokens_per_s.push_back(r.tokens_per_second);
  }
};

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  prefer_passive_openmp_wait(argv);
  std::string preset = "demo";
  int64_t steps = 30, warmup = 5;
  int threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--preset")
      preset = argv[i + 1];
    else if (a == "--steps")
      steps = std::stoll(argv[i + 1]);
    else if (a == "--warmup")
      warmup = std::stoll(argv[i + 1]);
    else if (a == "--threads")
      threads = std::stoi(argv[i + 1]);
  }
  threads = configure_threads(threads);
  try {
    const distill::RecipeConfig base = distill::load_preset(preset);
    const std::string dir = base.teacher == "demo" ? demo_teacher_dir().string() : base.teacher;
    auto folder = io::CheckpointFolder::open(dir);
    auto teacher = models::load_gpt_neox(folder);
    auto tok = io::Tokenizer::from_file(*folder.tokenizer_path());
    data::CorpusOptions co;
    co.heldout_fraction = base.data.heldout_fraction;
    auto corpus = data::load_corpus(
        base.corpus == "default" ? data::default_corpus_path() : std::filesystem::path(base.corpus),
        data::text_encoder_for(tok), co);
    run::ProbeText probe;
    for (auto id : tok.encode(base.data.probe_text)) {
      probe.ids.push_back(id);
      probe.pieces.push_back(tok.decode({id}));
    }
    for (const char* stage : {"stage1", "stage2"}) {
      distill::RecipeConfig r = base;
      const int64_t n = warmup + steps;
      // Budgets of exactly n steps in the measured stage (the other one skipped); no evaluations, probes or
      // checkpoints inside the timed steps.
      r.stage1.tokens = std::string(stage) == "stage1" ? n * r.tokens_per_step() : 0;
      r.stage2.tokens = std::string(stage) == "stage2" ? n * r.tokens_per_step() : 0;
      r.data.eval_every = 1000000000;
      r.data.probe_every = 0;
      r.data.checkpoint_every = 0;
      Timer timer;
      run::DistillRun run(r, teacher, corpus, probe, &timer);
      run.run(n - 1);  // stop before the last step: no final evaluation in the measurement
      std::vector<double> measured(
          timer.tokens_per_s.begin() + std::min<int64_t>(warmup, timer.tokens_per_s.size()),
          timer.tokens_per_s.end());
      // One probe snapshot and one checkpoint of the model as it stands.
      const auto c0 = std::chrono::steady_clock::now();
      const run::Checkpoint cp = run.checkpoint();
      const double checkpoint_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
      int64_t checkpoint_bytes = 0;
      for (const auto& [name, t] : cp.tensors)
        checkpoint_bytes += t.numel() * static_cast<int64_t>(t.element_size());
      distill::Prober prober(
          teacher, at::tensor(probe.ids, at::kLong).unsqueeze(0), probe.pieces,
          corpus.heldout().size() > r.data.context * 4
              ? data::eval_batch(corpus.heldout(), r.data.context,
                                 {0, r.data.context, 2 * r.data.context, 3 * r.data.context})
                    .narrow(1, 0, r.data.context)
              : at::Tensor());
      const auto p0 = std::chrono::steady_clock::now();
      const snapshot::ProbeSnapshot snap = std::string(stage) == "stage1"
                                               ? prober.stage1(run.stage1_model(), "bench", 0, 0)
                                               : prober.stage2(run.student(), "bench", 0, 0);
      const double probe_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count();
      // What the session costs: the snapshot appended, the checkpoint written (temporary folder, fsync,
      // rename, SHA-256), one step appended and committed.
      const auto dir =
          std::filesystem::temp_directory_path() / ("hedgelab-bench-" + std::to_string(::getpid()));
      std::filesystem::create_directories(dir);
      double session_probe_s = 0, session_checkpoint_s = 0, session_step_s = 0;
      {
        auto writer = sessions::SessionWriter::create(
            dir / "bench.h5", sessions::make_provenance(),
            sessions::layout_for(base, teacher->config(), static_cast<int64_t>(probe.ids.size())));
        auto t = std::chrono::steady_clock::now();
        auto lap = [&t] {
          const auto now = std::chrono::steady_clock::now();
          const double s = std::chrono::duration<double>(now - t).count();
          t = now;
          return s;
        };
        writer.append_probe(snap);
        session_probe_s = lap();
        sessions::CheckpointRecord rec{cp.run, cp.stage, cp.step, cp.tensors, cp.meta};
        writer.write_checkpoint(rec);
        session_checkpoint_s = lap();
        snapshot::StepReport report;
        report.step = 1;
        report.parts = {{std::string(stage) == "stage1" ? "cosine.layers.0" : "ce", 1.0}};
        writer.append_step(run.name(), stage, report, 1.0);
        writer.flush();
        session_step_s = lap();
        writer.close();
      }
      std::filesystem::remove_all(dir);
      nlohmann::json j = {{"bench", "stage_steps"},
                          {"preset", preset},
                          {"stage", stage},
                          {"threads", threads},
                          {"hardware_threads", std::thread::hardware_concurrency()},
                          {"libtorch", TORCH_VERSION},
                          {"tokens_per_step", r.tokens_per_step()},
                          {"timed_steps", measured.size()},
                          {"median_tokens_per_s", median(measured)},
                          {"median_step_s", r.tokens_per_step() / std::max(median(measured), 1e-9)},
                          {"probe_snapshot_s", probe_s},
                          {"session_append_probe_s", session_probe_s},
                          {"session_write_checkpoint_s", session_checkpoint_s},
                          {"session_append_step_s", session_step_s},
                          {"checkpoint_capture_s", checkpoint_s},
                          {"checkpoint_bytes", checkpoint_bytes}};
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_stage_steps: %s\n", e.what());
    return 1;
  }
  return 0;
}
