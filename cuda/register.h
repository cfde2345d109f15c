// The CUDA library's entry points for the apps and tests (cuda/README.md). Built only when LibTorch has CUDA
// (HEDGELAB_CUDA_ENABLED); the library also registers itself when it is loaded.
#pragma once

#include <ATen/ATen.h>

#include "core/ops/hedge_mamba_scan.h"
#include "core/ops/hedgehog_feature_map.h"
#include "core/ops/linear_attention.h"

namespace hedgelab::cuda {

// Registers the fused kernels into core/ops' dispatch (ops::register_fused_scan,
// ops::register_fused_linear_attention and ops::register_fused_feature_map). Idempotent.
void register_kernels();

// The fused scan itself (an ops::ScanFn): x, Bm, Cm on one CUDA device; bf16 inputs run bf16 tensor-core
// operands, any other floating dtype runs tf32 operands; fp32 accumulation and state either way. Outputs
// have x's dtype; differentiable in every input through a LibTorch autograd Function.
ops::ScanOutput fused_hedge_mamba_scan(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                                       const at::Tensor& dt, const at::Tensor& A,
                                       const ops::ScanState* initial);

// Causal normalized linear attention (Hedgehog stage 1, an ops::LinearAttentionFn) on the same kernels: the
// scan with Δ ≡ 1 and A ≡ 0 (no decay) gives num and den together; y = num / (den + eps). The feature maps
// come in already computed (fused_hedgehog_features below, or the ATen form).
at::Tensor fused_linear_attention(const at::Tensor& phi_q, const at::Tensor& phi_k, const at::Tensor& v,
                                  double eps, const ops::LinearAttentionState* initial,
                                  ops::LinearAttentionState* final_state);

// The per-half softmax Hedgehog feature map (an ops::FeatureMapFn): z = u Wᵀ [B,H,T,m] (float32 or bf16,
// without the bias) and b [H,m] on one CUDA device → φ = [softmax(z + b), softmax(−z − b)] [B,H,T,2m] in z's
// dtype, the softmaxes in float32; differentiable in z and b (the backward recomputes φ from z).
at::Tensor fused_hedgehog_features(const at::Tensor& z, const at::Tensor& b);

}  // namespace hedgelab::cuda
