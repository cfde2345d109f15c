// GPU: the recipe's own training step at Pythia shapes, through run::DistillRun exactly as `hedgelab-cli
// distill` runs it on CUDA (random weights, a random-token corpus): bf16 autocast with float32 weights, AdamW
// state and losses, with and without activation checkpointing. Per configuration one JSON line:
//   step_ms (median over the timed steps, wall clock: the trainer synchronises once a step), tokens/s,
//   model FLOPs utilisation (stage 2: (6·student + 2·teacher parameters)·tokens over the step time against
//   --peak-tflops), the allocator's peak memory (weights, optimizer state, activations), and the teacher's
//   forward under the same autocast, for the stage-1 ratio, and "kernels": which path core/ops' dispatch took
//   over the run's steps, op by op (ops/dispatch_tally.h: a fused kernel not taken shows as "unsupported" or
//   "switched off"). A configuration that runs out of memory reports "oom" (the run pauses as it would for a
//   user).
// Usage: bench_gpu_recipe_step [--models 160m,410m,1b] [--stages 1,2] [--checkpointing off,on]
//        [--batch 4] [--context 2048] [--steps 6] [--warmup 2] [--dtype bfloat16] [--peak-tflops 989]
//        [--teacher-reps 5] (0 skips the teacher's forward, e.g. under a profiler: its fields then read 0)
//        [--trace DIR] (LibTorch ≥ 2 with Kineto: one more step after the timed ones under the profiler, CPU
//        ops and CUDA kernels, saved as DIR/<model>-stage<S>-ckpt<on|off>.json for
//        bench/gpu_trace_summary.py; the timed steps are not profiled)
#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR >= 2 && __has_include(<torch/csrc/autograd/profiler_kineto.h>)
#include <torch/csrc/autograd/profiler_kineto.h>
#define HEDGELAB_BENCH_TRACE 1
#else
#define HEDGELAB_BENCH_TRACE 0
#endif

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "bench/gpu_bench_util.h"
#include "core/data/corpus.h"
#include "core/distill/recipe.h"
#include "core/ops/autocast.h"
#include "core/ops/dispatch_tally.h"
#include "core/run/distill_run.h"

namespace {

using namespace hedgelab;

struct StepTimes : run::RunObserver {
  std::vector<double> seconds;  // per optimizer step
  void on_step(const std::string&, const snapshot::StepReport& r) override {
    if (r.tokens_per_second > 0) seconds.push_back(static_cast<double>(r.tokens) / r.tokens_per_second);
  }
};

// `n` uniform random ids below `vocab` as a uint16 .bin corpus.
std::filesystem::path random_corpus(int64_t n, int64_t vocab) {
  const auto path = std::filesystem::temp_directory_path() / "hedgelab-bench-random-tokens.bin";
  std::mt19937 rng(0);
  std::uniform_int_distribution<int> id(0, static_cast<int>(vocab) - 1);
  std::vector<uint16_t> ids(static_cast<size_t>(n));
  for (auto& v : ids)
    v = static_cast<uint16_t>(id(rng));
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(ids.data()),
             static_cast<std::streamsize>(ids.size() * sizeof(uint16_t)));
  return path;
}

