// GPU benchmark of the fused HedgeMamba scan (cuda/): forward and forward+backward, bf16 inputs, through the
// same entry point the mixer calls (ops::hedge_mamba_scan with the fused kernel registered), CUDA-event
// medians after warm-up, on fresh random inputs (never zeros). One JSON object a line on stdout:
//   {"op":"hedgelab_fused_scan","B":8,"T":2048,"H":8,"P":256,"N":64,"fwd_ms":…,"fwdbwd_ms":…,"fwd_min_bytes":…}
// fwd_min_bytes: x, Bm, Cm and num in bf16, Δ in float32, den in bf16, each moved once.
// Usage: bench_scan_cuda [--B 8] [--H 8] [--P 256] [--N 64,128,256] [--T 2048,4096,8192,16384] [--reps 20]
//        [--reference]   (the chunked ATen path instead of the fused kernel, for comparison)
//        [--state-pass auto,sequential,parallel]   (the state pass's forms to run, each shape under each;
//                         "state_pass" in the output)
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "core/ops/hedge_mamba_scan.h"
#include "cuda/register.h"

namespace {

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    v.push_back(std::stoll(item));
  return v;
}

template <typename F>
double median_ms(F&& f, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i)
    f();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
    start.record();
    f();
    stop.record();
    stop.synchronize();
    ms.push_back(start.elapsed_time(stop));
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int64_t B = 8, H = 8, P = 256;
  std::vector<int64_t> Ns = {64, 128, 256}, Ts = {2048, 4096, 8192, 16384};
  int reps = 20;
  bool reference = false;
  std::vector<std::string> passes = {"auto"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (a == "--B")
      B = std::stoll(next());
    else if (a == "--H")
      H = std::stoll(next());
    else if (a == "--P")
      P = std::stoll(next());
    else if (a == "--N")
      Ns = parse_list(next());
    else if (a == "--T")
      Ts = parse_list(next());
    else if (a == "--reps")
      reps = std::stoi(next());
    else if (a == "--reference")
      reference = true;
    else if (a == "--state-pass") {
      passes.clear();
      std::stringstream ss(next());
      for (std::string item; std::getline(ss, item, ',');) {
        if (item != "auto" && item != "sequential" && item != "parallel") {
          std::fprintf(stderr, "--state-pass: expected auto, sequential or parallel, got %s\n", item.c_str());
          return 2;
        }
        passes.push_back(item);
      }
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "no CUDA device\n");
    return 1;
  }
  hedgelab::cuda::register_kernels();
  hedgelab::ops::set_use_reference_scan(reference);
  const auto bf = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA);
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(at::kCUDA);
  using hedgelab::cuda::StatePass;
  for (int64_t N : Ns) {
    for (int64_t T : Ts) {
      for (const std::string& pass : passes) {
        hedgelab::cuda::set_scan_state_pass(pass == "sequential" ? StatePass::kSequential
                                            : pass == "parallel" ? StatePass::kParallel
                                                                 : StatePass::kAuto);
        at::manual_seed(T + N);
        const at::Tensor x = at::randn({B, H, T, P}, bf);  // [B, H, T, P]
        const at::Tensor Bm =
            at::softmax(at::randn({B, H, T, N}, f32), -1).to(at::kBFloat16);  // [B, H, T, N]
        const at::Tensor Cm =
            at::softmax(at::randn({B, H, T, N}, f32), -1).to(at::kBFloat16);  // [B, H, T, N]
        const at::Tensor dt = at::softplus(at::randn({B, H, T}, f32) - 2);    // [B, H, T]
        const at::Tensor A = -at::exp(at::randn({H}, f32) * 0.5);             // [H]
        const double fwd = median_ms(
            [&] {
              at::NoGradGuard ng;
              hedgelab::ops::hedge_mamba_scan(x, Bm, Cm, dt, A, 64);
            },
            3, reps);
        const at::Tensor xl = x.detach().requires_grad_(true), Bl = Bm.detach().requires_grad_(true);
        const at::Tensor Cl = Cm.detach().requires_grad_(true), dtl = dt.detach().requires_grad_(true);
        const at::Tensor Al = A.detach().requires_grad_(true);
        const at::Tensor gnum = at::randn({B, H, T, P}, bf), gden = at::randn({B, H, T}, bf);
        const double fb = median_ms(
            [&] {
              const auto out = hedgelab::ops::hedge_mamba_scan(xl, Bl, Cl, dtl, Al, 64);
              torch::autograd::grad({out.num, out.den}, {xl, Bl, Cl, dtl, Al}, {gnum, gden});
            },
            2, std::max(5, reps / 2));
        const double bytes = 2.0 * B * H * T * (2 * P + 2 * N + 1) + 4.0 * B * H * T;
        std::printf(
            "{\"op\":\"%s\",\"B\":%lld,\"T\":%lld,\"H\":%lld,\"P\":%lld,\"N\":%lld,\"fwd_ms\":%.4f,"
            "\"fwdbwd_ms\":%.4f,\"fwd_min_bytes\":%.0f,\"fwd_TBps\":%.3f,\"state_pass\":\"%s\"}\n",
            reference ? "hedgelab_chunked_aten" : "hedgelab_fused_scan", (long long)B, (long long)T,
            (long long)H, (long long)P, (long long)N, fwd, fb, bytes, bytes / (fwd * 1e-3) / 1e12,
            pass.c_str());
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
