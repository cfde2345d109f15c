#include "core/models/hedgehog.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>

#include "core/common/error.h"
#include "core/ops/linear_attention.h"

namespace hedgelab::models {

// ---- shared skeleton blocks ------------------------------------------------------------------------------

namespace detail {

void copy_parameters(const torch::nn::Module& from, torch::nn::Module& to, const std::string& what) {
  torch::NoGradGuard no_grad;
  const auto source = from.named_parameters();
  for (auto& item : to.named_parameters()) {
    const at::Tensor* src = source.find(item.key());
    if (src == nullptr) throw Error(what, "parameter \"" + item.key() + "\" is missing in the source");
    if (src->sizes() != item.value().sizes())
      throw Error(what, "parameter \"" + item.key() + "\" has a different shape in the source");
    item.value().copy_(*src);
  }
}

}  // namespace detail

// ---- feature maps and attention --------------------------------------------------------------------------

HedgehogFeatureMapImpl::HedgehogFeatureMapImpl(int64_t H, int64_t m, int64_t P, ops::FeatureMapKind kind)
    : kind(kind) {
  if (m <= 0) throw Error("feature_dim", "expected a positive feature width m, got " + std::to_string(m));
  at::Tensor W = at::zeros({H, m, P});  // [H, m, P]
  at::Tensor b = at::zeros({H, m});     // [H, m]
  if (m == P) {
    auto init = ops::hedgehog_identity_init(H, m, P);
    W = init.W;
    b = init.b;
  } else {
    // A truncated or zero-padded identity: the nearest thing to W = I that the shape allows.
    const int64_t r = std::min(m, P);
    W.narrow(1, 0, r).narrow(2, 0, r).copy_(at::eye(r).unsqueeze(0).expand({H, r, r}));
  }
  weight = register_parameter("weight", W);
  bias = register_parameter("bias", b);
}

at::Tensor HedgehogFeatureMapImpl::forward(const at::Tensor& u) const {
  return ops::hedgehog_features(u, weight, bias, kind);  // [B, H, T, 2m]
}

HedgehogAttentionImpl::HedgehogAttentionImpl(int64_t H, int64_t P, const HedgehogOptions& options)
    : options(options) {
  if (options.chunk <= 0)
    throw Error("chunk", "expected a positive chunk length, got " + std::to_string(options.chunk));
  if (!(options.eps >= 0.0)) throw Error("eps", "expected a non-negative number");
  const int64_t m = options.resolved_feature_dim(P);
  feature_map_q = register_module("feature_map_q", HedgehogFeatureMap(H, m, P, options.kind));
  feature_map_k = register_module("feature_map_k", HedgehogFeatureMap(H, m, P, options.kind));
  output_gain = register_parameter("output_gain", at::ones({H}));  // [H]
}

at::Tensor HedgehogAttentionImpl::forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                          bool quadratic, at::Tensor* weights_out) const {
  const at::Tensor phi_q = feature_map_q->forward(q);  // [B, H, T, N]
  const at::Tensor phi_k = feature_map_k->forward(k);  // [B, H, T, N]
  if (!quadratic && weights_out == nullptr)  // the gain goes in with the normalisation (one op on CUDA)
    return ops::linear_attention_chunked(phi_q, phi_k, v, options.chunk, options.eps, nullptr, nullptr,
                                         output_gain);  // [B, H, T, P]
  const at::Tensor y = ops::linear_attention_quadratic(phi_q, phi_k, v, options.eps, weights_out);
  return y * output_gain.view({1, -1, 1, 1});  // [B, H, T, P]
}

// ---- trainable selection ---------------------------------------------------------------------------------

Stage1Trainable Stage1Trainable::from_names(const std::vector<std::string>& names, const std::string& where) {
  Stage1Trainable t;
  t.feature_maps = t.output_gain = false;
  for (const auto& n : names) {
    if (n == "feature_maps")
      t.feature_maps = true;
    else if (n == "output_gain")
      t.output_gain = true;
    else if (n == "qkv")
      t.qkv = true;
    else if (n == "dense")
      t.dense = true;
    else if (n == "mlp_and_norms")
      t.mlp_and_norms = true;
    else if (n == "embeddings")
      t.embeddings = true;
    else
      throw Error(where,
                  "unknown group \"" + n +
                      "\" (expected feature_maps, output_gain, qkv, dense, mlp_and_norms or embeddings)");
  }
  return t;
}

// ---- the stage-1 model
// -------------------------------------------------------------------------------------

HedgehogLMImpl::HedgehogLMImpl(const GptNeoXConfig& config, const HedgehogOptions& options)
    : base_(config), options_(options) {
  // The copy's modules are registered here under the teacher's names, so named_parameters() reads
  // "gpt_neox.layers.0.attention.query_key_value.weight" as in the checkpoint.
  register_module("gpt_neox", base_->gpt_neox);
  if (!config.tie_word_embeddings) register_module("embed_out", base_->embed_out);
  hedgehog = register_module("hedgehog", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_layers; ++i)
    hedgehog->push_back(HedgehogAttention(config.num_heads, config.head_size(), options));
}

HedgehogLMImpl::HedgehogLMImpl(const GptNeoXForCausalLM& teacher, const HedgehogOptions& options)
    : HedgehogLMImpl(teacher->config(), options) {
  detail::copy_parameters(*teacher, *base_, "HedgehogLM from the teacher");
  // Stage 1 starts on the teacher's device.
  const at::Tensor any = teacher->lm_head_weight();
  to(any.device());
}