// One more step of `run` (already at `done` steps) under the Kineto profiler, saved to `path`; false where
// this LibTorch has no Kineto API.
bool traced_step(run::DistillRun& run, int64_t done, const std::string& path) {
#if HEDGELAB_BENCH_TRACE
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  const std::set<ActivityType> activities = {ActivityType::CPU, ActivityType::CUDA};
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  run.run(done + 1);
  torch::cuda::synchronize();
  prof::disableProfiler()->save(path);
  return true;
#else
  (void)run, (void)done, (void)path;
  return false;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> models = {"160m", "410m", "1b"}, stages = {"1", "2"},
                           checkpointing = {"off", "on"};
  int64_t B = 4, T = 2048;
  int steps = 6, warmup = 2, teacher_reps = 5;
  std::string dtype = "bfloat16", trace_dir;
  double peak = 989.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--models")
      models = bench::split_list(v);
    else if (a == "--stages")
      stages = bench::split_list(v);
    else if (a == "--checkpointing")
      checkpointing = bench::split_list(v);
    else if (a == "--batch")
      B = std::stoll(v);
    else if (a == "--context")
      T = std::stoll(v);
    else if (a == "--steps")
      steps = std::stoi(v);
    else if (a == "--warmup")
      warmup = std::stoi(v);
    else if (a == "--dtype")
      dtype = v;
    else if (a == "--peak-tflops")
      peak = std::stod(v);
    else if (a == "--teacher-reps")
      teacher_reps = std::stoi(v);
    else if (a == "--trace")
      trace_dir = v;
  }
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "no CUDA device\n");
    return 1;
  }
  const int64_t vocab = 50304;
  data::TextEncoder encoder;
  encoder.vocab_size = vocab;
  data::CorpusOptions copts;
  copts.use_cache = false;
  const data::TokenCorpus corpus = data::load_corpus(random_corpus(int64_t(8) << 20, vocab), encoder, copts);

  for (const auto& name : models) {
    for (const auto& stage : stages) {
      for (const auto& ck : checkpointing) {
        const bool recompute = ck == "on";
        std::string oom, kernels = "none";
        double step_s = 0.0, fwd_ms = 0.0, peak_gib = 0.0;
        int64_t teacher_params = 0, student_params = 0;
        try {
          torch::manual_seed(0);
          const auto cfg = bench::pythia_config(name);
          models::GptNeoXForCausalLM teacher(cfg);
          teacher_params = bench::count_params(*teacher);
          distill::RecipeConfig r;
          r.name = "pythia-" + name + "-bench";
          r.device = "cuda";
          r.dtype = dtype;
          r.activation_checkpointing = recompute;
          r.data.context = T;
          r.data.batch_size = B;
          r.data.heldout_fraction = 0.01;
          r.data.eval_every = 0;
          r.data.eval_windows = 1;
          r.data.probe_every = 0;
          r.data.checkpoint_every = 0;
          r.model.chunk = 128;
          const int64_t per_step = B * T;
          r.stage1.tokens = stage == "1" ? 1000 * per_step : 0;
          r.stage2.tokens = 1000 * per_step;
          bench::reset_peak_memory();
          ops::reset_dispatch_tally();
          StepTimes times;
          run::DistillRun run(r, teacher, corpus, {}, &times, "bench");
          const auto state = run.run(warmup + steps);
          kernels = ops::describe_dispatch_tally(ops::dispatch_tally());  // before the teacher-only timing
          if (state == snapshot::RunState::Paused) {
            oom = run.last_error();
          } else {
            std::vector<double> timed(times.seconds.begin() + std::min<size_t>(warmup, times.seconds.size()),
                                      times.seconds.end());
            std::sort(timed.begin(), timed.end());
            step_s = timed.empty() ? 0.0 : timed[timed.size() / 2];
            if (!trace_dir.empty()) {
              std::filesystem::create_directories(trace_dir);
              const std::string path =
                  trace_dir + "/" + name + "-stage" + stage + "-ckpt" + (recompute ? "on" : "off") + ".json";
              if (!traced_step(run, warmup + steps, path))
                std::fprintf(stderr, "--trace: this LibTorch has no Kineto profiler API; no trace\n");
            }
          }
          peak_gib = bench::peak_allocated_gib();
          if (run.student()) student_params = bench::count_params(*run.student());
          if (teacher_reps > 0) {
            const at::Tensor ids =
                at::randint(0, vocab, {B, T}, at::TensorOptions().dtype(at::kLong).device(at::kCUDA));
            fwd_ms = bench::median_ms(
                [&] {
                  at::NoGradGuard no_grad;
                  const ops::AutocastScope autocast(distill::autocast_of(r));
                  teacher->forward(ids);
                },
                2, teacher_reps);
          }
        } catch (const std::exception& e) {
          oom = e.what();
        }
        if (!oom.empty()) {
          std::printf(
              "{\"bench\":\"recipe_step\",\"model\":\"pythia-%s\",\"stage\":%s,\"dtype\":\"%s\","
              "\"checkpointing\":%s,\"B\":%lld,\"T\":%lld,\"oom\":%s,\"peak_gib\":%.2f,\"error\":\"%s\"}\n",
              name.c_str(), stage.c_str(), dtype.c_str(), recompute ? "true" : "false", (long long)B,
              (long long)T, oom.find("out of memory") != std::string::npos ? "true" : "false", peak_gib,
              bench::json_safe(oom).c_str());
        } else {
          const double tokens_per_s = B * T / step_s;
          const double flops = stage == "2" ? (6.0 * student_params + 2.0 * teacher_params) * B * T : 0.0;
          const double tflops = flops / step_s / 1e12;
          std::printf(
              "{\"bench\":\"recipe_step\",\"model\":\"pythia-%s\",\"stage\":%s,\"dtype\":\"%s\","
              "\"checkpointing\":%s,\"B\":%lld,\"T\":%lld,\"step_ms\":%.2f,\"tokens_per_s\":%.0f,"
              "\"model_tflops\":%.1f,\"mfu\":%.3f,\"peak_gib\":%.2f,\"teacher_fwd_ms\":%.2f,"
              "\"step_over_teacher_fwd\":%.2f,\"teacher_params\":%lld,\"student_params\":%lld,"
              "\"kernels\":\"%s\"}\n",
              name.c_str(), stage.c_str(), dtype.c_str(), recompute ? "true" : "false", (long long)B,
              (long long)T, step_s * 1e3, tokens_per_s, tflops, tflops / peak, peak_gib, fwd_ms,
              fwd_ms > 0 ? step_s * 1e3 / fwd_ms : 0.0, (long long)teacher_params, (long long)student_params,
              bench::json_safe(kernels).c_str());
        }
        std::fflush(stdout);
        c10::cuda::CUDACachingAllocator::emptyCache();
      }
    }
  }
  return 0;
}
