// Per-token cosine alignment between a student's and a teacher's attention outputs (docs/method.md §3, the
// stage-1 loss 1 − cos), in float32 whatever the inputs' dtype. Rows are every index but the last:
// student, teacher [..., d] → cos [...].
//   cos = s·t / (max(‖s‖, ε) · max(‖t‖, ε)),   ε = 1e-8 (at::cosine_similarity's convention).
#pragma once

#include <ATen/ATen.h>

namespace hedgelab::ops {

constexpr double kCosineEps = 1e-8;

// The ATen form (the reference): at::cosine_similarity on float32 copies of both inputs. Differentiable.
at::Tensor cosine_alignment_reference(const at::Tensor& student, const at::Tensor& teacher);

// cos [...] in float32, differentiable in both inputs: the fused kernel registered by the CUDA library
// (cuda/) when (1) one is registered, (2) both inputs are on a CUDA device in float32 or bf16, (3)
// use_reference_scan() is false (one switch for every fused kernel, hedge_mamba_scan.h) and (4) the fused
// form is preferred (the default; HEDGELAB_FUSED_COSINE=0 in the environment or
// set_prefer_fused_cosine_alignment(false) keeps the ATen form); the reference otherwise. The fused kernel
// reads each row once in the forward and once in the backward, where the ATen form makes about a dozen
// float32 passes over [rows, d] (the casts, the norms, the divisions, the product and their gradients).
at::Tensor cosine_alignment(const at::Tensor& student, const at::Tensor& teacher);

// ---- dispatch ---------------------------------------------------------------------------------------------
// The fused function gets student and teacher of one shape [..., d] (float32 or bf16, each its own) and
// returns cos [...] float32, differentiable in both.
using CosineAlignmentFn = at::Tensor (*)(const at::Tensor& student, const at::Tensor& teacher);
// nullptr unregisters.
void register_fused_cosine_alignment(CosineAlignmentFn fn);
CosineAlignmentFn registered_fused_cosine_alignment();
void set_prefer_fused_cosine_alignment(bool prefer);
bool prefer_fused_cosine_alignment();

}  // namespace hedgelab::ops
