// GPU: causal normalized linear attention (Hedgehog stage 1) at the Pythia stage-1 shapes, each form core/ops
// offers on CUDA: the fused kernel (cuda/), the chunked ATen form at several chunk lengths, and the quadratic
// (masked matmul) form. bf16 inputs φ(q), φ(k) [B,H,T,N] (positive, rows of a softmax) and v [B,H,T,P];
// forward, and forward+backward (gradients of all three), CUDA-event medians after warm-up, plus the
// allocator's peak for the forward+backward. One JSON line a form and shape.
// Usage: bench_gpu_linear_attention [--models 160m,410m,1b] [--batch 4] [--T 2048] [--reps 10]
#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench/gpu_bench_util.h"
#include "core/ops/hedge_mamba_scan.h"
#include "core/ops/linear_attention.h"

using namespace hedgelab;

int main(int argc, char** argv) {
  std::vector<std::string> models = {"160m", "410m", "1b"};
  int64_t B = 4, T = 2048;
  int reps = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--models")
      models = bench::split_list(v);
    else if (a == "--batch")
      B = std::stoll(v);
    else if (a == "--T")
      T = std::stoll(v);
    else if (a == "--reps")
      reps = std::stoi(v);
  }
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "no CUDA device\n");
    return 1;
  }
  const auto opts = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA);
  struct Form {
    std::string name;
    int64_t chunk;  // 0: quadratic
    bool fused;
  };
  const std::vector<Form> forms = {{"fused", 64, true},
                                   {"aten_chunked_64", 64, false},
                                   {"aten_chunked_128", 128, false},
                                   {"aten_chunked_256", 256, false},
                                   {"quadratic", 0, false}};
  for (const auto& name : models) {
    const auto cfg = bench::pythia_config(name);
    const int64_t H = cfg.num_heads, P = cfg.hidden_size / cfg.num_heads, N = 2 * P;
    at::manual_seed(0);
    const at::Tensor q = at::softmax(at::randn({B, H, T, N}, opts.dtype(at::kFloat)), -1).to(at::kBFloat16);
    const at::Tensor k = at::softmax(at::randn({B, H, T, N}, opts.dtype(at::kFloat)), -1).to(at::kBFloat16);
    const at::Tensor v = at::randn({B, H, T, P}, opts);
    const at::Tensor gy = at::randn({B, H, T, P}, opts);
    for (const auto& f : forms) {
      std::string error;
      double fwd = 0, fwdbwd = 0, peak = 0;
      try {
        ops::set_use_reference_scan(!f.fused);
        ops::set_prefer_fused_linear_attention(f.fused);
        auto run = [&](const at::Tensor& a, const at::Tensor& b, const at::Tensor& c) {
          return f.chunk == 0 ? ops::linear_attention_quadratic(a, b, c, 1e-6)
                              : ops::linear_attention_chunked(a, b, c, f.chunk, 1e-6);
        };
        fwd = bench::median_ms(
            [&] {
              at::NoGradGuard no_grad;
              run(q, k, v);
            },
            2, reps);
        const at::Tensor qg = q.detach().requires_grad_(), kg = k.detach().requires_grad_(),
                         vg = v.detach().requires_grad_();
        bench::reset_peak_memory();
        fwdbwd = bench::median_ms(
            [&] {
              torch::autograd::grad({run(qg, kg, vg)}, {qg, kg, vg}, {gy});
            },
            2, reps);
        peak = bench::peak_allocated_gib();
      } catch (const std::exception& e) {
        error = bench::json_safe(e.what());
      }
      ops::set_use_reference_scan(false);
      ops::set_prefer_fused_linear_attention(false);
      if (!error.empty())
        std::printf(
            "{\"bench\":\"linear_attention\",\"model\":\"pythia-%s\",\"form\":\"%s\",\"error\":\"%s\"}\n",
            name.c_str(), f.name.c_str(), error.c_str());
      else
        std::printf(
            "{\"bench\":\"linear_attention\",\"model\":\"pythia-%s\",\"form\":\"%s\",\"B\":%lld,\"H\":%lld,"
            "\"T\":%lld,\"N\":%lld,\"P\":%lld,\"fwd_ms\":%.3f,\"fwdbwd_ms\":%.3f,\"peak_gib\":%.2f}\n",
            name.c_str(), f.name.c_str(), (long long)B, (long long)H, (long long)T, (long long)N,
            (long long)P, fwd, fwdbwd, peak);
      std::fflush(stdout);
      c10::cuda::CUDACachingAllocator::emptyCache();
    }
  }
  return 0;
}
