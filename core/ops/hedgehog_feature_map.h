// Hedgehog feature maps (docs/method.md §3): per head, z = W u + b and φ(u) = [f(z), f(−z)], a positive
// feature vector of N = 2m entries whose dot products mimic the softmax kernel. Layout [B, H, T, ·].
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace hedgelab::ops {

enum class FeatureMapKind {
  kPerHalfSoftmax,  // [softmax(z), softmax(−z)], each over its m entries (the default)
  kJointSoftmax,    // softmax([z, −z]) over all 2m entries together
  kRawExp,          // [exp(z − c), exp(−z − c)], c = max_j |z_j| per token
};

// "per_half_softmax", "joint_softmax", "raw_exp".
std::string feature_map_kind_name(FeatureMapKind kind);
// Inverse of feature_map_kind_name; an unknown name throws hedgelab::Error naming `where` (the field, e.g.
// "stage1.json: feature_map") and the accepted names.
FeatureMapKind feature_map_kind_from_string(const std::string& name,
                                            const std::string& where = "feature_map");

// φ(u) for every head: u [B,H,T,P], W [H,m,P], b [H,m] → [B,H,T,2m], the first m entries from z, the last m
// from −z. Differentiable in u, W and b. For kRawExp, c is not detached: c changes each token's scale, which
// does not cancel on the key side of a_ts, so the gradient follows the function exactly as computed.
at::Tensor hedgehog_features(const at::Tensor& u, const at::Tensor& W, const at::Tensor& b,
                             FeatureMapKind kind);

// ---- dispatch ---------------------------------------------------------------------------------------------
// hedgehog_features runs the per-half softmax through the fused kernel registered by the CUDA library (cuda/)
// when (1) one is registered, (2) u is on a CUDA device in float32 or bf16, (3) use_reference_scan() is false
// (one switch for every fused kernel, hedge_mamba_scan.h) and (4) the fused map is preferred (the default:
// at pythia-1b it takes 14% off the stage-1 step, docs/results.md; HEDGELAB_FUSED_FEATURE_MAP=0 in the
// environment or set_prefer_fused_feature_map(false) keeps the ATen form).
// The projection u Wᵀ stays a matmul; the fused function gets z = u Wᵀ [B,H,T,m] without the bias and b
// [H,m], and returns φ [B,H,T,2m] in z's dtype, differentiable in z and b. Under autocast z is bf16, so φ is
// bf16 where the ATen form gives float32 (the bias promotes it); both compute the softmaxes in float32, and
// every consumer's products (the fused linear attention and scan, autocast's matmuls) take bf16 anyway.
using FeatureMapFn = at::Tensor (*)(const at::Tensor& z, const at::Tensor& b);
// nullptr unregisters.
void register_fused_feature_map(FeatureMapFn fn);
FeatureMapFn registered_fused_feature_map();
void set_prefer_fused_feature_map(bool prefer);
bool prefer_fused_feature_map();

struct HedgehogParams {
  at::Tensor W;  // [H, m, P]
  at::Tensor b;  // [H, m]
};

// The stage-1 initialisation W = I, b = 0 for every head; identity needs m == P (hedgelab::Error otherwise).
HedgehogParams hedgehog_identity_init(
    int64_t H, int64_t m, int64_t P,
    const at::TensorOptions& options = at::TensorOptions().dtype(at::kFloat));

}  // namespace hedgelab::ops
