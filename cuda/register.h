// The CUDA library's entry points for the apps and tests (cuda/README.md). Built only when LibTorch has CUDA
// (HEDGELAB_CUDA_ENABLED); the library also registers itself when it is loaded.
#pragma once

#include <ATen/ATen.h>

#include "core/ops/causal_conv.h"
#include "core/ops/cosine_alignment.h"
#include "core/ops/hedge_mamba_scan.h"
#include "core/ops/hedgehog_feature_map.h"
#include "core/ops/linear_attention.h"
#include "core/ops/logit_losses.h"
#include "core/ops/mixer_output.h"
#include "core/ops/rotary.h"
#include "cuda/scan_params.h"

namespace hedgelab::cuda {

// Registers the fused kernels into core/ops' dispatch (ops::register_fused_scan,
// ops::register_fused_scan_step, ops::register_fused_linear_attention, ops::register_fused_feature_map,
// ops::register_fused_cosine_alignment ops::register_fused_causal_conv, ops::register_fused_mixer_output,
// ops::register_fused_rotary and ops::register_fused_logit_losses). Idempotent.
void register_kernels();

// Whether the fused scan's forward keeps the states entering every chunk for its backward (the default), or
// the backward recomputes them with one more state pass (false; HEDGELAB_SCAN_RECOMPUTE_STATES=1 in the
// environment starts that way). Keeping costs ⌈T/64⌉·N·P elements a (b, h) per scan call until its backward
// (at pythia-1b, B4 T2048, N 512: 268 MB a layer in bf16); the gradients are the same either way.
void set_keep_scan_states(bool keep);
bool keep_scan_states();

// Which form of the scan's state pass runs (scan_params.h: sequential, parallel, or auto by the GPU's size);
// HEDGELAB_SCAN_STATE_PASS=sequential|parallel|auto in the environment sets the start value, auto
// without it (hedge_mamba_scan_cuda.cpp, kDefaultStatePass).
// The results agree within rounding (the parallel form rounds every chunk's share to the operand type).
void set_scan_state_pass(StatePass pass);
StatePass scan_state_pass();
// The variable's value as read at the first scan: null or empty gives the default (auto); anything but the
// three names throws hedgelab::Error, one line naming HEDGELAB_SCAN_STATE_PASS and the value.
StatePass parse_scan_state_pass(const char* value);

// The fused scan itself (an ops::ScanFn): x, Bm, Cm on one CUDA device; bf16 inputs run bf16 tensor-core
// operands, any other floating dtype runs tf32 operands; fp32 accumulation and state either way. num and
// the final state have x's dtype, den is float32 (as the kernels accumulate it); differentiable in every
// input through a LibTorch autograd Function.
ops::ScanOutput fused_hedge_mamba_scan(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                                       const at::Tensor& dt, const at::Tensor& A,
                                       const ops::ScanState* initial);

// One token of decoding (an ops::ScanStepFn): the state update and its read-out in one kernel, float32
// arithmetic, S' and n' rounded to the operands' dtype (float32 or bf16, one for all) once. No backward:
// core/ops' dispatch takes the ATen reference when a gradient is asked.
ops::ScanStepOutput fused_hedge_mamba_step(const ops::ScanState& state, const at::Tensor& x_t,
                                           const at::Tensor& B_t, const at::Tensor& C_t,
                                           const at::Tensor& dt_t, const at::Tensor& A);

// Causal normalized linear attention (Hedgehog stage 1, an ops::LinearAttentionFn) on the same kernels: the
// scan with Δ ≡ 1 and A ≡ 0 (no decay) gives num and den together; y = num / (den + eps). The feature maps
// come in already computed (fused_hedgehog_features below, or the ATen form).
// y = num / (den + eps) · gain (gain [H] float32 or undefined): ATen's division and product by default;
// HEDGELAB_FUSED_LA_NORMALISE=1 (opt-in, not yet run on a GPU) sends it through fused_mixer_output (D ≡ 0, no
// gate), y then in v's dtype as the [B,H,T,P] view of a [B,T,d] tensor.
at::Tensor fused_linear_attention(const at::Tensor& phi_q, const at::Tensor& phi_k, const at::Tensor& v,
                                  double eps, const ops::LinearAttentionState* initial,
                                  ops::LinearAttentionState* final_state, const at::Tensor& gain);
// Which of those two forms runs (the environment variable sets the start value).
void set_linear_attention_read_out(bool on);
bool linear_attention_read_out();

// The per-half softmax Hedgehog feature map (an ops::FeatureMapFn): z = u Wᵀ [B,H,T,m] (float32 or bf16,
// without the bias) and b [H,m] on one CUDA device → φ = [softmax(z + b), softmax(−z − b)] [B,H,T,2m] in z's
// dtype, the softmaxes in float32; differentiable in z and b (the backward recomputes φ from z).
at::Tensor fused_hedgehog_features(const at::Tensor& z, const at::Tensor& b);

// Stage 1's per-token cosine alignment (an ops::CosineAlignmentFn): student and teacher [..., d] on one CUDA
// device, float32 or bf16 each → cos [...] float32, reduced in float32; differentiable in both (the backward
// reads each input once more and needs no reduction).
at::Tensor fused_cosine_alignment(const at::Tensor& student, const at::Tensor& teacher);

// The mixer's short causal convolution (an ops::CausalConvFn): in [B,T,C] float32 or bf16, weight [C,W]
// (W ≤ 8) and bias [C] float32 on one CUDA device → out [B,T,C] in in's dtype, accumulated in float32;
// differentiable in all three (the weight and bias gradients as per-block partial sums, then one sum).
at::Tensor fused_causal_conv1d(const at::Tensor& in, const at::Tensor& weight, const at::Tensor& bias);

// The mixer's read-out (an ops::MixerOutputFn): y = (num / (den + eps) + D·x) · 2σ(z) · gain with the heads
// merged; num and x [B,H,T,P] (x any strides), z [B,T,d] or undefined, in one dtype (float32 or bf16), den
// [B,H,T], D and gain [H] float32, on one CUDA device → y [B,T,d] in num's dtype; differentiable in all of
// them.
at::Tensor fused_mixer_output(const at::Tensor& num, const at::Tensor& den, const at::Tensor& x,
                              const at::Tensor& D, const at::Tensor& gate_z, const at::Tensor& gain,
                              double eps);

// The rotary embedding (an ops::RotaryFn): x [B,H,T,P] float32 or bf16 on a CUDA device (unit stride along
// P), inv_freq [r/2] float32 (ops::rotary_inverse_frequencies) → y [B,H,T,P] dense in x's dtype, the angles
// and products in float32; differentiable in x (the backward rotates the gradient back).
at::Tensor fused_rotary(const at::Tensor& x, const at::Tensor& inv_freq, int64_t rotary_dims,
                        double linear_factor, int64_t position_offset);

// Stage 2's CE and KD rows (an ops::LogitLossesFn): student and KD-target logits [N, V] (float32 or bf16
// each), targets [N] int64 and τ > 0 on one CUDA device → ce_n and KL_n [N] float32, differentiable in the
// student's logits; one read of both logits forward, one more backward, three float32 numbers a row kept.
std::pair<at::Tensor, at::Tensor> fused_logit_losses(const at::Tensor& student_logits,
                                                     const at::Tensor& teacher_logits,
                                                     const at::Tensor& targets, double temperature);

}  // namespace hedgelab::cuda
