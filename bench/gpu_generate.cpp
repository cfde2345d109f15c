// GPU: the student's recurrent decoding (docs/method.md §6, "decoding") at a Pythia shape with random
// weights, bf16, for each batch × context: the context is prefilled with the parallel forward that hands over
// its state (in pieces, so that the logits of a piece fit), then --decode tokens are generated greedily one
// step at a time. Reported: per-token decode time (CUDA-event median), decode tokens/s (batch / per-token
// time), the prefill time, the state's bytes per sequence and the allocator's peak. bench/gpu_hf_generate.py
// measures transformers' GPTNeoX with its KV cache at the same settings. A configuration that runs out of
// memory reports "oom"; "decode_kernels" is which path core/ops' dispatch took in the decoding steps, warm-up
// included (ops/dispatch_tally.h): "causal_conv unsupported" is expected there, since the conv kernel keeps
// no streaming tail and a decoding step's one-token product runs in ATen. One JSON line each. Usage:
// bench_gpu_generate [--model 160m] [--batches 1,64]
// [--contexts 1024,8192,32768] [--decode 32]
#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/gpu_bench_util.h"
#include "core/models/student.h"
#include "core/ops/dispatch_tally.h"

using namespace hedgelab;

namespace {

int64_t state_bytes(const models::StudentState& s) {
  int64_t n = 0;
  for (const auto& l : s.layers)
    for (const at::Tensor* t : {&l.scan.S, &l.scan.n, &l.conv_x, &l.conv_k, &l.conv_q})
      if (t->defined()) n += t->numel() * t->element_size();
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "160m";
  std::vector<std::string> batches = {"1", "64"}, contexts = {"1024", "8192", "32768"};
  int decode = 32;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--model")
      model = v;
    else if (a == "--batches")
      batches = bench::split_list(v);
    else if (a == "--contexts")
      contexts = bench::split_list(v);
    else if (a == "--decode")
      decode = std::stoi(v);
  }
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "no CUDA device\n");
    return 1;
  }
  auto cfg = bench::pythia_config(model);
  cfg.max_position_embeddings = 65536;  // decoding past the training context is what is measured here
  torch::manual_seed(0);
  models::HedgeMambaStudent student(cfg, models::MixerOptions{});
  student->to(at::kCUDA, at::kBFloat16);
  student->eval();
  const auto ids_opts = at::TensorOptions().dtype(at::kLong).device(at::kCUDA);
  for (const auto& bs : batches) {
    for (const auto& cs : contexts) {
      const int64_t B = std::stoll(bs), ctx = std::stoll(cs);
      at::NoGradGuard no_grad;
      std::string error, kernels = "none";
      double prefill_s = 0, token_ms = 0, peak = 0;
      int64_t bytes = 0;
      c10::cuda::CUDACachingAllocator::emptyCache();
      bench::reset_peak_memory();
      try {
        models::StudentState state;
        // Pieces of at most 2^15 tokens over the batch, so that a piece's logits [B, piece, V] stay ~3 GiB.
        const int64_t piece = std::max<int64_t>(64, std::min<int64_t>(4096, (int64_t(1) << 15) / B));
        const auto t0 = std::chrono::steady_clock::now();
        at::Tensor last;
        for (int64_t at_pos = 0; at_pos < ctx; at_pos += piece) {
          const int64_t n = std::min(piece, ctx - at_pos);
          const at::Tensor ids = at::randint(0, cfg.vocab_size, {B, n}, ids_opts);  // [B, n]
          last = student->forward(ids, state).select(1, n - 1);                     // [B, V]
        }
        torch::cuda::synchronize();
        prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        bytes = state_bytes(state) / B;
        at::Tensor next = last.argmax(-1);  // [B]
        ops::reset_dispatch_tally();
        token_ms = bench::median_ms([&] { next = student->step(next, state).argmax(-1); }, 3, decode);
        kernels = ops::describe_dispatch_tally(ops::dispatch_tally());
        peak = bench::peak_allocated_gib();
      } catch (const std::exception& e) {
        error = e.what();
      }
      if (!error.empty()) {
        const bool oom = error.find("out of memory") != std::string::npos;
        std::printf(
            "{\"bench\":\"generate\",\"impl\":\"hedgelab_student\",\"model\":\"pythia-%s\",\"B\":%lld,"
            "\"context\":%lld,\"oom\":%s,\"error\":\"%s\"}\n",
            model.c_str(), (long long)B, (long long)ctx, oom ? "true" : "false",
            bench::json_safe(error).c_str());
      } else {
        std::printf(
            "{\"bench\":\"generate\",\"impl\":\"hedgelab_student\",\"model\":\"pythia-%s\",\"B\":%lld,"
            "\"context\":%lld,\"token_ms\":%.3f,\"decode_tokens_per_s\":%.0f,\"prefill_s\":%.2f,"
            "\"state_bytes_per_sequence\":%lld,\"peak_gib\":%.2f,\"decode_kernels\":\"%s\"}\n",
            model.c_str(), (long long)B, (long long)ctx, token_ms, B / (token_ms * 1e-3), prefill_s,
            (long long)bytes, peak, bench::json_safe(kernels).c_str());
      }
      std::fflush(stdout);
    }
  }
  return 0;
}
