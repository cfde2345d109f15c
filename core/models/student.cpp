#include "core/models/student.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/common/error.h"
#include "core/common/prng.h"
#include "core/io/checkpoint.h"
#include "core/io/safetensors_torch.h"
#include "core/ops/activation_checkpoint.h"
#include "core/ops/trained_linear.h"
#include "core/util/atomic_file.h"

namespace hedgelab::models {

using nlohmann::json;

namespace {

constexpr const char* kFormat = "hedgelab_hedge_mamba_student";
constexpr int kFormatVersion = 1;

torch::nn::LayerNorm make_layer_norm(const GptNeoXConfig& c) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps));
}

std::string origin_name(StudentOrigin o) {
  return o == StudentOrigin::kStage1 ? "stage1" : "direct";
}

}  // namespace

HedgeMambaLayerImpl::HedgeMambaLayerImpl(const GptNeoXConfig& config, const MixerOptions& options) {
  input_layernorm = register_module("input_layernorm", make_layer_norm(config));
  post_attention_layernorm = register_module("post_attention_layernorm", make_layer_norm(config));
  mixer = register_module("mixer", HedgeMambaMixer(config, options));
  mlp = register_module("mlp", GptNeoXMlp(config));
}

HedgeMambaStudentImpl::HedgeMambaStudentImpl(const GptNeoXConfig& config, const MixerOptions& options,
                                             StudentOrigin origin)
    : config_(config), options_(options), origin_(origin) {
  config_.validate("student: teacher config");
  options_.validate("student: mixer options");
  embed_in = register_module("embed_in", torch::nn::Embedding(config.vocab_size, config.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_layers; ++i)
    layers->push_back(HedgeMambaLayer(config, options_));
  final_layer_norm = register_module("final_layer_norm", make_layer_norm(config));
  if (!config.tie_word_embeddings)
    embed_out = register_module(
        "embed_out",
        torch::nn::Linear(torch::nn::LinearOptions(config.hidden_size, config.vocab_size).bias(false)));
}

void HedgeMambaStudentImpl::copy_skeleton(const GptNeoXForCausalLMImpl& teacher,
                                          const at::Tensor& head_weight) {
  const auto& body = *teacher.gpt_neox;
  const std::string what = "student skeleton from the teacher";
  detail::copy_parameters(*body.embed_in, *embed_in, what);
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    const auto& from = *body.layer(i);
    auto to = layer(i);
    detail::copy_parameters(*from.input_layernorm, *to->input_layernorm, what);
    detail::copy_parameters(*from.post_attention_layernorm, *to->post_attention_layernorm, what);
    detail::copy_parameters(*from.mlp, *to->mlp, what);
  }
  detail::copy_parameters(*body.final_layer_norm, *final_layer_norm, what);
  if (embed_out) {
    torch::NoGradGuard no_grad;
    embed_out->weight.copy_(head_weight);
  }
}

HedgeMambaStudent HedgeMambaStudentImpl::from_stage1(const HedgehogLM& stage1, const MixerOptions& options) {
  const GptNeoXConfig& c = stage1->config();
  MixerOptions o = options;
  o.feature_map = stage1->options().kind;
  o.feature_dim = stage1->options().resolved_feature_dim(c.head_size());
  o.eps = stage1->options().eps;
  HedgeMambaStudent student(c, o, StudentOrigin::kStage1);
  const GptNeoXForCausalLM& base = stage1->base();
  student->to(base->lm_head_weight().device());
  student->copy_skeleton(*base, base->lm_head_weight());
  for (int64_t i = 0; i < c.num_layers; ++i)
    student->layer(i)->mixer->init_from_stage1(*stage1, i);
  return student;
}

HedgeMambaStudent HedgeMambaStudentImpl::direct(const GptNeoXForCausalLM& teacher,
                                                const MixerOptions& options, uint64_t seed) {
  const GptNeoXConfig& c = teacher->config();
  HedgeMambaStudent student(c, options, StudentOrigin::kDirect);
  student->to(teacher->lm_head_weight().device());
  student->copy_skeleton(*teacher, teacher->lm_head_weight());
  // One independent stream per layer: the seed's SplitMix-scrambled state, offset by the layer index.
  for (int64_t i = 0; i < c.num_layers; ++i)
    student->layer(i)->mixer->init_direct(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(i) + 1);
  return student;
}

