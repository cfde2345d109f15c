// Training a GPT-NeoX teacher from scratch (how the demo teacher is made): AdamW, warmup + cosine, gradient
// clipping and accumulation, held-out perplexity as it goes, best checkpoint kept as a Hugging Face folder.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/models/gpt_neox.h"

namespace hedgelab::io {
class Tokenizer;
}

namespace hedgelab::train {

struct PretrainConfig {
  models::GptNeoXConfig model;  // vocab_size comes from the tokenizer
  int64_t context = 128;        // T
  int64_t batch_size = 16;      // B per micro-batch
  int64_t accumulation = 1;     // micro-batches per optimizer step
  int64_t steps = 1000;
  double lr = 3e-3;
  double min_lr = 3e-4;
  int64_t warmup_steps = 100;
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.95;
  double grad_clip = 1.0;
  int64_t eval_every = 100;
  uint64_t seed = 0;

  nlohmann::json to_json() const;
  void validate() const;  // Error naming the field and the expected range
};

struct PretrainData {
  std::function<at::Tensor()> next_batch;  // [B, T+1] int64 training windows
  at::Tensor heldout_windows;              // [N, T+1] int64, the §5 protocol's windows
};

struct PretrainStep {
  int64_t step = 0, total_steps = 0;
  double loss = 0.0, lr = 0.0, grad_norm = 0.0, tokens_per_second = 0.0;
  int64_t tokens_seen = 0;
};

struct PretrainEval {
  int64_t step = 0;
  double heldout_perplexity = 0.0;
  double best_perplexity = 0.0;
  bool saved = false;  // this evaluation improved on the best and was written out
};

struct PretrainResult {
  double best_perplexity = 0.0;
  int64_t best_step = 0;
  int64_t steps_done = 0;
  int64_t tokens_seen = 0;
  double seconds = 0.0;
  bool stopped_early = false;
};

struct PretrainCallbacks {
  std::function<void(const PretrainStep&)> on_step;
  std::function<void(const PretrainEval&)> on_eval;
  const std::atomic<bool>* stop_requested = nullptr;  // honoured between steps
};

// GPT-NeoX's initialisation: N(0, 0.02) weights, output projections scaled by 1/sqrt(2L), zero biases.
void init_gpt_neox_weights(models::GptNeoXForCausalLM& model, uint64_t seed);

// Trains and keeps the checkpoint with the best held-out perplexity in `out_dir` (replaced whole, never
// half-written), plus pretrain.json with the config and the result.
PretrainResult pretrain(const PretrainConfig& config, PretrainData& data, const io::Tokenizer& tokenizer,
                        const std::filesystem::path& out_dir, const PretrainCallbacks& callbacks = {});

}  // namespace hedgelab::train
