#include "core/models/gpt_neox.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/common/error.h"
#include "core/common/prng.h"
#include "core/io/checkpoint.h"
#include "core/io/safetensors_torch.h"
#include "core/io/tokenizer.h"
#include "core/ops/rotary.h"
#include "core/ops/trained_linear.h"
#include "core/util/atomic_file.h"

namespace hedgelab::models {

namespace {

using nlohmann::json;

// ---- config.json
// -------------------------------------------------------------------------------------------

int64_t require_int(const json& j, const char* key, const std::string& source) {
  if (!j.contains(key)) throw Error(source + ": " + key, "missing (expected a positive integer)");
  const json& v = j.at(key);
  if (!v.is_number_integer() || v.get<int64_t>() <= 0)
    throw Error(source + ": " + key, "expected a positive integer, got " + v.dump());
  return v.get<int64_t>();
}

double number_or(const json& j, const char* key, double fallback, const std::string& source) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  if (!j.at(key).is_number()) throw Error(source + ": " + key, "expected a number, got " + j.at(key).dump());
  return j.at(key).get<double>();
}

bool bool_or(const json& j, const char* key, bool fallback, const std::string& source) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  if (!j.at(key).is_boolean())
    throw Error(source + ": " + key, "expected true or false, got " + j.at(key).dump());
  return j.at(key).get<bool>();
}

std::optional<int64_t> token_id_or_none(const json& j, const char* key) {
  if (!j.contains(key)) return std::nullopt;
  const json& v = j.at(key);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_array() && !v.empty() && v.front().is_number_integer()) return v.front().get<int64_t>();
  return std::nullopt;
}

Activation parse_activation(const std::string& name, const std::string& source) {
  if (name == "gelu" || name == "gelu_python") return Activation::kGeluExact;
  if (name == "gelu_new" || name == "gelu_fast" || name == "gelu_pytorch_tanh") return Activation::kGeluTanh;
  if (name == "relu") return Activation::kRelu;
  if (name == "silu" || name == "swish") return Activation::kSilu;
  throw Error(
      source + ": hidden_act",
      "\"" + name +
          "\" is not supported (expected gelu, gelu_new, gelu_fast, gelu_pytorch_tanh, relu or silu)");
}

// rope_type "default" or "linear"; anything else would silently change the positions, so it is refused.
void read_rope_type(const json& rope, const std::string& field, GptNeoXConfig& c, const std::string& source) {
  std::string type = "default";
  if (rope.contains("rope_type") && rope.at("rope_type").is_string())
    type = rope.at("rope_type").get<std::string>();
  else if (rope.contains("type") && rope.at("type").is_string())
    type = rope.at("type").get<std::string>();
  if (type == "default") return;
  if (type == "linear") {
    c.rope_linear_factor = number_or(rope, "factor", 1.0, source + ": " + field);
    if (!(c.rope_linear_factor > 0))
      throw Error(source + ": " + field + ".factor", "expected a positive number");
    return;
  }
  throw Error(source + ": " + field + ".rope_type",
              "\"" + type + "\" is not supported (expected \"default\" or \"linear\")");
}

}  // namespace

