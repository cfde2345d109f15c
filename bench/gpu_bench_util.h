// Shared pieces of the GPU benchmarks (bench/gpu_*.cpp, scan_cuda.cpp): Pythia shapes, CUDA-event medians,
// parameter counts, peak-memory counters and JSON-safe error text. GPU builds only (LibTorch with CUDA).
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/torch.h>

#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/models/gpt_neox.h"

namespace hedgelab::bench {

// GPT-NeoX configs of Pythia-160m, -410m and -1b (vocabulary padded to 50304 as in the checkpoints).
inline models::GptNeoXConfig pythia_config(const std::string& name) {
  models::GptNeoXConfig c;
  c.vocab_size = 50304;
  c.max_position_embeddings = 2048;
  c.rotary_pct = 0.25;
  if (name == "160m") {
    c.hidden_size = 768, c.num_layers = 12, c.num_heads = 12, c.intermediate_size = 3072;
  } else if (name == "410m") {
    c.hidden_size = 1024, c.num_layers = 24, c.num_heads = 16, c.intermediate_size = 4096;
  } else if (name == "1b") {
    c.hidden_size = 2048, c.num_layers = 16, c.num_heads = 8, c.intermediate_size = 8192;
  } else {
    throw std::runtime_error("unknown model " + name + " (expected 160m, 410m or 1b)");
  }
  c.validate("pythia-" + name);
  return c;
}

// Median of `reps` timed calls of f (CUDA events on the current stream) after `warmup` untimed ones.
template <typename F>
double median_ms(F&& f, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i)
    f();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    at::cuda::CUDAEvent a(cudaEventDefault), b(cudaEventDefault);
    a.record();
    f();
    b.record();
    b.synchronize();
    ms.push_back(a.elapsed_time(b));
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

inline int64_t count_params(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters())
    n += p.numel();
  return n;
}

inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

// Device 0's allocator: peak allocated bytes since the last reset.
inline void reset_peak_memory() {
  c10::cuda::CUDACachingAllocator::resetPeakStats(0);
}
inline double peak_allocated_gib() {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  return static_cast<double>(stats.allocated_bytes[0].peak) / double(1 << 30);  // [0]: all pools
}

// An exception's first 300 characters on one line, without double quotes (for a JSON string).
inline std::string json_safe(const std::string& what) {
  std::string msg = what.substr(0, std::min<size_t>(what.size(), 300));
  std::replace(msg.begin(), msg.end(), '"', '\'');
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  std::replace(msg.begin(), msg.end(), '\\', '/');
  return msg;
}

}  // namespace hedgelab::bench
