// Stage 2's mixer (docs/method.md §4): a Mamba-style selective state-space layer whose parameters are
// initialised from a stage-1 Hedgehog layer so that, fresh, it computes that layer's attention output.
// Per head h (state N×P):
//   x = conv(W_v u), k = conv(W_k u), q = conv(W_q u), rotary on q and k, B = φ_k(k), C = φ_q(q),
//   Δ = softplus(w_Δ·u + b_Δ), A_h = −exp(a_h), S_t = α_t S_{t−1} + Δ_t B_t x_tᵀ, n_t likewise with x ≡ 1,
//   y = gain_h · g(z) ⊙ (C S / (C n + ε) + D_h x),  g = 2σ(W_z u),  o = W_o y.
// Shape symbols: docs/architecture.md, "Shapes".
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/models/gpt_neox.h"
#include "core/models/hedgehog.h"
#include "core/ops/hedge_mamba_scan.h"

namespace hedgelab::models {

enum class MixerNormalization {
  kDenominator,   // y = C S / (C n + ε): the linear attention's row normalization (default)
  kGatedRmsNorm,  // y = RMSNorm_head(C S ⊙ g(z)) · w, Mamba-2 style; n is not used
};
std::string mixer_normalization_name(MixerNormalization n);  // "denominator", "gated_rmsnorm"
MixerNormalization mixer_normalization_from_string(const std::string& name,
                                                   const std::string& where = "normalization");

// The fresh mixer's a_h = −16: α = exp(−Δ e^{a_h}) = 1 − 1.1e-7 per token at Δ = 1, so even over a 2048-token
// context the oldest token's weight is only 2.3e-4 below the newest's (measured: logits within 8e-7 of stage
// 1 at T = 64; −12 gives 4e-5, −8 gives 2e-3). ∂L/∂a_h = Σ_t ∂L/∂logα_t · logα_t is then ~1e-7 per unit of
// ∂L/∂logα, still well above Adam's ε = 1e-8, so the decay can be learned. MixerOptions::fresh_log_decay
// overrides it.
inline constexpr double kFreshLogDecay = -16.0;

struct MixerOptions {
  // Feature maps of a direct (randomly initialised) mixer; from_stage1 takes kind, m and eps from stage 1.
  ops::FeatureMapKind feature_map = ops::FeatureMapKind::kPerHalfSoftmax;
  int64_t feature_dim = 0;  // m; 0 = P
  int64_t chunk = 64;       // L of the chunked scan
  bool rotary = true;       // rotary on q and k (the teacher's r, base and scaling)
  int64_t conv_width = 4;   // taps of the depthwise causal convs
  MixerNormalization normalization = MixerNormalization::kDenominator;
  bool gate = true;             // false: no W_z, g ≡ 1 (ablation "no gate")
  bool conv = true;             // false: no convs (ablation "no conv")
  bool selective_decay = true;  // false: A ≡ 0, α ≡ 1, not trainable (ablation "no selective decay")
  double eps = 1e-6;            // ε of the denominator or of the RMSNorm
  double fresh_log_decay = kFreshLogDecay;  // a_h of a mixer built from stage 1

  nlohmann::json to_json() const;
  // Missing keys keep their defaults; bad values throw hedgelab::Error naming `source` and the key.
  static MixerOptions from_json(const nlohmann::json& j, const std::string& source);
  void validate(const std::string& source) const;
};

// Depthwise causal convolution over [B,T,C]: out_t[c] = Σ_j w[c,j] in_{t−W+1+j}[c] + bias[c]
// (ops::causal_conv1d: the fused kernel on CUDA where it applies, the ATen reference otherwise).
struct CausalConv1dImpl : torch::nn::Module {
  CausalConv1dImpl(int64_t channels, int64_t width);  // identity init: last tap 1, others 0, bias 0
  // in [B,T,C]; tail [B,C,W−1] holds the inputs before this block (zeros when undefined) and, when given,
  // receives the last W−1 inputs afterwards.
  at::Tensor forward(const at::Tensor& in, at::Tensor* tail = nullptr) const;  // [B,T,C]

  at::Tensor weight;  // [C, W]
  at::Tensor bias;    // [C]
};
TORCH_MODULE(CausalConv1d);

// O(1) decoding state of one mixer.
struct MixerState {
  ops::ScanState scan;   // S [B,H,N,P], n [B,H,N]
  at::Tensor conv_x;     // [B,d,W−1] inputs of the x conv not yet out of its window (when conv is on)
  at::Tensor conv_k;     // [B,d,W−1]
  at::Tensor conv_q;     // [B,d,W−1]
  int64_t position = 0;  // tokens consumed: the next token's rotary position

