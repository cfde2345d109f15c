#include "core/models/hedge_mamba.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/common/error.h"
#include "core/common/prng.h"
#include "core/ops/autocast.h"
#include "core/ops/causal_conv.h"
#include "core/ops/hedge_mamba_scan_ref.h"
#include "core/ops/mixer_output.h"
#include "core/ops/trained_linear.h"

namespace hedgelab::models {

using nlohmann::json;

// ---- options ----------------------------------------------------------------------------------------------

std::string mixer_normalization_name(MixerNormalization n) {
  return n == MixerNormalization::kDenominator ? "denominator" : "gated_rmsnorm";
}

MixerNormalization mixer_normalization_from_string(const std::string& name, const std::string& where) {
  if (name == "denominator") return MixerNormalization::kDenominator;
  if (name == "gated_rmsnorm") return MixerNormalization::kGatedRmsNorm;
  throw Error(where, "unknown normalization \"" + name + "\" (expected denominator or gated_rmsnorm)");
}

json MixerOptions::to_json() const {
  return json{{"feature_map", ops::feature_map_kind_name(feature_map)},
              {"feature_dim", feature_dim},
              {"chunk", chunk},
              {"rotary", rotary},
              {"conv_width", conv_width},
              {"normalization", mixer_normalization_name(normalization)},
              {"gate", gate},
              {"conv", conv},
              {"selective_decay", selective_decay},
              {"eps", eps},
              {"fresh_log_decay", fresh_log_decay}};
}

namespace {

template <typename T>
void read_field(const json& j, const char* key, T& out, const std::string& source) {
  if (!j.contains(key) || j.at(key).is_null()) return;
  const json& v = j.at(key);
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) throw Error(source + ": " + key, "expected true or false, got " + v.dump());
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) throw Error(source + ": " + key, "expected an integer, got " + v.dump());
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) throw Error(source + ": " + key, "expected a number, got " + v.dump());
  } else {
    if (!v.is_string()) throw Error(source + ": " + key, "expected a string, got " + v.dump());
  }
  out = v.get<T>();
}

}  // namespace

MixerOptions MixerOptions::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) throw Error(source, "expected a JSON object of mixer options");
  MixerOptions o;
  std::string feature_map = ops::feature_map_kind_name(o.feature_map);
  std::string normalization = mixer_normalization_name(o.normalization);
  read_field(j, "feature_map", feature_map, source);
  read_field(j, "feature_dim", o.feature_dim, source);
  read_field(j, "chunk", o.chunk, source);
  read_field(j, "rotary", o.rotary, source);
  read_field(j, "conv_width", o.conv_width, source);
  read_field(j, "normalization", normalization, source);
  read_field(j, "gate", o.gate, source);
  read_field(j, "conv", o.conv, source);
  read_field(j, "selective_decay", o.selective_decay, source);
  read_field(j, "eps", o.eps, source);
  read_field(j, "fresh_log_decay", o.fresh_log_decay, source);
  o.feature_map = ops::feature_map_kind_from_string(feature_map, source + ": feature_map");
  o.normalization = mixer_normalization_from_string(normalization, source + ": normalization");
  o.validate(source);
  return o;
}

void MixerOptions::validate(const std::string& source) const {
  if (feature_dim < 0) throw Error(source + ": feature_dim", "expected 0 (= P) or a positive integer");
  if (chunk <= 0)
    throw Error(source + ": chunk", "expected a positive integer, got " + std::to_string(chunk));
  if (conv_width <= 0)
    throw Error(source + ": conv_width", "expected a positive integer, got " + std::to_string(conv_width));
  if (!(eps >= 0.0)) throw Error(source + ": eps", "expected a non-negative number");
  if (!std::isfinite(fresh_log_decay)) throw Error(source + ": fresh_log_decay", "expected a finite number");
}

double inverse_softplus(double y) {
  return y + std::log(-std::expm1(-y));
}

