// Stage 1 (docs/method.md §3): the teacher with every softmax attention replaced by Hedgehog linear
// attention. A HedgehogLM owns a deep copy of the teacher's weights (the teacher is never touched) plus, per
// layer, the two feature maps φ_q, φ_k and a per-head output gain. Shape symbols: docs/architecture.md,
// "Shapes".
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/normalization.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/models/gpt_neox.h"
#include "core/ops/hedgehog_feature_map.h"

namespace hedgelab::models {

struct HedgehogOptions {
  ops::FeatureMapKind kind = ops::FeatureMapKind::kPerHalfSoftmax;
  int64_t feature_dim = 0;  // m per half; 0 = the head width P (then W = I, b = 0 exactly)
  int64_t chunk = 64;       // L of the chunked linear attention
  double eps = 1e-6;        // added once to each row's denominator

  // m for heads of width P: feature_dim, or P when it is 0.
  int64_t resolved_feature_dim(int64_t P) const { return feature_dim > 0 ? feature_dim : P; }
};

// φ(u) = [f(W u + b), f(−(W u + b))] for every head of one layer (q side or k side).
struct HedgehogFeatureMapImpl : torch::nn::Module {
  // Identity init W = I, b = 0 when m == P; for m ≠ P the leading min(m, P) diagonal is 1 and the rest 0,
  // so the first features still see the first channels unmixed.
  HedgehogFeatureMapImpl(int64_t H, int64_t m, int64_t P, ops::FeatureMapKind kind);
  at::Tensor forward(const at::Tensor& u) const;  // [B,H,T,P] → [B,H,T,2m]

  at::Tensor weight;  // W [H, m, P]
  at::Tensor bias;    // b [H, m]
  ops::FeatureMapKind kind;
};
TORCH_MODULE(HedgehogFeatureMap);

// Hedgehog attention of one layer on the teacher's rotated q, k, v. The dense projection stays with the
// layer's (copied) GPT-NeoX attention, so forward returns the gained heads; HedgehogLM applies dense.
struct HedgehogAttentionImpl : torch::nn::Module {
  HedgehogAttentionImpl(int64_t H, int64_t P, const HedgehogOptions& options);

  // gain_h · y_h [B,H,T,P]. quadratic = true materialises ā (exact; needed for weights_out, which then
  // receives ā [B,H,T,T]); otherwise the chunked form with chunk `options.chunk`.
  at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool quadratic = false,
                     at::Tensor* weights_out = nullptr) const;

  HedgehogFeatureMap feature_map_q{nullptr};
  HedgehogFeatureMap feature_map_k{nullptr};
  at::Tensor output_gain;  // [H], init 1: the lightweight normalization restoring the output scale
  HedgehogOptions options;
};
TORCH_MODULE(HedgehogAttention);

// Which parameters stage 1 trains (docs/method.md §3: feature maps and output gain by default).
struct Stage1Trainable {
  bool feature_maps = true;
  bool output_gain = true;
  bool qkv = false;            // query_key_value
  bool dense = false;          // the attention's output projection
  bool mlp_and_norms = false;  // MLPs, LayerNorms, final LayerNorm
  bool embeddings = false;     // embed_in and the LM head

  // From the recipe's list ("feature_maps", "output_gain", "qkv", "dense", "mlp_and_norms", "embeddings");
  // an unknown name throws hedgelab::Error naming `where`.
  static Stage1Trainable from_names(const std::vector<std::string>& names,
                                    const std::string& where = "stage1.trainable");
};

struct HedgehogCaptureOptions {
  bool attention_io = false;       // per layer ln1(x) and the attention block output
  bool attention_weights = false;  // per layer ā [B,H,T,T] (forces the quadratic form)
  bool quadratic = false;          // the quadratic form even without weights (for checks)
};

struct HedgehogOutput {
  at::Tensor logits;                     // [B, T, V]
  std::vector<at::Tensor> attn_input;    // per layer [B, T, d] = ln1(x) of the model's own stream
  std::vector<at::Tensor> attn_output;   // per layer [B, T, d] = dense(merge(gain · y))
  std::vector<at::Tensor> attn_weights;  // per layer ā [B, H, T, T]
};

class HedgehogLMImpl : public torch::nn::Module {
 public:
  // A skeleton with GPT-NeoX's default-initialised weights and identity feature maps (for loading).
  HedgehogLMImpl(const GptNeoXConfig& config, const HedgehogOptions& options);
  // Stage 1's starting point: the teacher's weights deep-copied, identity feature maps, gains 1.
  HedgehogLMImpl(const GptNeoXForCausalLM& teacher, const HedgehogOptions& options);

  const GptNeoXConfig& config() const { return base_->config(); }
  const HedgehogOptions& options() const { return options_; }

  at::Tensor forward(const at::Tensor& ids);  // [B,T] → logits [B,T,V] (chunked linear attention)
  HedgehogOutput forward_with(const at::Tensor& ids, const HedgehogCaptureOptions& capture);

  // Stage 1's layer-wise, teacher-forced output o_ℓˢ [B,T,d] from the teacher's ln1(x_ℓ) [B,T,d].
  at::Tensor teacher_forced_attention_output(int64_t layer, const at::Tensor& attn_input,
                                             bool quadratic = false, at::Tensor* weights_out = nullptr) const;
  // The same from the rotated q, k, v (each [B,H,T,P]) the teacher computed from that input: equal to the
  // above while this model's query_key_value is the teacher's (stage 1 with q/k/v frozen, the default).
  at::Tensor attention_output_from_qkv(int64_t layer, const RotatedQkv& qkv, bool quadratic = false,
                                       at::Tensor* weights_out = nullptr) const;
  // Whether every layer's query_key_value is frozen and equal to `teacher`'s, so that the teacher's rotated
  // q, k, v can stand in for this model's (rotary settings are copied with the body).
  bool shares_frozen_qkv_with(const GptNeoXForCausalLMImpl& teacher) const;

  // Sets requires_grad on every parameter by group; returns the number of trainable tensors.
  int64_t set_trainable(const Stage1Trainable& which);
  std::vector<at::Tensor> trainable_parameters() const;    // requires_grad ones, in named_parameters order
  std::vector<at::Tensor> feature_map_parameters() const;  // every layer's W, b of φ_q and φ_k

  HedgehogAttention attention(int64_t layer) const { return hedgehog->ptr<HedgehogAttentionImpl>(layer); }
  // The copied teacher (own weights; shares its modules with this model). Its attention_qkv and
  // attention_merge_and_project use the copy's query_key_value and dense.
  const GptNeoXForCausalLM& base() const { return base_; }

  // Registered children: "gpt_neox" (the copied body, Hugging Face names), "embed_out" (unless tied),
  // "hedgehog" (per layer: feature_map_q.{weight,bias}, feature_map_k.{weight,bias}, output_gain).
  torch::nn::ModuleList hedgehog{nullptr};

 private:
  GptNeoXForCausalLM base_{nullptr};
  HedgehogOptions options_;
};
TORCH_MODULE(HedgehogLM);

// Blocks of the GPT-NeoX skeleton that the stage-1 model and the student share.
namespace detail {
// Copies every parameter of `from` into the same-named parameter of `to` (shapes must agree).
void copy_parameters(const torch::nn::Module& from, torch::nn::Module& to, const std::string& what);
}  // namespace detail

}  // namespace hedgelab::models