GptNeoXConfig GptNeoXConfig::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) throw Error(source, "expected a JSON object");
  if (j.contains("model_type")) {
    const std::string mt = j.at("model_type").is_string() ? j.at("model_type").get<std::string>() : "";
    if (mt != "gpt_neox")
      throw Error(
          source + ": model_type",
          "\"" + mt +
              "\" is not supported (HedgeLab reads GPT-NeoX/Pythia teachers, model_type \"gpt_neox\")");
  } else {
    bool neox = false;
    if (j.contains("architectures") && j.at("architectures").is_array())
      for (const auto& a : j.at("architectures"))
        neox |= a.is_string() && a.get<std::string>() == "GPTNeoXForCausalLM";
    if (!neox) throw Error(source + ": model_type", "missing (expected \"gpt_neox\")");
  }
  GptNeoXConfig c;
  c.vocab_size = require_int(j, "vocab_size", source);
  c.hidden_size = require_int(j, "hidden_size", source);
  c.num_layers = require_int(j, "num_hidden_layers", source);
  c.num_heads = require_int(j, "num_attention_heads", source);
  c.intermediate_size = require_int(j, "intermediate_size", source);
  if (j.contains("max_position_embeddings"))
    c.max_position_embeddings = require_int(j, "max_position_embeddings", source);
  c.layer_norm_eps = number_or(j, "layer_norm_eps", 1e-5, source);
  c.use_parallel_residual = bool_or(j, "use_parallel_residual", true, source);
  c.tie_word_embeddings = bool_or(j, "tie_word_embeddings", false, source);
  c.attention_bias = bool_or(j, "attention_bias", true, source);
  if (j.contains("hidden_act")) {
    if (!j.at("hidden_act").is_string()) throw Error(source + ": hidden_act", "expected a string");
    c.hidden_act = j.at("hidden_act").get<std::string>();
  }
  c.activation = parse_activation(c.hidden_act, source);

  // Rotary: the newer shape keeps it under rope_parameters, the older one at the top level.
  c.rotary_pct = number_or(j, "rotary_pct", number_or(j, "partial_rotary_factor", 0.25, source), source);
  c.rotary_base = number_or(j, "rotary_emb_base", number_or(j, "rope_theta", 10000.0, source), source);
  if (j.contains("rope_parameters") && !j.at("rope_parameters").is_null()) {
    const json& rp = j.at("rope_parameters");
    if (!rp.is_object()) throw Error(source + ": rope_parameters", "expected an object");
    c.rotary_pct = number_or(rp, "partial_rotary_factor", c.rotary_pct, source + ": rope_parameters");
    c.rotary_base = number_or(rp, "rope_theta", c.rotary_base, source + ": rope_parameters");
    read_rope_type(rp, "rope_parameters", c, source);
  }
  if (j.contains("rope_scaling") && !j.at("rope_scaling").is_null()) {
    if (!j.at("rope_scaling").is_object())
      throw Error(source + ": rope_scaling", "expected an object or null");
    read_rope_type(j.at("rope_scaling"), "rope_scaling", c, source);
  }
  c.bos_token_id = token_id_or_none(j, "bos_token_id");
  c.eos_token_id = token_id_or_none(j, "eos_token_id");
  c.validate(source);
  return c;
}

void GptNeoXConfig::validate(const std::string& source) const {
  auto positive = [&](int64_t v, const char* key) {
    if (v <= 0) throw Error(source + ": " + key, "expected a positive integer, got " + std::to_string(v));
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(num_layers, "num_hidden_layers");
  positive(num_heads, "num_attention_heads");
  positive(intermediate_size, "intermediate_size");
  if (hidden_size % num_heads != 0)
    throw Error(source + ": num_attention_heads", "hidden_size " + std::to_string(hidden_size) +
                                                      " is not divisible by " + std::to_string(num_heads));
  if (!(rotary_pct >= 0.0 && rotary_pct <= 1.0))
    throw Error(source + ": rotary_pct", "expected a fraction in [0, 1], got " + std::to_string(rotary_pct));
  if (rotary_dims() % 2 != 0)
    throw Error(source + ": rotary_pct",
                "rotates " + std::to_string(rotary_dims()) + " channels per head; expected an even number");
  if (!(rotary_base > 0.0)) throw Error(source + ": rotary_emb_base", "expected a positive number");
  if (!(layer_norm_eps > 0.0)) throw Error(source + ": layer_norm_eps", "expected a positive number");
}

json GptNeoXConfig::to_json() const {
  json j;
  j["architectures"] = {"GPTNeoXForCausalLM"};
  j["model_type"] = "gpt_neox";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_layers;
  j["num_attention_heads"] = num_heads;
  j["intermediate_size"] = intermediate_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["hidden_act"] = hidden_act;
  j["layer_norm_eps"] = layer_norm_eps;
  j["use_parallel_residual"] = use_parallel_residual;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["attention_bias"] = attention_bias;
  j["rotary_pct"] = rotary_pct;
  j["rotary_emb_base"] = rotary_base;
  json rope = {{"rope_type", rope_linear_factor == 1.0 ? "default" : "linear"},
               {"partial_rotary_factor", rotary_pct},
               {"rope_theta", rotary_base}};
  if (rope_linear_factor != 1.0) rope["factor"] = rope_linear_factor;
  j["rope_parameters"] = rope;
  j["attention_dropout"] = 0.0;
  j["hidden_dropout"] = 0.0;
  j["use_cache"] = true;
  j["bos_token_id"] = bos_token_id ? json(*bos_token_id) : json(nullptr);
  j["eos_token_id"] = eos_token_id ? json(*eos_token_id) : json(nullptr);
  j["torch_dtype"] = "float32";
  return j;
}

int64_t GptNeoXConfig::parameter_count() const {
  const int64_t d = hidden_size, F = intermediate_size, V = vocab_size;
  const int64_t per_layer = 4 * d /*2 LayerNorms*/ + 3 * d * d + (attention_bias ? 3 * d : 0) + d * d +
                            (attention_bias ? d : 0) + F * d + F + d * F + d;
  return V * d + num_layers * per_layer + 2 * d + (tie_word_embeddings ? 0 : V * d);
}

// ---- modules
// -------------------------------------------------------------------------------------------------

namespace {
torch::nn::LayerNorm make_layer_norm(const GptNeoXConfig& c) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps));
}
}  // namespace