namespace {
// Linear::forward is not const; the mixer's forward is.
at::Tensor apply_linear(const torch::nn::Linear& l, const at::Tensor& x) {
  return ops::trained_linear(x, l->weight, l->bias.defined() ? l->bias : at::Tensor());
}
}  // namespace

// ---- causal conv ------------------------------------------------------------------------------------------

CausalConv1dImpl::CausalConv1dImpl(int64_t channels, int64_t width) {
  at::Tensor w = at::zeros({channels, width});  // [C, W]
  w.select(1, width - 1).fill_(1.0);            // identity: out_t = in_t
  weight = register_parameter("weight", w);
  bias = register_parameter("bias", at::zeros({channels}));  // [C]
}

at::Tensor CausalConv1dImpl::forward(const at::Tensor& in, at::Tensor* tail) const {
  return ops::causal_conv1d(in, weight, bias, tail);  // [B, T, C]
}

// ---- the mixer --------------------------------------------------------------------------------------------

HedgeMambaMixerImpl::HedgeMambaMixerImpl(const GptNeoXConfig& config, const MixerOptions& options)
    : config_(config), options_(options) {
  options_.validate("mixer options");
  const int64_t d = config.hidden_size, H = config.num_heads, P = config.head_size();
  m_ = options.feature_dim > 0 ? options.feature_dim : P;
  auto linear = [&](const char* name, bool bias) {
    return register_module(name, torch::nn::Linear(torch::nn::LinearOptions(d, d).bias(bias)));
  };
  q_proj = linear("q_proj", config.attention_bias);
  k_proj = linear("k_proj", config.attention_bias);
  v_proj = linear("v_proj", config.attention_bias);
  if (options.conv) {
    conv_x = register_module("conv_x", CausalConv1d(d, options.conv_width));
    conv_k = register_module("conv_k", CausalConv1d(d, options.conv_width));
    conv_q = register_module("conv_q", CausalConv1d(d, options.conv_width));
  }
  feature_map_q = register_module("feature_map_q", HedgehogFeatureMap(H, m_, P, options.feature_map));
  feature_map_k = register_module("feature_map_k", HedgehogFeatureMap(H, m_, P, options.feature_map));
  delta_weight = register_parameter("delta_weight", at::zeros({H, d}));                 // [H, d]
  delta_bias = register_parameter("delta_bias", at::full({H}, inverse_softplus(1.0)));  // [H]
  if (options.selective_decay)
    A_log = register_parameter("A_log", at::full({H}, options.fresh_log_decay));  // [H]
  D = register_parameter("D", at::zeros({H}));                                    // [H]
  output_gain = register_parameter("output_gain", at::ones({H}));                 // [H]
  if (options.gate) {
    gate_proj = linear("gate_proj", false);
    torch::NoGradGuard no_grad;
    gate_proj->weight.zero_();  // g = 2σ(0) = 1
  }
  if (options.normalization == MixerNormalization::kGatedRmsNorm)
    norm_weight = register_parameter("norm_weight", at::ones({d}));  // [d]
  out_proj = linear("out_proj", config.attention_bias);
}