at::Tensor HedgeMambaStudentImpl::lm_head_weight() const {
  return config_.tie_word_embeddings ? embed_in->weight : embed_out->weight;
}

at::Tensor HedgeMambaStudentImpl::run(const at::Tensor& ids, StudentState* state,
                                      const StudentCaptureOptions* capture, StudentOutput* out) {
  TORCH_CHECK(ids.dim() == 2, "HedgeMambaStudent forward expects ids [B, T], got ", ids.sizes());
  const int64_t L = config_.num_layers;
  if (state && state->layers.empty()) state->layers.resize(L);
  TORCH_CHECK(!state || static_cast<int64_t>(state->layers.size()) == L, "HedgeMambaStudent: state has ",
              state ? state->layers.size() : 0, " layers, expected ", L);
  at::Tensor h = at::embedding(embed_in->weight, ids);  // [B, T, d]
  const bool recompute = activation_checkpointing_ && !state && !capture && at::GradMode::is_enabled();
  for (int64_t i = 0; i < L; ++i) {
    if (recompute) {
      HedgeMambaLayer block = layer(i);  // a handle: the backward calls the block again
      const GptNeoXConfig config = config_;
      h = ops::checkpointed(
          [block, config](const at::Tensor& x) {
            const at::Tensor a_in = detail::apply_layer_norm(block->input_layernorm, x);  // [B, T, d]
            const at::Tensor a_out = block->mixer->forward(a_in, nullptr);                // [B, T, d]
            return detail::add_block_residuals(config, block->post_attention_layernorm, *block->mlp, x,
                                               a_out);
          },
          h);  // [B, T, d]
      continue;
    }
    const auto& block = *layer(i);
    const at::Tensor a_in = detail::apply_layer_norm(block.input_layernorm, h);  // [B, T, d]
    at::Tensor a_out;                                                            // [B, T, d]
    if (capture && capture->internals) {
      MixerCapture mc;
      a_out = block.mixer->forward_with(a_in, capture->probes, mc);
      out->internals.push_back(std::move(mc));
    } else {
      a_out = block.mixer->forward(a_in, state ? &state->layers[i] : nullptr);
    }
    if (capture && capture->mixer_io) {
      out->mixer_input.push_back(a_in);
      out->mixer_output.push_back(a_out);
    }
    h = detail::add_block_residuals(config_, block.post_attention_layernorm, *block.mlp, h, a_out);
  }
  if (state) state->length += ids.size(1);
  h = detail::apply_layer_norm(final_layer_norm, h);              // [B, T, d]
  return ops::trained_linear(h, lm_head_weight(), at::Tensor());  // [B, T, V]
}

at::Tensor HedgeMambaStudentImpl::forward(const at::Tensor& ids) {
  return run(ids, nullptr, nullptr, nullptr);
}

at::Tensor HedgeMambaStudentImpl::forward(const at::Tensor& ids, StudentState& state) {
  return run(ids, &state, nullptr, nullptr);
}

StudentOutput HedgeMambaStudentImpl::forward_with(const at::Tensor& ids,
                                                  const StudentCaptureOptions& capture) {
  StudentOutput out;
  out.logits = run(ids, nullptr, &capture, &out);
  return out;
}

at::Tensor HedgeMambaStudentImpl::step(const at::Tensor& ids_t, StudentState& state) {
  TORCH_CHECK(ids_t.dim() == 1, "HedgeMambaStudent::step expects ids_t [B], got ", ids_t.sizes());
  const int64_t L = config_.num_layers;
  if (state.layers.empty()) state.layers.resize(L);
  TORCH_CHECK(static_cast<int64_t>(state.layers.size()) == L, "HedgeMambaStudent::step: state has ",
              state.layers.size(), " layers, expected ", L);
  at::Tensor h = at::embedding(embed_in->weight, ids_t);  // [B, d]
  for (int64_t i = 0; i < L; ++i) {
    const auto& block = *layer(i);
    const at::Tensor a_out =
        block.mixer->step(detail::apply_layer_norm(block.input_layernorm, h), state.layers[i]);  // [B, d]
    h = detail::add_block_residuals(config_, block.post_attention_layernorm, *block.mlp, h, a_out);
  }
  state.length += 1;
  return at::linear(detail::apply_layer_norm(final_layer_norm, h), lm_head_weight());  // [B, V]
}

