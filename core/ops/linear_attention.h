// Causal normalized linear attention (docs/method.md §3) in three forms that compute the same y:
//   a_ts = φ_q(q_t)ᵀ φ_k(k_s) (s ≤ t),   y_t = num_t / (den_t + eps),
//   num_t = Σ_{s≤t} a_ts v_s,   den_t = Σ_{s≤t} a_ts.
// eps sits in the same place in every form: added once to the row's denominator, never to a_ts or to the
// state, so ā_ts = a_ts / (den_t + eps) and the forms differ only by rounding. Layout [B, H, T, ·]; N is the
// feature size (2m), P the head width. All forms are differentiable through LibTorch autograd.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace hedgelab::ops {

// Running state of the recurrent form: S = Σ_s φ_k(k_s) v_sᵀ, z = Σ_s φ_k(k_s).
struct LinearAttentionState {
  at::Tensor S;  // [B, H, N, P]
  at::Tensor z;  // [B, H, N]
};

struct LinearAttentionStep {
  at::Tensor y;                // [B, H, P]
  LinearAttentionState state;  // after the token
};

// Quadratic form, the exact reference: phi_q, phi_k [B,H,T,N], v [B,H,T,P] → y [B,H,T,P]. When weights_out
// is given it receives ā [B,H,T,T] (zero above the diagonal), e.g. for attention-map probes and the
// Hedgehog weight loss.
at::Tensor linear_attention_quadratic(const at::Tensor& phi_q, const at::Tensor& phi_k, const at::Tensor& v,
                                      double eps, at::Tensor* weights_out = nullptr);

// Chunked form: quadratic inside chunks of `chunk` tokens, state (S, z) carried between chunks; any T.
// `initial` continues from an earlier state (zeros when null); `final_state` receives the state after T.
// `gain` [H] (float32), when defined, scales each head's output: y_h · gain_h, as one op with the
// normalisation where the fused kernel runs.
at::Tensor linear_attention_chunked(const at::Tensor& phi_q, const at::Tensor& phi_k, const at::Tensor& v,
                                    int64_t chunk, double eps, const LinearAttentionState* initial = nullptr,
                                    LinearAttentionState* final_state = nullptr,
                                    const at::Tensor& gain = at::Tensor());

// Zero state for decoding.
LinearAttentionState linear_attention_zero_state(int64_t B, int64_t H, int64_t N, int64_t P,
                                                 const at::TensorOptions& options);

// One token of decoding: phi_q_t, phi_k_t [B,H,N], v_t [B,H,P]. The token attends to itself, so the state is
// updated first and then read. An undefined state (default-constructed) counts as zeros.
LinearAttentionStep linear_attention_recurrent_step(const LinearAttentionState& state,
                                                    const at::Tensor& phi_q_t, const at::Tensor& phi_k_t,
                                                    const at::Tensor& v_t, double eps);

// ---- dispatch ---------------------------------------------------------------------------------------------
// linear_attention_chunked runs the fused kernel registered by the CUDA library (cuda/) when one is
// registered, v is on a CUDA device, use_reference_scan() is false (one switch for every fused kernel,
// hedge_mamba_scan.h) and the fused linear attention is preferred (the default); otherwise the chunked ATen
// form below. At the stage-1 shapes measured (Pythia 160m–1b, B4 T2048, bf16 inputs, docs/results.md) the
// kernel's forward+backward is 1.13–1.51× faster than this form at its default chunk of 64, and under
// autocast this form runs in float32 (φ comes out of a float32 softmax) where the kernel runs φ in v's dtype.
// HEDGELAB_FUSED_LINEAR_ATTENTION=0 in the environment, or set_prefer_fused_linear_attention(false), keeps
// the ATen form (then chunk 256 is the faster one at N 512: 2.40 against the kernel's 3.47 ms at pythia-1b's
// shape). The fused function gets checked inputs (gain undefined or [H]) and returns y [B,H,T,P] (and the
// final state when asked), differentiable through autograd.
using LinearAttentionFn = at::Tensor (*)(const at::Tensor& phi_q, const at::Tensor& phi_k,
                                         const at::Tensor& v, double eps, const LinearAttentionState* initial,
                                         LinearAttentionState* final_state, const at::Tensor& gain);
// nullptr unregisters.
void register_fused_linear_attention(LinearAttentionFn fn);
LinearAttentionFn registered_fused_linear_attention();
void set_prefer_fused_linear_attention(bool prefer);
bool prefer_fused_linear_attention();

}  // namespace hedgelab::ops
