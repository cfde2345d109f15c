// Plain parameter struct and launch function of the fused decoding step of the HedgeMamba scan
// (core/ops/hedge_mamba_scan.h, hedge_mamba_step, is the reference). No LibTorch and no CUDA headers:
// scan_step_kernels.cu implements it; scan_step_cuda.cpp checks shapes and fills it. Per (b, h), with
// α = e^{Δ A_h} and w = Δ B_t:
//   S' = α S + w x_tᵀ,   n' = α n + w,   num = C_tᵀ S',   den = C_t·n'.
// Every operand has one dtype, float32 or bf16; the arithmetic is float32, S' and n' are rounded to the dtype
// once, after num and den have been read from the float32 values. One block a (b, h).
#pragma once

#include <cstdint>

#include "cuda/scan_params.h"  // ScanDtype, scan_error_string

namespace hedgelab::cuda {

constexpr int kScanStepThreads = 256;

struct ScanStepParams {
  int64_t B = 0, H = 0, N = 0, P = 0;
  ScanDtype dtype = ScanDtype::kFloat32;
  const void* S = nullptr;   // [B, H, N, P] or null (zeros)
  const void* n = nullptr;   // [B, H, N] or null (zeros)
  const void* x = nullptr;   // [B, H, P]
  const void* Bm = nullptr;  // [B, H, N]
  const void* Cm = nullptr;  // [B, H, N]
  const void* dt = nullptr;  // [B, H]
  const void* A = nullptr;   // [H]
  void* S_out = nullptr;     // [B, H, N, P]
  void* n_out = nullptr;     // [B, H, N]
  void* num = nullptr;       // [B, H, P]
  void* den = nullptr;       // [B, H]
};

// Launch on `stream` (a cudaStream_t); return 0 or a cudaError_t code (scan_error_string gives its
// message). All tensors dense; S_out and n_out must not alias S and n. No synchronisation.
int scan_step(const ScanStepParams& p, void* stream);

}  // namespace hedgelab::cuda