at::Tensor HedgehogLMImpl::forward(const at::Tensor& ids) {
  return forward_with(ids, {}).logits;
}

HedgehogOutput HedgehogLMImpl::forward_with(const at::Tensor& ids, const HedgehogCaptureOptions& capture) {
  TORCH_CHECK(ids.dim() == 2, "HedgehogLM forward expects ids [B, T], got ", ids.sizes());
  const GptNeoXConfig& c = config();
  const auto& body = *base_->gpt_neox;
  HedgehogOutput out;
  at::Tensor h = at::embedding(body.embed_in->weight, ids);  // [B, T, d]
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const auto& layer = *body.layer(i);
    const at::Tensor a_in = detail::apply_layer_norm(layer.input_layernorm, h);  // [B, T, d]
    at::Tensor weights;
    const at::Tensor a_out = teacher_forced_attention_output(
        i, a_in, capture.quadratic, capture.attention_weights ? &weights : nullptr);  // [B, T, d]
    if (capture.attention_io) {
      out.attn_input.push_back(a_in);
      out.attn_output.push_back(a_out);
    }
    if (capture.attention_weights) out.attn_weights.push_back(weights);
    h = detail::add_block_residuals(c, layer.post_attention_layernorm, *layer.mlp, h, a_out,
                                    &base_->frozen_casts());
  }
  h = detail::apply_layer_norm(body.final_layer_norm, h);                              // [B, T, d]
  out.logits = at::linear(h, base_->frozen_casts().operand(base_->lm_head_weight()));  // [B, T, V]
  return out;
}

at::Tensor HedgehogLMImpl::teacher_forced_attention_output(int64_t layer, const at::Tensor& attn_input,
                                                           bool quadratic, at::Tensor* weights_out) const {
  TORCH_CHECK(layer >= 0 && layer < config().num_layers, "HedgehogLM: layer ", layer, " out of range");
  TORCH_CHECK(attn_input.dim() == 3 && attn_input.size(2) == config().hidden_size,
              "HedgehogLM: attention input must be [B, T, d], got ", attn_input.sizes());
  const RotatedQkv qkv = base_->attention_qkv(layer, attn_input, 0);  // each [B, H, T, P]
  return attention_output_from_qkv(layer, qkv, quadratic, weights_out);
}

at::Tensor HedgehogLMImpl::attention_output_from_qkv(int64_t layer, const RotatedQkv& qkv, bool quadratic,
                                                     at::Tensor* weights_out) const {
  TORCH_CHECK(layer >= 0 && layer < config().num_layers, "HedgehogLM: layer ", layer, " out of range");
  TORCH_CHECK(
      qkv.q.dim() == 4 && qkv.q.size(1) == config().num_heads && qkv.q.size(3) == config().head_size(),
      "HedgehogLM: q must be [B, H, T, P] with H = ", config().num_heads, ", P = ", config().head_size(),
      ", got ", qkv.q.sizes());
  const at::Tensor heads =
      attention(layer)->forward(qkv.q, qkv.k, qkv.v, quadratic, weights_out);  // [B,H,T,P]
  return base_->attention_merge_and_project(layer, heads);                     // [B, T, d]
}

bool HedgehogLMImpl::shares_frozen_qkv_with(const GptNeoXForCausalLMImpl& teacher) const {
  const GptNeoXConfig &a = teacher.config(), &b = config();
  if (a.num_layers != b.num_layers || a.hidden_size != b.hidden_size || a.num_heads != b.num_heads ||
      a.rotary_dims() != b.rotary_dims() || a.rotary_base != b.rotary_base ||
      a.rope_linear_factor != b.rope_linear_factor)
    return false;
  at::NoGradGuard no_grad;
  for (int64_t i = 0; i < config().num_layers; ++i) {
    const auto& mine = *base_->gpt_neox->layer(i)->attention->query_key_value;
    const auto& theirs = *teacher.gpt_neox->layer(i)->attention->query_key_value;
    if (mine.weight.requires_grad() || (mine.bias.defined() && mine.bias.requires_grad())) return false;
    if (mine.weight.device() != theirs.weight.device() || !at::equal(mine.weight, theirs.weight))
      return false;
    if (mine.bias.defined() != theirs.bias.defined()) return false;
    if (mine.bias.defined() && !at::equal(mine.bias, theirs.bias)) return false;
  }
  return true;
}

int64_t HedgehogLMImpl::set_trainable(const Stage1Trainable& which) {
  int64_t count = 0;
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
    bool on;
    if (has("feature_map_"))
      on = which.feature_maps;
    else if (has("output_gain"))
      on = which.output_gain;
    else if (has(".attention.query_key_value."))
      on = which.qkv;
    else if (has(".attention.dense."))
      on = which.dense;
    else if (has("embed_in.") || has("embed_out."))
      on = which.embeddings;
    else
      on = which.mlp_and_norms;
    item.value().set_requires_grad(on);
    count += on ? 1 : 0;
  }
  return count;
}

std::vector<at::Tensor> HedgehogLMImpl::trainable_parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& p : parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}

std::vector<at::Tensor> HedgehogLMImpl::feature_map_parameters() const {
  std::vector<at::Tensor> out;
  for (int64_t i = 0; i < config().num_layers; ++i) {
    const auto a = attention(i);
    for (const auto* map : {a->feature_map_q.get(), a->feature_map_k.get()}) {
      out.push_back(map->weight);
      out.push_back(map->bias);
    }
  }
  return out;
}

}  // namespace hedgelab::models
