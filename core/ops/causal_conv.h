// The depthwise short causal convolution in front of the HedgeMamba mixer's scan (docs/method.md §4: the
// x, k and q branches each pass one of width W, 4 by default), over [B,T,C] with channels innermost:
//   out[b,t,c] = bias[c] + Σ_{j<W} w[c,j] · in[b, t−(W−1)+j, c]      (inputs before the block from `tail`)
// Accumulated in float32 against float32 weights and handed on in the input's dtype, as autocast does for a
// convolution: a bf16 input stays bf16.
#pragma once

#include <ATen/ATen.h>

namespace hedgelab::ops {

// The ATen form (the reference): one concatenation with the tail, W shifted multiply-adds over [B,C,T].
// in [B,T,C], weight [C,W], bias [C]; tail [B,C,W−1] holds the inputs before this block (zeros when null or
// undefined) and, when given, receives the last W−1 inputs afterwards. Differentiable.
at::Tensor causal_conv1d_reference(const at::Tensor& in, const at::Tensor& weight, const at::Tensor& bias,
                                   at::Tensor* tail = nullptr);  // [B, T, C]

// The same, through the fused kernel registered by the CUDA library (cuda/) when (1) one is registered,
// (2) no tail is asked for (a whole sequence from t = 0: training, scoring, a prefill without state), (3)
// the input is on a CUDA device in float32 or bf16 and the weight and bias are float32 on it, (4) W ≤ 8,
// (5) use_reference_scan() is false (one switch for every fused kernel, hedge_mamba_scan.h) and (6) the
// fused form is preferred (the default; HEDGELAB_FUSED_CONV=0 in the environment or
// set_prefer_fused_causal_conv(false) keeps the ATen form); the reference otherwise. The fused kernel
// reads the input once and writes the output once in the forward (the ATen form makes a transposed copy, a
// concatenation and 2·W float32 passes over [B,C,T]), and reads input and output gradient once in the
// backward.
at::Tensor causal_conv1d(const at::Tensor& in, const at::Tensor& weight, const at::Tensor& bias,
                         at::Tensor* tail = nullptr);  // [B, T, C]

// ---- dispatch ---------------------------------------------------------------------------------------------
// The fused function gets in [B,T,C] (float32 or bf16), weight [C,W] and bias [C] float32 on in's device,
// and returns out [B,T,C] in in's dtype, differentiable in all three.
using CausalConvFn = at::Tensor (*)(const at::Tensor& in, const at::Tensor& weight, const at::Tensor& bias);
constexpr int64_t kFusedCausalConvMaxWidth = 8;
// nullptr unregisters.
void register_fused_causal_conv(CausalConvFn fn);
CausalConvFn registered_fused_causal_conv();
void set_prefer_fused_causal_conv(bool prefer);
bool prefer_fused_causal_conv();

}  // namespace hedgelab::ops
