// Stage 2's two losses on the vocabulary logits (docs/method.md §4), from one read of the logits:
//   ce = mean_n [ lse(zˢ_n) − zˢ_n[y_n] ]                                   next-token cross-entropy
//   kd = τ² · mean_n KL(softmax(zᵗ_n/τ) ‖ softmax(zˢ_n/τ))                  the distillation term
// with zˢ the student's logits, zᵗ the KD target's (the teacher's, or the stage-1 model's), y the next
// tokens and lse the log-sum-exp over the vocabulary. Rows n are the B·T positions: logits [B,T,V] (or
// [N,V]), targets [B,T] (or [N]) int64, every target in [0, V). The KD target is a constant: no gradient
// reaches zᵗ. Both losses are float32 whatever the logits' dtype.
#pragma once

#include <ATen/ATen.h>

#include <utility>

namespace hedgelab::ops {

struct LogitLosses {
  at::Tensor ce;  // [] float32
  at::Tensor kd;  // [] float32, τ² · mean KL
};

// The ATen form (the reference): at::cross_entropy_loss and two log_softmax on float32 copies. It makes
// about twenty float32 passes over [N, V] in the forward and backward and keeps three [N, V] float32
// tensors for the backward. Differentiable in the student's logits.
LogitLosses logit_losses_reference(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                                   const at::Tensor& targets, double temperature);

// The same through the fused kernel registered by the CUDA library (cuda/) when (1) one is registered,
// (2) both logits are on one CUDA device in float32 or bf16 with targets int64 there, (3)
// use_reference_scan() is false (one switch for every fused kernel, hedge_mamba_scan.h) and (4) the fused
// form is preferred (the default; HEDGELAB_FUSED_LOGIT_LOSSES=0 in the environment or
// set_prefer_fused_logit_losses(false) keeps the ATen form); the reference otherwise. The fused kernel reads
// both logits once in the forward (online log-sum-exps, the max of zˢ shared by zˢ and zˢ/τ) and once in
// the backward, writes ∂zˢ once, and keeps three float32 numbers a row. A target outside [0, V) makes
// that row's ce NaN there (the reference raises instead).
LogitLosses logit_losses(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                         const at::Tensor& targets, double temperature);

// ---- dispatch ---------------------------------------------------------------------------------------------
// The fused function gets zˢ and zᵗ [N, V] (float32 or bf16 each, rows dense), targets [N] int64 and τ > 0,
// and returns the per-row ce_n and KL_n [N] float32, differentiable in zˢ; logit_losses takes the means.
using LogitLossesFn = std::pair<at::Tensor, at::Tensor> (*)(const at::Tensor& student_logits,
                                                            const at::Tensor& teacher_logits,
                                                            const at::Tensor& targets, double temperature);
// nullptr unregisters.
void register_fused_logit_losses(LogitLossesFn fn);
LogitLossesFn registered_fused_logit_losses();
void set_prefer_fused_logit_losses(bool prefer);
bool prefer_fused_logit_losses();

}  // namespace hedgelab::ops