void HedgeMambaMixerImpl::init_from_stage1(const HedgehogLMImpl& stage1, int64_t layer) {
  const GptNeoXConfig& c = stage1.config();
  const int64_t d = c.hidden_size, H = c.num_heads, P = c.head_size();
  TORCH_CHECK(d == config_.hidden_size && H == config_.num_heads, "init_from_stage1: shapes differ");
  const auto& attn = *stage1.base()->gpt_neox->layer(layer)->attention;
  const auto hedgehog = stage1.attention(layer);
  if (hedgehog->feature_map_q->weight.sizes() != feature_map_q->weight.sizes())
    throw Error("feature_dim", "the mixer's m = " + std::to_string(m_) + " differs from stage 1's m = " +
                                   std::to_string(hedgehog->feature_map_q->weight.size(1)));
  torch::NoGradGuard no_grad;
  // Per head the teacher's rows are [q | k | v] (method.md §2), not three contiguous d-blocks.
  const at::Tensor W = attn.query_key_value->weight.view({H, 3, P, d});  // [H, 3, P, d]
  torch::nn::Linear* targets[3] = {&q_proj, &k_proj, &v_proj};
  for (int64_t part = 0; part < 3; ++part) {
    (*targets[part])->weight.copy_(W.select(1, part).reshape({d, d}));
    if (attn.query_key_value->bias.defined())
      (*targets[part])->bias.copy_(attn.query_key_value->bias.view({H, 3, P}).select(1, part).reshape({d}));
  }
  out_proj->weight.copy_(attn.dense->weight);
  if (attn.dense->bias.defined()) out_proj->bias.copy_(attn.dense->bias);
  feature_map_q->weight.copy_(hedgehog->feature_map_q->weight);
  feature_map_q->bias.copy_(hedgehog->feature_map_q->bias);
  feature_map_k->weight.copy_(hedgehog->feature_map_k->weight);
  feature_map_k->bias.copy_(hedgehog->feature_map_k->bias);
  feature_map_q->kind = feature_map_k->kind = hedgehog->options.kind;
  output_gain.copy_(hedgehog->output_gain);
  for (const CausalConv1d* conv : {&conv_x, &conv_k, &conv_q}) {
    if (!*conv) continue;
    (*conv)->weight.zero_();
    (*conv)->weight.select(1, options_.conv_width - 1).fill_(1.0);
    (*conv)->bias.zero_();
  }
  // Δ = softplus(b_Δ) = 1 makes num/(den + ε) match stage 1's ε exactly (a Δ ≠ 1 would rescale ε).
  delta_weight.zero_();
  delta_bias.fill_(inverse_softplus(1.0));
  if (A_log.defined()) A_log.fill_(options_.fresh_log_decay);
  D.zero_();
  if (gate_proj) gate_proj->weight.zero_();
  if (norm_weight.defined()) norm_weight.fill_(1.0);
}

void HedgeMambaMixerImpl::init_direct(uint64_t seed) {
  Prng prng(seed);
  torch::NoGradGuard no_grad;
  // Fills `t` row-major from the portable PRNG, so a seed gives the same model with every LibTorch.
  auto uniform = [&](at::Tensor& t, double lo, double hi) {
    at::Tensor cpu = at::empty(t.sizes(), at::TensorOptions().dtype(at::kDouble));
    double* p = cpu.data_ptr<double>();
    for (int64_t i = 0; i < cpu.numel(); ++i)
      p[i] = lo + (hi - lo) * prng.next_double();
    t.copy_(cpu);
  };
  const int64_t d = config_.hidden_size;
  const double fan_in = 1.0 / std::sqrt(static_cast<double>(d));
  for (torch::nn::Linear* l : {&q_proj, &k_proj, &v_proj, &out_proj, &gate_proj}) {
    if (!*l) continue;
    uniform((*l)->weight, -fan_in, fan_in);
    if ((*l)->bias.defined()) (*l)->bias.zero_();
  }
  // Conv1d's default scale: fan-in = one channel × W taps.
  const double conv_scale = 1.0 / std::sqrt(static_cast<double>(options_.conv_width));
  for (CausalConv1d* conv : {&conv_x, &conv_k, &conv_q}) {
    if (!*conv) continue;
    uniform((*conv)->weight, -conv_scale, conv_scale);
    uniform((*conv)->bias, -conv_scale, conv_scale);
  }
  uniform(delta_weight, -fan_in, fan_in);
  // Mamba's Δ range: Δ = exp(uniform[log 1e-3, log 1e-1]) at u = 0, stored through softplus⁻¹.
  at::Tensor log_dt = at::empty_like(delta_bias);
  uniform(log_dt, std::log(1e-3), std::log(1e-1));
  at::Tensor dt = log_dt.exp();
  delta_bias.copy_(dt + at::log(-at::expm1(-dt)));
  if (A_log.defined()) {
    at::Tensor a = at::empty_like(A_log);
    uniform(a, 1.0, 16.0);  // A_h = −uniform[1, 16]
    A_log.copy_(a.log());
  }
  D.fill_(1.0);
  output_gain.fill_(1.0);
  if (norm_weight.defined()) norm_weight.fill_(1.0);
}

