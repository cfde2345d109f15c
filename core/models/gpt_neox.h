// The teacher: GPT-NeoX (Pythia family), computing what Hugging Face's GPTNeoXForCausalLM computes
// (docs/method.md §2). Module and parameter names mirror Hugging Face's tensor names exactly, so
// named_parameters() is the checkpoint's weight-name table. Shape symbols: docs/architecture.md, "Shapes".
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/ops/autocast.h"

namespace hedgelab::io {
class CheckpointFolder;
class Tokenizer;
}  // namespace hedgelab::io

namespace hedgelab::models {

enum class Activation { kGeluExact, kGeluTanh, kRelu, kSilu };

struct GptNeoXConfig {
  int64_t vocab_size = 0;         // V
  int64_t hidden_size = 0;        // d
  int64_t num_layers = 0;         // L
  int64_t num_heads = 0;          // H
  int64_t intermediate_size = 0;  // F
  int64_t max_position_embeddings = 2048;
  double rotary_pct = 0.25;  // fraction of each head's channels that are rotated
  double rotary_base = 10000.0;
  double rope_linear_factor = 1.0;  // rope_type "linear": positions divided by this
  double layer_norm_eps = 1e-5;
  bool use_parallel_residual = true;
  bool tie_word_embeddings = false;
  bool attention_bias = true;
  std::string hidden_act = "gelu";
  Activation activation = Activation::kGeluExact;
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;

  int64_t head_size() const { return hidden_size / num_heads; }                           // P
  int64_t rotary_dims() const { return static_cast<int64_t>(head_size() * rotary_pct); }  // r

  // Reads both shapes found in the wild (rotary_pct/rotary_emb_base, or rope_parameters / rope_scaling).
  // `source` names the file in error messages.
  static GptNeoXConfig from_json(const nlohmann::json& j, const std::string& source);
  // Writes both the older and the newer rotary keys so old and new transformers read the same thing.
  nlohmann::json to_json() const;
  void validate(const std::string& source) const;
  int64_t parameter_count() const;
};

// ---- modules; names are Hugging Face's -------------------------------------------------------------------

struct GptNeoXAttentionImpl : torch::nn::Module {
  explicit GptNeoXAttentionImpl(const GptNeoXConfig& c);
  torch::nn::Linear query_key_value{nullptr};  // [3d, d]: per head [q | k | v], not three d-blocks
  torch::nn::Linear dense{nullptr};            // [d, d]
};
TORCH_MODULE(GptNeoXAttention);

struct GptNeoXMlpImpl : torch::nn::Module {
  explicit GptNeoXMlpImpl(const GptNeoXConfig& c);
  torch::nn::Linear dense_h_to_4h{nullptr};  // [F, d]
  torch::nn::Linear dense_4h_to_h{nullptr};  // [d, F]
};
TORCH_MODULE(GptNeoXMlp);

struct GptNeoXLayerImpl : torch::nn::Module {
  explicit GptNeoXLayerImpl(const GptNeoXConfig& c);
  torch::nn::LayerNorm input_layernorm{nullptr};
  torch::nn::LayerNorm post_attention_layernorm{nullptr};
  GptNeoXAttention attention{nullptr};
  GptNeoXMlp mlp{nullptr};
};
TORCH_MODULE(GptNeoXLayer);

struct GptNeoXBodyImpl : torch::nn::Module {
  explicit GptNeoXBodyImpl(const GptNeoXConfig& c);
  torch::nn::Embedding embed_in{nullptr};  // [V, d]
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};
  GptNeoXLayer layer(int64_t i) const { return layers->ptr<GptNeoXLayerImpl>(i); }
};
TORCH_MODULE(GptNeoXBody);

// Per-layer keys and values of the tokens seen so far, for incremental decoding.
struct KvCache {
  std::vector<at::Tensor> keys;    // per layer [B, H, S, P]
  std::vector<at::Tensor> values;  // per layer [B, H, S, P]
  int64_t length = 0;              // S
};

struct RotatedQkv {
  at::Tensor q, k, v;  // each [B, H, T, P], rotary applied to q and k
};

struct TeacherCaptureOptions {
  bool attention_io = false;     // each layer's ln1(x) input and dense(...) output
  bool attention_probs = false;  // each layer's softmax weights
  bool attention_qkv = false;    // each layer's rotated q, k, v (this call's tokens, before any cache)
  bool logits = true;            // false: stop after the last attention (no last MLP, no lm_head; stage 1)
};

struct TeacherOutput {
  at::Tensor logits;                    // [B, T, V]; undefined when not asked
  std::vector<at::Tensor> attn_input;   // per layer [B, T, d] = input_layernorm(x)
  std::vector<at::Tensor> attn_output;  // per layer [B, T, d] = dense(merge(heads))
  std::vector<at::Tensor> attn_probs;   // per layer [B, H, T, T]
  std::vector<RotatedQkv> attn_qkv;     // per layer, each [B, H, T, P]
};

class GptNeoXForCausalLMImpl : public torch::nn::Module {
 public:
  explicit GptNeoXForCausalLMImpl(const GptNeoXConfig& c);

  const GptNeoXConfig& config() const { return config_; }

