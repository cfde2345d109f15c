// The rotary position embedding of docs/method.md §2 (GPT-NeoX's partial rotary), on the first r channels of
// every head and position offset … offset+T−1:
//   θ[t,j]  = ((offset + t) / linear_factor) · base^(−2j/r)          (j < r/2, in float32 as transformers has
//   it) y[j]      = x[j] cos θ[t,j] − x[j + r/2] sin θ[t,j]               (j < r/2) y[j+r/2]  = x[j+r/2] cos
//   θ[t,j] + x[j] sin θ[t,j] y[j]      = x[j]                                                   (j ≥ r:
//   passed through)
#pragma once

#include <ATen/ATen.h>

namespace hedgelab::ops {

// The ATen form (the reference): the cos and sin tables cast to x's dtype, rotate-half, two concatenations.
// x [B,H,T,P] (any strides); returns [B,H,T,P] in x's dtype. Differentiable.
at::Tensor rotary_reference(const at::Tensor& x, int64_t rotary_dims, double base, double linear_factor,
                            int64_t position_offset);  // [B, H, T, P]

// The inverse frequencies base^(−2j/r), j < r/2, float32 on `device` (computed on the CPU, as transformers
// does, and moved); the reference and the fused kernel both take this table, so both see the same
// frequencies. Made once per (r, base, device) and shared: read it, never write it.
at::Tensor rotary_inverse_frequencies(int64_t rotary_dims, double base, at::Device device);  // [r/2]

// The same through the fused kernel registered by the CUDA library (cuda/) when (1) one is registered, (2)
// x is a CUDA float32 or bf16 tensor with unit stride along P, (3) r is even and 0 < r ≤ P, (4)
// use_reference_scan() is false and (5) the fused form is preferred (the default:
// HEDGELAB_FUSED_ROTARY=0 in the environment or set_prefer_fused_rotary(false) keeps the ATen form); the
// reference otherwise. The
// kernel reads x once and writes y once (cos and sin in float32 from θ, never stored), where the ATen form
// makes some eight passes and two concatenations.
at::Tensor rotary(const at::Tensor& x, int64_t rotary_dims, double base, double linear_factor,
                  int64_t position_offset);  // [B, H, T, P]

// ---- dispatch ---------------------------------------------------------------------------------------------
// The fused function gets x under the conditions above and inv_freq from rotary_inverse_frequencies, and
// returns y [B,H,T,P] (dense) in x's dtype, differentiable in x.
using RotaryFn = at::Tensor (*)(const at::Tensor& x, const at::Tensor& inv_freq, int64_t rotary_dims,
                                double linear_factor, int64_t position_offset);
// nullptr unregisters.
void register_fused_rotary(RotaryFn fn);
RotaryFn registered_fused_rotary();
void set_prefer_fused_rotary(bool prefer);
bool prefer_fused_rotary();

}  // namespace hedgelab::ops
