// AdamW's update as torch::optim::AdamW computes it (decoupled weight decay, bias-corrected moments), for
// one optimizer step over a set of parameters, in two forms with the same arithmetic:
//   p ← p·(1 − lr·λ)            (λ = weight_decay, only where the slot decays: ≥2-D tensors)
//   m ← β1·m + (1 − β1)·g
//   v ← β2·v + (1 − β2)·g²
//   p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)
// - adamw_update_reference: one parameter at a time in plain ATen ops (any device; about nine passes over
//   each parameter's memory and four kernel launches per tensor op on CUDA).
// - adamw_update_fused: ATen's multi-tensor fused kernel (at::_fused_adamw_, LibTorch ≥ 2.1, CUDA only):
//   one pass that reads p, g, m, v and writes p, m, v, over many parameters per launch.
// adamw_update takes the fused form for every slot it can (unless HEDGELAB_FUSED_ADAMW=0 or
// set_prefer_fused_adamw(false)) and the reference for the rest.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace hedgelab::distill {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.0;  // decoupled; applied to ≥2-D tensors only (not biases, gains, norms)
};

// One parameter's share of a step. param, grad, exp_avg and exp_avg_sq have one shape and dtype.
struct AdamWSlot {
  at::Tensor param;                // updated in place
  at::Tensor grad;                 // read
  at::Tensor exp_avg, exp_avg_sq;  // the moments, updated in place
  int64_t step = 1;                // this update's bias-correction count t (≥ 1, already advanced)
  bool decay = false;              // the decoupled weight decay applies
};

void adamw_update_reference(const std::vector<AdamWSlot>& slots, const AdamWConfig& config, double lr);

// Updates the slots the fused kernel can take (CUDA, one device and dtype per launch group, float32/bf16/
// half, dense tensors whose grad and moments share the param's strides) and returns how many it took: their
// flags in `taken` (resized to slots.size()) are set, the others are left untouched. Takes none where the
// LibTorch version has no fused AdamW.
int64_t adamw_update_fused(const std::vector<AdamWSlot>& slots, const AdamWConfig& config, double lr,
                           std::vector<bool>& taken);

// The fused form where it can, the reference for the rest (everything when the fused form is not preferred).
void adamw_update(const std::vector<AdamWSlot>& slots, const AdamWConfig& config, double lr);

bool fused_adamw_compiled();  // the LibTorch this was built against has at::_fused_adamw_
void set_prefer_fused_adamw(bool prefer);
bool prefer_fused_adamw();

}  // namespace hedgelab::distill