GptNeoXAttentionImpl::GptNeoXAttentionImpl(const GptNeoXConfig& c) {
  query_key_value = register_module(
      "query_key_value",
      torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, 3 * c.hidden_size).bias(c.attention_bias)));
  dense = register_module(
      "dense",
      torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.hidden_size).bias(c.attention_bias)));
}

GptNeoXMlpImpl::GptNeoXMlpImpl(const GptNeoXConfig& c) {
  dense_h_to_4h = register_module("dense_h_to_4h", torch::nn::Linear(c.hidden_size, c.intermediate_size));
  dense_4h_to_h = register_module("dense_4h_to_h", torch::nn::Linear(c.intermediate_size, c.hidden_size));
}

GptNeoXLayerImpl::GptNeoXLayerImpl(const GptNeoXConfig& c) {
  input_layernorm = register_module("input_layernorm", make_layer_norm(c));
  post_attention_layernorm = register_module("post_attention_layernorm", make_layer_norm(c));
  attention = register_module("attention", GptNeoXAttention(c));
  mlp = register_module("mlp", GptNeoXMlp(c));
}

GptNeoXBodyImpl::GptNeoXBodyImpl(const GptNeoXConfig& c) {
  embed_in = register_module("embed_in", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i)
    layers->push_back(GptNeoXLayer(c));
  final_layer_norm = register_module("final_layer_norm", make_layer_norm(c));
}

GptNeoXForCausalLMImpl::GptNeoXForCausalLMImpl(const GptNeoXConfig& c) : config_(c) {
  config_.validate("GptNeoXConfig");
  gpt_neox = register_module("gpt_neox", GptNeoXBody(c));
  if (!c.tie_word_embeddings)
    embed_out = register_module(
        "embed_out", torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.vocab_size).bias(false)));
}

at::Tensor GptNeoXForCausalLMImpl::lm_head_weight() const {
  return config_.tie_word_embeddings ? gpt_neox->embed_in->weight : embed_out->weight;
}

// ---- forward
// -------------------------------------------------------------------------------------------------

namespace {

// Functional forms of the modules, usable from const methods and identical to their forward(); with `casts`,
// frozen weights come from the model's autocast copies (the same values autocast would cast to).
at::Tensor apply_linear(const torch::nn::Linear& l, const at::Tensor& x, ops::FrozenCastCache* casts) {
  const at::Tensor bias = l->bias.defined() ? l->bias : at::Tensor();
  if (!casts) return ops::trained_linear(x, l->weight, bias);  // a trained copy (the student's MLP)
  return at::linear(x, casts->operand(l->weight), casts->operand(bias));
}

}  // namespace

at::Tensor apply_rotary(const at::Tensor& x, int64_t rotary_dims, double base, double linear_factor,
                        int64_t position_offset) {
  return ops::rotary(x, rotary_dims, base, linear_factor, position_offset);  // [B, H, T, P]
}