at::Tensor HedgeMambaStudentImpl::teacher_forced_mixer_output(int64_t layer_index,
                                                              const at::Tensor& mixer_input) const {
  TORCH_CHECK(layer_index >= 0 && layer_index < config_.num_layers, "HedgeMambaStudent: layer ", layer_index,
              " out of range");
  return layer(layer_index)->mixer->forward(mixer_input);  // [B, T, d]
}

// ---- saving and loading
// ------------------------------------------------------------------------------------

void save_student(const HedgeMambaStudent& student, const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(dir.string(), "cannot create the folder: " + ec.message());
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& item : student->named_parameters())
    named.emplace_back(item.key(), item.value().detach().to(at::kCPU).to(at::kFloat).contiguous());
  io::save_safetensors(dir / "model.safetensors", named, {{"format", "pt"}, {"hedgelab", kFormat}});
  json cfg;
  cfg["format"] = kFormat;
  cfg["format_version"] = kFormatVersion;
  cfg["origin"] = origin_name(student->origin());
  cfg["teacher"] = student->config().to_json();
  cfg["mixer"] = student->options().to_json();
  util::write_file_atomically(dir / "config.json", cfg.dump(2) + "\n");
}

HedgeMambaStudent load_student(const std::filesystem::path& dir) {
  auto folder = io::CheckpointFolder::open(dir);
  const json& cfg = folder.config();
  const std::string source = folder.config_path().string();
  if (!cfg.contains("format") || cfg.at("format") != kFormat)
    throw Error(source + ": format",
                std::string("expected \"") + kFormat + "\" (a folder written by save_student)");
  if (!cfg.contains("format_version") || !cfg.at("format_version").is_number_integer() ||
      cfg.at("format_version").get<int>() != kFormatVersion)
    throw Error(source + ": format_version", "expected " + std::to_string(kFormatVersion));
  if (!cfg.contains("teacher")) throw Error(source + ": teacher", "missing (the teacher's GPT-NeoX config)");
  if (!cfg.contains("mixer")) throw Error(source + ": mixer", "missing (the mixer options)");
  StudentOrigin origin = StudentOrigin::kStage1;
  if (cfg.contains("origin")) {
    const json& o = cfg.at("origin");
    if (o == "direct")
      origin = StudentOrigin::kDirect;
    else if (o != "stage1")
      throw Error(source + ": origin", "expected \"stage1\" or \"direct\", got " + o.dump());
  }
  const GptNeoXConfig config = GptNeoXConfig::from_json(cfg.at("teacher"), source + ": teacher");
  const MixerOptions options = MixerOptions::from_json(cfg.at("mixer"), source + ": mixer");
  HedgeMambaStudent student(config, options, origin);
  torch::NoGradGuard no_grad;
  std::set<std::string> expected;
  for (auto& item : student->named_parameters()) {
    expected.insert(item.key());
    item.value().copy_(folder.load_expect(item.key(), item.value().sizes().vec(), at::kFloat));
  }
  for (const auto& name : folder.tensor_names())
    if (!expected.count(name))
      throw Error(folder.file_of(name).path().string(),
                  "tensor \"" + name + "\" is not part of a student with these mixer options");
  student->eval();
  return student;
}

// ---- generation
// ----------------------------------------------------------------------------------------------

std::vector<int64_t> generate(HedgeMambaStudent& student, const std::vector<int64_t>& prompt,
                              const GenerationOptions& options,
                              const std::function<void(int64_t)>& on_token) {
  if (prompt.empty()) throw Error("prompt", "is empty; give at least one token");
  torch::NoGradGuard no_grad;
  Prng prng(options.seed);
  const auto device = student->lm_head_weight().device();
  StudentState state;
  const at::Tensor ids =
      at::tensor(prompt, at::TensorOptions().dtype(at::kLong)).unsqueeze(0).to(device);  // [1,T]
  at::Tensor last = student->forward(ids, state).select(1, ids.size(1) - 1);             // [1, V]
  std::vector<int64_t> out;
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    const int64_t next = pick_next_token(last[0].to(at::kCPU), options, prng);
    out.push_back(next);
    if (on_token) on_token(next);
    if (options.stop_token && next == *options.stop_token) break;
    if (i + 1 == options.max_new_tokens) break;
    last = student->step(at::full({1}, next, at::TensorOptions().dtype(at::kLong).device(device)),
                         state);  // [1,V]
  }
  return out;
}

}  // namespace hedgelab::models
