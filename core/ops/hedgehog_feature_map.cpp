#include "core/ops/hedgehog_feature_map.h"

#include <atomic>

#include "core/common/env.h"
#include "core/common/error.h"
#include "core/ops/dispatch_tally.h"

namespace hedgelab::ops {

namespace {

std::atomic<FeatureMapFn> g_fused_feature_map{nullptr};
// The default on CUDA (docs/results.md); HEDGELAB_FUSED_FEATURE_MAP=0 keeps the ATen form.
std::atomic<bool> g_prefer_fused{env_switch("HEDGELAB_FUSED_FEATURE_MAP", /*default_on=*/true)};

}  // namespace

void register_fused_feature_map(FeatureMapFn fn) {
  g_fused_feature_map.store(fn);
}
FeatureMapFn registered_fused_feature_map() {
  return g_fused_feature_map.load();
}
void set_prefer_fused_feature_map(bool prefer) {
  g_prefer_fused.store(prefer);
}
bool prefer_fused_feature_map() {
  return g_prefer_fused.load();
}

std::string feature_map_kind_name(FeatureMapKind kind) {
  switch (kind) {
    case FeatureMapKind::kPerHalfSoftmax:
      return "per_half_softmax";
    case FeatureMapKind::kJointSoftmax:
      return "joint_softmax";
    case FeatureMapKind::kRawExp:
      return "raw_exp";
  }
  throw Error("feature_map", "invalid FeatureMapKind value " + std::to_string(static_cast<int>(kind)));
}

FeatureMapKind feature_map_kind_from_string(const std::string& name, const std::string& where) {
  for (FeatureMapKind k :
       {FeatureMapKind::kPerHalfSoftmax, FeatureMapKind::kJointSoftmax, FeatureMapKind::kRawExp})
    if (feature_map_kind_name(k) == name) return k;
  throw Error(where,
              "unknown feature map '" + name + "' (expected per_half_softmax, joint_softmax or raw_exp)");
}

at::Tensor hedgehog_features(const at::Tensor& u, const at::Tensor& W, const at::Tensor& b,
                             FeatureMapKind kind) {
  TORCH_CHECK(u.dim() == 4, "hedgehog_features: u must be [B,H,T,P], got ", u.sizes());
  TORCH_CHECK(W.dim() == 3, "hedgehog_features: W must be [H,m,P], got ", W.sizes());
  TORCH_CHECK(b.dim() == 2, "hedgehog_features: b must be [H,m], got ", b.sizes());
  TORCH_CHECK(W.size(0) == u.size(1) && W.size(2) == u.size(3), "hedgehog_features: W ", W.sizes(),
              " does not match u ", u.sizes(), " (expected [H,m,P])");
  TORCH_CHECK(b.size(0) == W.size(0) && b.size(1) == W.size(1), "hedgehog_features: b ", b.sizes(),
              " does not match W ", W.sizes(), " (expected [H,m])");

  // Batched over [B,H] against [H]: matmul broadcasts the head dimension.
  const at::Tensor uw = at::matmul(u, W.transpose(-1, -2));  // [B, H, T, m]
  const FeatureMapFn fused = g_fused_feature_map.load();
  // The kernel is the per-half softmax only; the other kinds (ablations) run ATen's form.
  if (fused && u.is_cuda() &&
      take_fused("hedgehog_feature_map", g_prefer_fused.load(),
                 kind == FeatureMapKind::kPerHalfSoftmax &&
                     (uw.scalar_type() == at::kFloat || uw.scalar_type() == at::kBFloat16)))
    return fused(uw, b);                     // [B, H, T, 2m]
  const at::Tensor z = uw + b.unsqueeze(1);  // [B, H, T, m]
  switch (kind) {
    case FeatureMapKind::kPerHalfSoftmax:
      return at::cat({at::softmax(z, -1), at::softmax(-z, -1)}, -1);  // [B, H, T, 2m]
    case FeatureMapKind::kJointSoftmax:
      return at::softmax(at::cat({z, -z}, -1), -1);  // [B, H, T, 2m]
    case FeatureMapKind::kRawExp: {
      // c bounds both halves' exponents by 0, so neither overflows.
      const at::Tensor c = z.abs().amax({-1}, /*keepdim=*/true);  // [B, H, T, 1]
      return at::cat({at::exp(z - c), at::exp(-z - c)}, -1);      // [B, H, T, 2m]
    }
  }
  throw Error("feature_map", "invalid FeatureMapKind value " + std::to_string(static_cast<int>(kind)));
}

HedgehogParams hedgehog_identity_init(int64_t H, int64_t m, int64_t P, const at::TensorOptions& options) {
  if (H <= 0 || m <= 0 || P <= 0)
    throw Error("hedgehog_identity_init", "H, m and P must be positive, got H=" + std::to_string(H) +
                                              " m=" + std::to_string(m) + " P=" + std::to_string(P));
  if (m != P)
    throw Error("hedgehog_identity_init: m",
                "identity init needs m == P, got m=" + std::to_string(m) + " P=" + std::to_string(P));
  HedgehogParams p;
  p.W = at::eye(m, options).unsqueeze(0).repeat({H, 1, 1}).contiguous();  // [H, m, P]
  p.b = at::zeros({H, m}, options);                                       // [H, m]
  return p;
}

}  // namespace hedgelab::ops