  // ids [B, T] int64 → logits [B, T, V] and, on request, per-layer captures. With `cache`, the tokens are
  // positions cache->length.. and the cache is extended.
  TeacherOutput forward(const at::Tensor& ids, const TeacherCaptureOptions& capture = {},
                        KvCache* cache = nullptr);

  // The building blocks stage 1 and the probes reuse: x [B, T, d] is the attention input ln1(x_ℓ).
  RotatedQkv attention_qkv(int64_t layer, const at::Tensor& x, int64_t position_offset = 0) const;
  at::Tensor attention_merge_and_project(int64_t layer,
                                         const at::Tensor& heads) const;  // [B,H,T,P] → [B,T,d]
  at::Tensor lm_head_weight() const;                                      // [V, d]

  // The frozen matmul weights' copies in the autocast dtype (the teacher's, stage 1's frozen blocks), made at
  // the first forward under CUDA autocast and kept while the weights are unchanged.
  ops::FrozenCastCache& frozen_casts() const { return frozen_casts_; }

  GptNeoXBody gpt_neox{nullptr};
  torch::nn::Linear embed_out{nullptr};  // [V, d]; absent (embed_in reused) when tie_word_embeddings

 private:
  GptNeoXConfig config_;
  mutable ops::FrozenCastCache frozen_casts_;
};
TORCH_MODULE(GptNeoXForCausalLM);

// The functional blocks every model on the GPT-NeoX skeleton shares (teacher, stage 1, student).
namespace detail {
at::Tensor apply_layer_norm(const torch::nn::LayerNorm& norm, const at::Tensor& x);  // [B,T,d]
// `casts`, when given, supplies the frozen weights' autocast copies (ops::FrozenCastCache).
at::Tensor apply_mlp(const GptNeoXConfig& config, const GptNeoXMlpImpl& mlp, const at::Tensor& x,
                     ops::FrozenCastCache* casts = nullptr);  // [B,T,d]
// The residual update of one block given its attention/mixer output `a_out` (§2): parallel
// h + a_out + mlp(ln2(h)), or sequential h' = h + a_out, h' + mlp(ln2(h')). h, a_out [B,T,d] or [B,d].
at::Tensor add_block_residuals(const GptNeoXConfig& config,
                               const torch::nn::LayerNorm& post_attention_layernorm,
                               const GptNeoXMlpImpl& mlp, const at::Tensor& h, const at::Tensor& a_out,
                               ops::FrozenCastCache* casts = nullptr);
}  // namespace detail

// Rotary embedding of docs/method.md §2 on the first r channels; x [B, H, T, P], positions offset.. offset+T.
at::Tensor apply_rotary(const at::Tensor& x, int64_t rotary_dims, double base, double linear_factor,
                        int64_t position_offset);

// Loads config.json + safetensors weights (any stored float dtype) into float32 modules. Throws
// hedgelab::Error naming the file and field/tensor on anything unsupported or inconsistent.
GptNeoXForCausalLM load_gpt_neox(const io::CheckpointFolder& folder);
GptNeoXConfig read_gpt_neox_config(const io::CheckpointFolder& folder);

// Writes a Hugging Face style folder (config.json, model.safetensors, tokenizer.json) that transformers'
// GPTNeoXForCausalLM and tokenizers load. Each file is written atomically.
void save_gpt_neox(GptNeoXForCausalLM& model, const io::Tokenizer& tokenizer,
                   const std::filesystem::path& dir, const std::string& weights_dtype = "float32");

// ---- evaluation and generation ----------------------------------------------------------------------------

struct PerplexityResult {
  double perplexity = 0.0;
  double mean_nll = 0.0;
  int64_t tokens = 0;  // predicted tokens
  int64_t windows = 0;
};

// docs/method.md §5: `windows` [N, T+1] int64, each predicting tokens 1..T; ppl = exp(mean NLL).
// `progress(done, total)` is called after each batch.
PerplexityResult perplexity(GptNeoXForCausalLM& model, const at::Tensor& windows, int64_t batch_size,
                            const std::function<void(int64_t, int64_t)>& progress = {});
// The same protocol for any language model given as ids [b, T] → logits [b, T, V] (students, baselines).
PerplexityResult perplexity(const std::function<at::Tensor(const at::Tensor&)>& logits_of,
                            const at::Tensor& windows, int64_t batch_size,
                            const std::function<void(int64_t, int64_t)>& progress = {});

struct GenerationOptions {
  int64_t max_new_tokens = 32;
  double temperature = 0.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = no cut
  uint64_t seed = 0;
  std::optional<int64_t> stop_token;  // stop after emitting it
};

}  // namespace hedgelab::models
namespace hedgelab {
class Prng;
}
namespace hedgelab::models {

// The next token from last-position logits [V]: argmax when temperature is 0, else a draw from the
// temperature-scaled, top-k-cut softmax with `prng`. Shared by every model's generate().
int64_t pick_next_token(const at::Tensor& logits, const GenerationOptions& options, Prng& prng);

// Decodes with a KV cache; returns only the new ids. Sampling uses HedgeLab's own seeded PRNG, so a seed
// gives the same text on every machine and LibTorch version.
std::vector<int64_t> generate(GptNeoXForCausalLM& model, const std::vector<int64_t>& prompt,
                              const GenerationOptions& options,
                              const std::function<void(int64_t)>& on_token = {});

}  // namespace hedgelab::models
