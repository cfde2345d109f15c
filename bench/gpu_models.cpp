// GPU: model-level throughput at Pythia shapes with random weights, bf16 weights and activations on one CUDA
// device (no autocast: the whole model cast to bf16; the loss in float32), CUDA-event medians after warm-up.
//   teacher_fwd   GPT-NeoX forward, no grad (attention through scaled_dot_product_attention on LibTorch ≥ 2)
//   stage2_step   the stage-2 step's compute: teacher forward (no grad) + student forward, CE + τ²·KL in
//                 float32, backward (no optimizer update)
// MFU: 6·(student parameters)·tokens + 2·(teacher parameters)·tokens over the step time, against the bf16
// dense peak given by --peak-tflops (H100 SXM datasheet 989; the measured 8192³ matmul there: ~798).
// Usage: bench_gpu_models [--models 160m,410m,1b] [--batch 4] [--context 2048] [--reps 10]
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "bench/gpu_bench_util.h"
#include "core/models/gpt_neox.h"
#include "core/models/student.h"

using hedgelab::bench::count_params;
using hedgelab::bench::median_ms;
using hedgelab::bench::pythia_config;

int main(int argc, char** argv) {
  std::vector<std::string> models = {"160m", "410m", "1b"};
  int64_t B = 4, T = 2048;
  int reps = 10;
  double peak = 989.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--models") {
      models.clear();
      std::stringstream ss(v);
      std::string m;
      while (std::getline(ss, m, ','))
        models.push_back(m);
    } else if (a == "--batch")
      B = std::stoll(v);
    else if (a == "--context")
      T = std::stoll(v);
    else if (a == "--reps")
      reps = std::stoi(v);
    else if (a == "--peak-tflops")
      peak = std::stod(v);
  }
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "no CUDA device\n");
    return 1;
  }
  const at::Device dev(at::kCUDA);
  for (const auto& name : models) {
    try {
      torch::manual_seed(0);
      const auto cfg = pythia_config(name);
      hedgelab::models::GptNeoXForCausalLM teacher(cfg);
      teacher->to(dev, at::kBFloat16);
      teacher->eval();
      const at::Tensor ids =
          at::randint(0, cfg.vocab_size, {B, T}, at::TensorOptions().dtype(at::kLong).device(dev));
      const double t_fwd = median_ms(
          [&] {
            at::NoGradGuard ng;
            teacher->forward(ids);
          },
          2, reps);
      const int64_t teacher_params = count_params(*teacher);
      std::printf(
          "{\"bench\":\"teacher_fwd\",\"model\":\"pythia-%s\",\"B\":%lld,\"T\":%lld,\"ms\":%.3f,"
          "\"tokens_per_s\":%.0f,\"params\":%lld}\n",
          name.c_str(), (long long)B, (long long)T, t_fwd, B * T / (t_fwd * 1e-3), (long long)teacher_params);
      std::fflush(stdout);

      hedgelab::models::MixerOptions mo;
      hedgelab::models::HedgeMambaStudent student(cfg, mo);
      student->to(dev, at::kBFloat16);
      student->train();
      const int64_t student_params = count_params(*student);
      const at::Tensor targets = at::randint(0, cfg.vocab_size, {B, T}, ids.options());  // [B, T]
      const double tau = 2.0;
      const double t_step = median_ms(
          [&] {
            at::Tensor t_logits;
            {
              at::NoGradGuard ng;
              t_logits = teacher->forward(ids).logits;  // [B, T, V]
            }
            const at::Tensor s_logits = student->forward(ids).to(at::kFloat);  // [B, T, V]
            const at::Tensor ce = at::cross_entropy_loss(s_logits.view({B * T, -1}), targets.view({B * T}));
            const at::Tensor kl = at::kl_div(at::log_softmax(s_logits / tau, -1),
                                             at::log_softmax(t_logits.to(at::kFloat) / tau, -1),
                                             at::Reduction::Mean, /*log_target=*/true) *
                                  (tau * tau);
            (ce + kl).backward();
          },
          2, std::max(3, reps / 2));
      student->zero_grad();
      const double flops = 6.0 * student_params * B * T + 2.0 * teacher_params * B * T;
      const double tflops = flops / (t_step * 1e-3) / 1e12;
      std::printf(
          "{\"bench\":\"stage2_step\",\"model\":\"pythia-%s\",\"B\":%lld,\"T\":%lld,\"ms\":%.3f,"
          "\"tokens_per_s\":%.0f,\"student_params\":%lld,\"model_tflops\":%.1f,\"mfu\":%.3f,"
          "\"peak_tflops\":%.0f}\n",
          name.c_str(), (long long)B, (long long)T, t_step, B * T / (t_step * 1e-3),
          (long long)student_params, tflops, tflops / peak, peak);
      std::fflush(stdout);
    } catch (const std::exception& e) {
      std::printf("{\"bench\":\"error\",\"model\":\"pythia-%s\",\"error\":\"%s\"}\n", name.c_str(),
                  hedgelab::bench::json_safe(e.what()).c_str());
      std::fflush(stdout);
    }
    c10::cuda::CUDACachingAllocator::emptyCache();
  }
  return 0;
}