at::Tensor HedgeMambaMixerImpl::A() const {
  if (A_log.defined()) return -at::exp(A_log);         // [H]
  return at::zeros({config_.num_heads}, D.options());  // [H]: α ≡ 1
}

HedgeMambaMixerImpl::ScanInputs HedgeMambaMixerImpl::scan_inputs(const at::Tensor& u,
                                                                 MixerState* state) const {
  TORCH_CHECK(u.dim() == 3 && u.size(2) == config_.hidden_size, "HedgeMambaMixer: u must be [B, T, d], got ",
              u.sizes());
  const int64_t B = u.size(0), T = u.size(1), H = config_.num_heads, P = config_.head_size();
  at::Tensor q = apply_linear(q_proj, u);  // [B, T, d]
  at::Tensor k = apply_linear(k_proj, u);  // [B, T, d]
  at::Tensor x = apply_linear(v_proj, u);  // [B, T, d]
  if (options_.conv) {
    x = conv_x->forward(x, state ? &state->conv_x : nullptr);  // [B, T, d]
    k = conv_k->forward(k, state ? &state->conv_k : nullptr);  // [B, T, d]
    q = conv_q->forward(q, state ? &state->conv_q : nullptr);  // [B, T, d]
  }
  auto heads = [&](const at::Tensor& t) { return t.view({B, T, H, P}).permute({0, 2, 1, 3}); };  // [B,H,T,P]
  q = heads(q);
  k = heads(k);
  if (options_.rotary) {
    // Right before the feature maps, as stage 1 saw them: the fresh mixer then equals stage 1 exactly.
    const int64_t offset = state ? state->position : 0;
    const int64_t r = config_.rotary_dims();
    q = apply_rotary(q, r, config_.rotary_base, config_.rope_linear_factor, offset);  // [B, H, T, P]
    k = apply_rotary(k, r, config_.rotary_base, config_.rope_linear_factor, offset);  // [B, H, T, P]
  }
  ScanInputs in;
  in.x = heads(x);                                                                            // [B, H, T, P]
  in.Bm = feature_map_k->forward(k);                                                          // [B, H, T, N]
  in.Cm = feature_map_q->forward(q);                                                          // [B, H, T, N]
  in.dt = at::softplus(ops::trained_linear(u, delta_weight, delta_bias)).permute({0, 2, 1});  // [B, H, T]
  return in;
}

at::Tensor HedgeMambaMixerImpl::finish(const at::Tensor& u, const at::Tensor& num, const at::Tensor& den,
                                       const at::Tensor& x_heads, at::Tensor* gate_out) const {
  const int64_t B = num.size(0), H = num.size(1), T = num.size(2), P = num.size(3);
  const at::Tensor z = options_.gate ? apply_linear(gate_proj, u) : at::Tensor();  // [B, T, d]
  if (gate_out && z.defined()) *gate_out = 2.0 * at::sigmoid(z);  // [B, T, d]; 1 when W_z = 0
  if (options_.normalization == MixerNormalization::kDenominator) {
    // num / (den + eps) + D x, gated, scaled by the gain, heads merged: one op (fused on CUDA).
    return apply_linear(out_proj, ops::mixer_output(num, den, x_heads, D, z, output_gain, options_.eps));
  }
  at::Tensor y = num + D.view({1, H, 1, 1}) * x_heads;  // [B, H, T, P]
  y = y.permute({0, 2, 1, 3}).reshape({B, T, H * P});   // [B, T, d]
  if (z.defined()) y = y * (2.0 * at::sigmoid(z));      // [B, T, d]
  {
    // Mamba-2's gated RMSNorm, one group per head.
    const at::Tensor yh = y.view({B, T, H, P});  // [B, T, H, P]
    y = (yh * at::rsqrt(yh.pow(2).mean(-1, true) + options_.eps)).view({B, T, H * P}) *
        norm_weight;  // [B,T,d]
  }
  // The gain comes last so that the RMSNorm cannot cancel it.
  y = (y.view({B, T, H, P}) * output_gain.view({1, 1, H, 1})).view({B, T, H * P});  // [B, T, d]
  return apply_linear(out_proj, y);                                                 // [B, T, d]
}