RotatedQkv GptNeoXForCausalLMImpl::attention_qkv(int64_t layer, const at::Tensor& x,
                                                 int64_t position_offset) const {
  const auto& attn = *gpt_neox->layer(layer)->attention;
  const int64_t B = x.size(0), T = x.size(1), H = config_.num_heads, P = config_.head_size();
  at::Tensor qkv =
      apply_linear(attn.query_key_value, x, &frozen_casts_).view({B, T, H, 3 * P});  // [B, T, H, 3P]
  at::Tensor q = qkv.narrow(-1, 0, P).permute({0, 2, 1, 3});                         // [B, H, T, P]
  at::Tensor k = qkv.narrow(-1, P, P).permute({0, 2, 1, 3});                         // [B, H, T, P]
  at::Tensor v = qkv.narrow(-1, 2 * P, P).permute({0, 2, 1, 3});                     // [B, H, T, P]
  const int64_t r = config_.rotary_dims();
  q = apply_rotary(q, r, config_.rotary_base, config_.rope_linear_factor, position_offset);
  k = apply_rotary(k, r, config_.rotary_base, config_.rope_linear_factor, position_offset);
  return {q, k, v};
}

at::Tensor GptNeoXForCausalLMImpl::attention_merge_and_project(int64_t layer, const at::Tensor& heads) const {
  const int64_t B = heads.size(0), T = heads.size(2);
  at::Tensor merged = heads.permute({0, 2, 1, 3}).reshape({B, T, config_.hidden_size});   // [B, T, d]
  return apply_linear(gpt_neox->layer(layer)->attention->dense, merged, &frozen_casts_);  // [B, T, d]
}

namespace detail {

at::Tensor apply_layer_norm(const torch::nn::LayerNorm& norm, const at::Tensor& x) {
  return at::layer_norm(x, norm->options.normalized_shape(), norm->weight, norm->bias, norm->options.eps());
}

at::Tensor apply_mlp(const GptNeoXConfig& config, const GptNeoXMlpImpl& mlp, const at::Tensor& x,
                     ops::FrozenCastCache* casts) {
  at::Tensor h = apply_linear(mlp.dense_h_to_4h, x, casts);  // [B, T, F]
  switch (config.activation) {
    case Activation::kGeluExact:
      h = at::gelu(h);
      break;
    case Activation::kGeluTanh:
      h = at::gelu(h, "tanh");
      break;
    case Activation::kRelu:
      h = at::relu(h);
      break;
    case Activation::kSilu:
      h = at::silu(h);
      break;
  }
  return apply_linear(mlp.dense_4h_to_h, h, casts);  // [B, T, d]
}

at::Tensor add_block_residuals(const GptNeoXConfig& config,
                               const torch::nn::LayerNorm& post_attention_layernorm,
                               const GptNeoXMlpImpl& mlp, const at::Tensor& h, const at::Tensor& a_out,
                               ops::FrozenCastCache* casts) {
  if (config.use_parallel_residual)
    return h + a_out + apply_mlp(config, mlp, apply_layer_norm(post_attention_layernorm, h), casts);
  const at::Tensor mid = h + a_out;
  return mid + apply_mlp(config, mlp, apply_layer_norm(post_attention_layernorm, mid), casts);
}

}  // namespace detail

namespace {

// Softmax attention with the causal mask; queries sit at positions past..past+Tq-1 of Tk keys.
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t past,
                            at::Tensor* probs_out) {
  const int64_t Tq = q.size(2), Tk = k.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
#if TORCH_VERSION_MAJOR >= 2
  if (probs_out == nullptr) {
    if (past == 0) return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/Tq > 1);
    if (Tq == 1) return at::scaled_dot_product_attention(q, k, v, {}, 0.0, false);
  }
#endif
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)).to(at::kFloat) * scale;  // [B, H, Tq, Tk]
  if (Tq > 1 || past == 0) {
    auto opts = at::TensorOptions().dtype(at::kLong).device(q.device());
    at::Tensor qpos = at::arange(past, past + Tq, opts).unsqueeze(1);  // [Tq, 1]
    at::Tensor kpos = at::arange(0, Tk, opts).unsqueeze(0);            // [1, Tk]
    scores = scores.masked_fill(kpos > qpos, -std::numeric_limits<float>::infinity());
  }
  at::Tensor probs = at::softmax(scores, -1).to(q.scalar_type());  // [B, H, Tq, Tk]
  if (probs_out) *probs_out = probs;
  return at::matmul(probs, v);  // [B, H, Tq, P]
}

}  // namespace

