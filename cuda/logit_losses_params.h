// Plain parameter structs and launch functions of stage 2's fused logit losses (core/ops/logit_losses.h).
// No LibTorch and no CUDA headers: logit_losses_kernels.cu implements these; logit_losses_cuda.cpp checks
// shapes and fills them. zs (the student's logits) and zt (the KD target's) are dense [rows, V], each float32
// or bf16; everything is computed in float32. One block a row.
//
// Per row n, with m = max_v zs_v (shared: max_v zs_v/τ = m/τ) and a = zt/τ, b = zs/τ:
//   lse₁ = m + log Σ e^{zs_v − m},   lse_b = m/τ + log Σ e^{b_v − m/τ},   lse_a = max a + log Σ e^{a_v − max
//   a} ce_n = lse₁ − zs[y_n] KL_n = Σ p_v (log p_v − log q_v) = E_p[a − b] − lse_a + lse_b,   p = softmax(a),
//   q = softmax(b)
// Backward, with g_ce = ∂L/∂ce_n and g_kl = ∂L/∂KL_n:
//   ∂zs_v = g_ce (softmax(zs)_v − [v = y_n]) + (g_kl / τ) (q_v − p_v)
// recomputed from zs, zt and the row's three stored log-sum-exps: no [rows, V] buffer besides ∂zs.
#pragma once

#include <cstdint>

#include "cuda/scan_params.h"  // ScanDtype, scan_error_string

namespace hedgelab::cuda {

struct LogitLossesShape {
  int64_t rows = 0, V = 0;
  ScanDtype zs_dtype = ScanDtype::kFloat32, zt_dtype = ScanDtype::kFloat32;
  float temperature = 1.f;  // τ > 0
};

struct LogitLossesFwdParams {
  LogitLossesShape shape;
  const void* zs = nullptr;          // [rows, V]  zs_dtype
  const void* zt = nullptr;          // [rows, V]  zt_dtype
  const int64_t* targets = nullptr;  // [rows]; outside [0, V) makes that row's ce NaN
  float* ce = nullptr;               // [rows]
  float* kl = nullptr;               // [rows]
  float* stats = nullptr;            // [rows, 3]  lse₁, lse_b, lse_a (for the backward)
};

struct LogitLossesBwdParams {
  LogitLossesShape shape;
  const void* zs = nullptr;          // [rows, V]  zs_dtype
  const void* zt = nullptr;          // [rows, V]  zt_dtype
  const int64_t* targets = nullptr;  // [rows]
  const float* stats = nullptr;      // [rows, 3]  from the forward
  const float* dce = nullptr;        // [rows]
  const float* dkl = nullptr;        // [rows]
  void* dzs = nullptr;               // [rows, V]  zs_dtype, fully written
};

// Launch on `stream` (a cudaStream_t); return 0 or a cudaError_t code (scan_error_string gives its message;
// cudaErrorInvalidValue for τ ≤ 0). No synchronisation.
int logit_losses_forward(const LogitLossesFwdParams& p, void* stream);
int logit_losses_backward(const LogitLossesBwdParams& p, void* stream);

}  // namespace hedgelab::cuda
