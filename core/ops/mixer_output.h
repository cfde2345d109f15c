// The HedgeMamba mixer's read-out between the scan and out_proj (docs/method.md §4), for the denominator
// normalization:
//   y[b,t,h·P+p] = ( num[b,h,t,p] / (den[b,h,t] + eps) + D[h] · x[b,h,t,p] ) · g[b,t,h·P+p] · gain[h]
// with the output gate g = 2σ(z), z = W_z u (g ≡ 1 without a gate). Heads are merged on the way out: num and
// x are [B,H,T,P], y is [B,T,d] with d = H·P. Computed in float32 and handed on in num's dtype (under bf16
// autocast the next step, out_proj, takes bf16 anyway).
#pragma once

#include <ATen/ATen.h>

namespace hedgelab::ops {

// The ATen form (the reference). num [B,H,T,P], den [B,H,T], x [B,H,T,P] (any strides), D [H], gate_z
// [B,T,d] or undefined (no gate), gain [H]. Differentiable in all of them. Returns [B,T,d] in num's dtype.
at::Tensor mixer_output_reference(const at::Tensor& num, const at::Tensor& den, const at::Tensor& x,
                                  const at::Tensor& D, const at::Tensor& gate_z, const at::Tensor& gain,
                                  double eps);  // [B, T, d]

// The same through the fused kernel registered by the CUDA library (cuda/) when (1) one is registered, (2)
// num, x and gate_z (if defined) are on one CUDA device in one dtype, float32 or bf16, and den, D and gain
// are there in float32 or num's dtype (the small ones are cast to float32 for the kernel: den is [B,H,T]),
// (3) use_reference_scan() is false and (4) the fused form is preferred (the default;
// HEDGELAB_FUSED_MIXER_OUTPUT=0 in the environment or set_prefer_fused_mixer_output(false) keeps the ATen
// form); the reference otherwise. The kernel reads num, x and z once and
// writes y once (the ATen form runs some ten float32 passes over [B,T,d] each way, and a copy to merge the
// heads).
at::Tensor mixer_output(const at::Tensor& num, const at::Tensor& den, const at::Tensor& x,
                        const at::Tensor& D, const at::Tensor& gate_z, const at::Tensor& gain,
                        double eps);  // [B, T, d]

// ---- dispatch ---------------------------------------------------------------------------------------------
// The fused function gets the inputs as above, under the conditions of (2), and returns y [B,T,d] in num's
// dtype, differentiable in all inputs.
using MixerOutputFn = at::Tensor (*)(const at::Tensor& num, const at::Tensor& den, const at::Tensor& x,
                                     const at::Tensor& D, const at::Tensor& gate_z, const at::Tensor& gain,
                                     double eps);
// nullptr unregisters.
void register_fused_mixer_output(MixerOutputFn fn);
MixerOutputFn registered_fused_mixer_output();
void set_prefer_fused_mixer_output(bool prefer);
bool prefer_fused_mixer_output();

}  // namespace hedgelab::ops