TeacherOutput GptNeoXForCausalLMImpl::forward(const at::Tensor& ids, const TeacherCaptureOptions& capture,
                                              KvCache* cache) {
  TORCH_CHECK(ids.dim() == 2, "GPT-NeoX forward expects ids [B, T], got ", ids.sizes());
  const int64_t L = config_.num_layers;
  const int64_t past = cache ? cache->length : 0;
  if (cache && cache->keys.empty()) {
    cache->keys.resize(L);
    cache->values.resize(L);
  }
  TeacherOutput out;
  at::Tensor h = gpt_neox->embed_in->forward(ids);  // [B, T, d]
  for (int64_t i = 0; i < L; ++i) {
    const auto& layer = *gpt_neox->layer(i);
    at::Tensor a_in = detail::apply_layer_norm(layer.input_layernorm, h);  // [B, T, d]
    RotatedQkv qkv = attention_qkv(i, a_in, past);
    if (capture.attention_qkv) out.attn_qkv.push_back(qkv);
    at::Tensor k = qkv.k, v = qkv.v;  // [B, H, S+T, P] once joined with the cache
    if (cache) {
      if (cache->keys[i].defined()) {
        k = at::cat({cache->keys[i], k}, 2);
        v = at::cat({cache->values[i], v}, 2);
      }
      cache->keys[i] = k;
      cache->values[i] = v;
    }
    at::Tensor probs;
    at::Tensor heads = causal_attention(qkv.q, k, v, past, capture.attention_probs ? &probs : nullptr);
    at::Tensor a_out = attention_merge_and_project(i, heads);  // [B, T, d]
    if (capture.attention_io) {
      out.attn_input.push_back(a_in);
      out.attn_output.push_back(a_out);
    }
    if (capture.attention_probs) out.attn_probs.push_back(probs);
    if (!capture.logits && i == L - 1) break;  // the last block's MLP only feeds the logits
    h = detail::add_block_residuals(config_, layer.post_attention_layernorm, *layer.mlp, h, a_out,
                                    &frozen_casts_);
  }
  if (cache) cache->length += ids.size(1);
  if (!capture.logits) return out;
  h = detail::apply_layer_norm(gpt_neox->final_layer_norm, h);
  out.logits = at::linear(h, frozen_casts_.operand(lm_head_weight()));  // [B, T, V]
  return out;
}

// ---- loading and saving
// -------------------------------------------------------------------------------------

GptNeoXConfig read_gpt_neox_config(const io::CheckpointFolder& folder) {
  return GptNeoXConfig::from_json(folder.config(), folder.config_path().string());
}

GptNeoXForCausalLM load_gpt_neox(const io::CheckpointFolder& folder) {
  GptNeoXConfig config = read_gpt_neox_config(folder);
  GptNeoXForCausalLM model(config);
  torch::NoGradGuard no_grad;
  std::set<std::string> expected;
  // named_parameters() spells Hugging Face's names: the module tree is the weight-name table.
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    expected.insert(name);
    at::Tensor loaded = folder.load_expect(name, item.value().sizes().vec(), at::kFloat);
    item.value().copy_(loaded);
  }
  if (config.tie_word_embeddings && folder.has("embed_out.weight")) expected.insert("embed_out.weight");
  for (const auto& name : folder.tensor_names()) {
    if (expected.count(name)) continue;
    // Buffers some exporters save (causal mask, rotary frequencies) are recomputed, not read.
    const bool known_buffer = name.find(".attention.bias") != std::string::npos ||
                              name.find(".attention.masked_bias") != std::string::npos ||
                              name.find("rotary_emb.inv_freq") != std::string::npos;
    if (!known_buffer)
      spdlog::warn("{}: tensor \"{}\" is not part of GPT-NeoX and is ignored", folder.dir().string(), name);
  }
  model->eval();
  return model;
}

void save_gpt_neox(GptNeoXForCausalLM& model, const io::Tokenizer& tokenizer,
                   const std::filesystem::path& dir, const std::string& weights_dtype) {
  at::ScalarType dtype = at::kFloat;
  if (weights_dtype == "float16")
    dtype = at::kHalf;
  else if (weights_dtype == "bfloat16")
    dtype = at::kBFloat16;
  else if (weights_dtype != "float32")
    throw Error("weights dtype", "\"" + weights_dtype + "\" (expected float32, float16 or bfloat16)");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(dir.string(), "cannot create the folder: " + ec.message());
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (auto& item : model->named_parameters())
    named.emplace_back(item.key(), item.value().detach().to(at::kCPU).to(dtype).contiguous());
  io::save_safetensors(dir / "model.safetensors", named, {{"format", "pt"}});
  json cfg = model->config().to_json();
  cfg["torch_dtype"] = weights_dtype;
  util::write_file_atomically(dir / "config.json", cfg.dump(2) + "\n");
  util::write_file_atomically(dir / "tokenizer.json", tokenizer.to_json_text());
}

