// Plain parameter structs and launch functions of the fused Hedgehog feature map (docs/method.md §3), the
// per-half softmax φ = [softmax(z), softmax(−z)] of z = u Wᵀ + b. No LibTorch and no CUDA headers: the .cu
// file implements these; the LibTorch-facing file (hedgehog_feature_map_cuda.cpp) runs the projection u Wᵀ
// (a cuBLAS matmul), checks shapes and fills them. All tensors are dense, row-major; a row is one token of
// one head, row = (b·H + h)·T + t.
//
// Per row, with z_j the projection plus the bias (j < m), in float32:
//   forward   φ_j = e^{z_j − max z} / Σ_i e^{z_i − max z},   φ_{m+j} = e^{min z − z_j} / Σ_i e^{min z − z_i};
//   backward  with p = φ[0, m), q = φ[m, 2m) recomputed from z and g = ∂L/∂φ,
//             ∂L/∂z_j = p_j (g_j − Σ_i p_i g_i) − q_j (g_{m+j} − Σ_i q_i g_{m+i}).
// The backward recomputes φ from z (one more read of z) instead of keeping φ: half the memory, and the
// softmaxes in float32 exactly as the forward had them.
#pragma once

#include <cstdint>

#include "cuda/scan_params.h"  // ScanDtype

namespace hedgelab::cuda {

struct FeatureMapShape {
  int64_t rows = 0;  // B·H·T
  int64_t H = 0, T = 0;
  int64_t m = 0;                          // features per half
  ScanDtype dtype = ScanDtype::kFloat32;  // of z and φ (and ∂L/∂φ)
};

struct FeatureMapFwdParams {
  FeatureMapShape shape;
  const void* z = nullptr;   // [rows, m]   dtype, u Wᵀ without the bias
  const float* b = nullptr;  // [H, m]
  void* phi = nullptr;       // [rows, 2m]  dtype
};

struct FeatureMapBwdParams {
  FeatureMapShape shape;
  const void* z = nullptr;     // [rows, m]   dtype, as in the forward
  const float* b = nullptr;    // [H, m]
  const void* dphi = nullptr;  // [rows, 2m]  dtype
  float* dz = nullptr;         // [rows, m]   fully written
};

// Launch on `stream` (a cudaStream_t); return 0 or a cudaError_t code (scan_error_string gives its message).
// No synchronisation.
int feature_map_forward(const FeatureMapFwdParams& p, void* stream);
int feature_map_backward(const FeatureMapBwdParams& p, void* stream);

}  // namespace hedgelab::cuda