  bool empty() const { return !scan.S.defined(); }
};

// What the probes (docs/method.md §7, "Mamba internals") read from one mixer forward.
struct MixerProbeOptions {
  bool state_norms = false;        // ‖S_t‖ per head and token (one decoding step per token)
  bool implied_attention = false;  // the mixer's attention matrix via the quadratic reference form
};

struct MixerCapture {
  at::Tensor delta;        // Δ [B,H,T]
  at::Tensor alpha;        // α = exp(Δ A) [B,H,T]
  at::Tensor gate;         // g(z) [B,T,d] (undefined without a gate)
  at::Tensor output;       // o [B,T,d], the mixer's output
  at::Tensor final_state;  // S_T [B,H,N,P]
  at::Tensor features_q;   // C = φ_q(rot(q)) [B,H,T,N]
  at::Tensor features_k;   // B = φ_k(rot(k)) [B,H,T,N]
  at::Tensor state_norms;  // ‖S_t‖_F [B,H,T], with state_norms
  // M_ts = (C_t·B_s) Δ_s e^{ℓ_t−ℓ_s} / (den_t + ε) [B,H,T,T] (denominator mode: rows sum to ≈ 1);
  // unnormalised M in gated_rmsnorm mode. With implied_attention.
  at::Tensor implied_attention;
};

class HedgeMambaMixerImpl : public torch::nn::Module {
 public:
  // Default initialisation = the "fresh" one with identity feature maps and random projections (Linear's
  // default); from_stage1 / init_direct overwrite what they set.
  HedgeMambaMixerImpl(const GptNeoXConfig& config, const MixerOptions& options);

  // Sets this mixer to compute stage-1 layer `layer` exactly: projections from the copied query_key_value
  // (per-head [q|k|v] rows) and dense, stage 1's feature maps and gains, identity convs, Δ = 1, a_h =
  // options.fresh_log_decay, D = 0, W_z = 0, RMSNorm weight 1.
  void init_from_stage1(const HedgehogLMImpl& stage1, int64_t layer);
  // The direct baseline's standard Mamba initialisation from `prng`-drawn numbers (same on every machine).
  void init_direct(uint64_t seed);

  // u [B,T,d] → o [B,T,d]. With `state`, continues from it (an empty state = the start) and leaves the state
  // after the last token in it: the prefill of decoding.
  at::Tensor forward(const at::Tensor& u, MixerState* state = nullptr) const;
  at::Tensor forward_with(const at::Tensor& u, const MixerProbeOptions& probes, MixerCapture& capture) const;
  // One token: u_t [B,d] → o_t [B,d], updating `state` (an empty state = the start).
  at::Tensor step(const at::Tensor& u_t, MixerState& state) const;

  at::Tensor A() const;  // A_h = −exp(a_h) [H], or zeros without selective decay
  const MixerOptions& options() const { return options_; }
  int64_t feature_dim() const { return m_; }

  // Parameters (registered names): q_proj, k_proj, v_proj, out_proj (Linear with bias); conv_x, conv_k,
  // conv_q (with conv); feature_map_q, feature_map_k; delta_weight [H,d], delta_bias [H]; A_log [H] (with
  // selective decay); D [H]; output_gain [H]; gate_proj (with gate, Linear [d,d] without bias); norm_weight
  // [d] (gated_rmsnorm).
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  CausalConv1d conv_x{nullptr}, conv_k{nullptr}, conv_q{nullptr};
  HedgehogFeatureMap feature_map_q{nullptr}, feature_map_k{nullptr};
  at::Tensor delta_weight;               // w_Δ [H, d]
  at::Tensor delta_bias;                 // b_Δ [H]
  at::Tensor A_log;                      // a_h [H]
  at::Tensor D;                          // [H]
  at::Tensor output_gain;                // [H]
  torch::nn::Linear gate_proj{nullptr};  // W_z [d, d]
  at::Tensor norm_weight;                // [d]

 private:
  // The scan's inputs for u [B,T,d]: x, B, C (each [B,H,T,·]) and Δ [B,H,T]; advances the conv tails and
  // reads the rotary position of `state` when given.
  struct ScanInputs {
    at::Tensor x, Bm, Cm, dt;
  };
  ScanInputs scan_inputs(const at::Tensor& u, MixerState* state) const;
  at::Tensor run(const at::Tensor& u, MixerState* state, const MixerProbeOptions* probes,
                 MixerCapture* capture) const;
  at::Tensor finish(const at::Tensor& u, const at::Tensor& num, const at::Tensor& den,
                    const at::Tensor& x_heads, at::Tensor* gate_out) const;

  GptNeoXConfig config_;
  MixerOptions options_;
  int64_t m_ = 0;
};
TORCH_MODULE(HedgeMambaMixer);

// softplus⁻¹(y) = y + log(−expm1(−y)), for y > 0.
double inverse_softplus(double y);

}  // namespace hedgelab::models