// ---- evaluation and generation ----------------------------------------------------------------------------

PerplexityResult perplexity(GptNeoXForCausalLM& model, const at::Tensor& windows, int64_t batch_size,
                            const std::function<void(int64_t, int64_t)>& progress) {
  return perplexity([&model](const at::Tensor& ids) { return model->forward(ids).logits; }, windows,
                    batch_size, progress);
}

PerplexityResult perplexity(const std::function<at::Tensor(const at::Tensor&)>& logits_of,
                            const at::Tensor& windows, int64_t batch_size,
                            const std::function<void(int64_t, int64_t)>& progress) {
  TORCH_CHECK(windows.dim() == 2 && windows.size(1) >= 2, "perplexity expects windows [N, T+1]");
  torch::NoGradGuard no_grad;
  const int64_t N = windows.size(0), T = windows.size(1) - 1;
  double nll = 0.0;
  for (int64_t s = 0; s < N; s += batch_size) {
    const int64_t b = std::min(batch_size, N - s);
    at::Tensor w = windows.narrow(0, s, b);                        // [b, T+1]
    at::Tensor logits = logits_of(w.narrow(1, 0, T));              // [b, T, V]
    at::Tensor logp = at::log_softmax(logits.to(at::kFloat), -1);  // [b, T, V]
    at::Tensor target = w.narrow(1, 1, T).unsqueeze(-1);           // [b, T, 1]
    nll -= logp.gather(-1, target).to(at::kDouble).sum().item<double>();
    if (progress) progress(s + b, N);
  }
  PerplexityResult r;
  r.windows = N;
  r.tokens = N * T;
  r.mean_nll = r.tokens > 0 ? nll / static_cast<double>(r.tokens) : 0.0;
  r.perplexity = std::exp(r.mean_nll);
  return r;
}

int64_t pick_next_token(const at::Tensor& logits /*[V]*/, const GenerationOptions& o, Prng& prng) {
  at::Tensor l = logits.to(at::kDouble).contiguous();
  if (o.temperature <= 0.0) return l.argmax().item<int64_t>();
  l = l / o.temperature;
  if (o.top_k > 0 && o.top_k < l.size(0)) {
    const double kth = std::get<0>(l.topk(o.top_k)).min().item<double>();
    l = l.masked_fill(l < kth, -std::numeric_limits<double>::infinity());
  }
  at::Tensor p = at::softmax(l, 0);
  const double* pp = p.data_ptr<double>();
  const double u = prng.next_double();
  double acc = 0.0;
  int64_t last_nonzero = 0;
  for (int64_t i = 0; i < p.size(0); ++i) {
    if (pp[i] <= 0.0) continue;
    last_nonzero = i;
    acc += pp[i];
    if (u < acc) return i;
  }
  return last_nonzero;  // rounding left u just above the total
}

std::vector<int64_t> generate(GptNeoXForCausalLM& model, const std::vector<int64_t>& prompt,
                              const GenerationOptions& options,
                              const std::function<void(int64_t)>& on_token) {
  if (prompt.empty()) throw Error("prompt", "is empty; give at least one token");
  torch::NoGradGuard no_grad;
  Prng prng(options.seed);
  KvCache cache;
  const auto device = model->lm_head_weight().device();
  at::Tensor ids =
      at::tensor(prompt, at::TensorOptions().dtype(at::kLong)).unsqueeze(0).to(device);  // [1, T]
  std::vector<int64_t> out;
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    at::Tensor logits = model->forward(ids, {}, &cache).logits;  // [1, T, V]
    const int64_t next = pick_next_token(logits[0][logits.size(1) - 1].to(at::kCPU), options, prng);
    out.push_back(next);
    if (on_token) on_token(next);
    if (options.stop_token && next == *options.stop_token) break;
    ids = at::full({1, 1}, next, at::TensorOptions().dtype(at::kLong).device(device));  // [1, 1]
  }
  return out;
}

}  // namespace hedgelab::models