at::Tensor HedgeMambaMixerImpl::run(const at::Tensor& u, MixerState* state, const MixerProbeOptions* probes,
                                    MixerCapture* capture) const {
  const bool continuing = state && !state->empty();
  const ops::ScanState initial = continuing ? state->scan : ops::ScanState{};
  const at::Tensor um = ops::matmul_operand(u);  // [B, T, d], cast once for its five projections
  const ScanInputs in = scan_inputs(um, state);
  const at::Tensor A_h = A();  // [H]
  ops::ScanOutput scan =
      ops::hedge_mamba_scan(in.x, in.Bm, in.Cm, in.dt, A_h, options_.chunk, continuing ? &initial : nullptr);
  if (state) {
    state->scan = scan.final_state;
    state->position += u.size(1);
  }
  at::Tensor gate;
  const at::Tensor o = finish(um, scan.num, scan.den, in.x, capture ? &gate : nullptr);  // [B, T, d]
  if (capture) {
    const int64_t H = A_h.size(0);
    capture->delta = in.dt;                                 // [B, H, T]
    capture->alpha = at::exp(in.dt * A_h.view({1, H, 1}));  // [B, H, T]
    capture->gate = gate;
    capture->output = o;
    capture->final_state = scan.final_state.S;
    capture->features_q = in.Cm;
    capture->features_k = in.Bm;
    if (probes && probes->state_norms) {
      ops::ScanState s = continuing ? initial : ops::ScanState{};
      std::vector<at::Tensor> norms;
      for (int64_t t = 0; t < u.size(1); ++t) {
        s = ops::hedge_mamba_step(s, in.x.select(2, t), in.Bm.select(2, t), in.Cm.select(2, t),
                                  in.dt.select(2, t), A_h)
                .state;
        norms.push_back(s.S.pow(2).sum({-2, -1}).sqrt());  // [B, H]
      }
      capture->state_norms = at::stack(norms, 2);  // [B, H, T]
    }
    if (probes && probes->implied_attention) {
      at::Tensor M;  // [B, H, T, T]
      const ops::ScanOutput q = ops::hedge_mamba_scan_quadratic(in.x, in.Bm, in.Cm, in.dt, A_h,
                                                                continuing ? &initial : nullptr, &M);
      if (options_.normalization == MixerNormalization::kDenominator)
        M = M / (q.den.unsqueeze(-1) + options_.eps);
      capture->implied_attention = M;
    }
  }
  return o;
}

at::Tensor HedgeMambaMixerImpl::forward(const at::Tensor& u, MixerState* state) const {
  return run(u, state, nullptr, nullptr);
}

at::Tensor HedgeMambaMixerImpl::forward_with(const at::Tensor& u, const MixerProbeOptions& probes,
                                             MixerCapture& capture) const {
  return run(u, nullptr, &probes, &capture);
}

at::Tensor HedgeMambaMixerImpl::step(const at::Tensor& u_t, MixerState& state) const {
  TORCH_CHECK(u_t.dim() == 2, "HedgeMambaMixer::step: u_t must be [B, d], got ", u_t.sizes());
  const at::Tensor u = ops::matmul_operand(u_t).unsqueeze(1);  // [B, 1, d]
  const ScanInputs in = scan_inputs(u, &state);                // conv tails advanced by one token
  const ops::ScanStepOutput s = ops::hedge_mamba_step(state.scan, in.x.select(2, 0), in.Bm.select(2, 0),
                                                      in.Cm.select(2, 0), in.dt.select(2, 0), A());
  state.scan = s.state;
  state.position += 1;
  return finish(u, s.num.unsqueeze(2), s.den.unsqueeze(2), in.x, nullptr).squeeze(1);  // [B, d]
}

}  // namespace hedgelab::models
