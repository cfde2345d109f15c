// Teacher forward throughput: tokens/s of GptNeoXForCausalLM::forward on random ids, median of timed
// repetitions after warm-up. Usage: bench_teacher_forward [--checkpoint DIR] [--batch B] [--context T]
//   [--reps N] [--threads N]. Prints one JSON line.
#include <ATen/ATen.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/common/paths.h"
#include "core/common/threads.h"
#include "core/io/checkpoint.h"
#include "core/models/gpt_neox.h"

int main(int argc, char** argv) {
  hedgelab::prefer_passive_openmp_wait(argv);
  std::string dir;
  int64_t batch = 8, context = 128, reps = 10;
  int threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--checkpoint")
      dir = argv[i + 1];
    else if (a == "--batch")
      batch = std::stoll(argv[i + 1]);
    else if (a == "--context")
      context = std::stoll(argv[i + 1]);
    else if (a == "--reps")
      reps = std::stoll(argv[i + 1]);
    else if (a == "--threads")
      threads = std::stoi(argv[i + 1]);
  }
  threads = hedgelab::configure_threads(threads);
  if (dir.empty()) dir = hedgelab::demo_teacher_dir().string();
  auto model = hedgelab::models::load_gpt_neox(hedgelab::io::CheckpointFolder::open(dir));
  torch::NoGradGuard no_grad;
  at::Tensor ids = at::randint(0, model->config().vocab_size, {batch, context}, at::kLong);  // [B, T]
  for (int w = 0; w < 2; ++w)
    model->forward(ids);
  std::vector<double> seconds;
  for (int64_t r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    auto out = model->forward(ids);
    (void)out.logits.sum().item<float>();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  nlohmann::json j = {{"bench", "teacher_forward"},
                      {"checkpoint", dir},
                      {"batch", batch},
                      {"context", context},
                      {"threads", threads},
                      {"hardware_threads", std::thread::hardware_concurrency()},
                      {"libtorch", TORCH_VERSION},
                      {"median_s", median},
                      {"tokens_per_s", static_cast<double>(batch * context) / median},
                      {"parameters", model->config().parameter_count()}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}
