// Plain parameter structs and launch functions of the fused HedgeMamba scan (docs/method.md §4, §6). No
// LibTorch and no CUDA headers: the .cu files implement these, the LibTorch-facing file
// (hedge_mamba_scan_cuda.cpp) checks shapes and fills them. All tensors are dense, row-major, [B, H, T, ·].
//
// Per (b, h): log α_t = Δ_t A_h, ℓ_t = Σ_{r≤t} log α_r,
//   num_t = Σ_{s≤t} (C_t·B_s) Δ_s e^{ℓ_t−ℓ_s} x_s + e^{ℓ_t} C_tᵀ S0,   den_t the same with x ≡ 1 and n0.
// The kernels work chunk by chunk (L tokens): the decay-masked quadratic form inside a chunk on the tensor
// cores (bf16 operands, or tf32 for float inputs; fp32 accumulation), the state carried in shared memory
// from chunk to chunk by one thread block per (b, h, tile of Pt value columns). The denominator is the
// "ones" column, computed by the blocks of tile 0.
#pragma once

#include <cstdint>

namespace hedgelab::cuda {

enum class ScanDtype : int { kFloat32 = 0, kBFloat16 = 1 };

struct ScanShape {
  int64_t B = 0, H = 0, T = 0, N = 0, P = 0;
  ScanDtype dtype = ScanDtype::kFloat32;  // of x, Bm, Cm (and dnum in the backward)
};

// Forward. Outputs are float32 and fully written (num, den, S_final, n_final).
struct ScanFwdParams {
  ScanShape shape;
  const void* x = nullptr;      // [B,H,T,P]  dtype
  const void* Bm = nullptr;     // [B,H,T,N]  dtype
  const void* Cm = nullptr;     // [B,H,T,N]  dtype
  const float* dt = nullptr;    // [B,H,T]
  const float* A = nullptr;     // [H]
  const float* S0 = nullptr;    // [B,H,N,P] or null (zeros)
  const float* n0 = nullptr;    // [B,H,N] or null (zeros)
  float* num = nullptr;         // [B,H,T,P]
  float* den = nullptr;         // [B,H,T]
  float* S_final = nullptr;     // [B,H,N,P]
  float* n_final = nullptr;     // [B,H,N]
};

// Backward: the gradients that need the scan. dx, dS0 and dn0 are fully written; dB, dC and ddt_direct are
// ACCUMULATED (atomics over the value tiles): the caller zeroes them. ddt_direct_s = B_s·(R_s x_s + r_s) is
// Δ's gradient through the write Δ_s B_s x_sᵀ only; the decay's share (through ℓ) the caller adds from
// num, den and ddt_direct (hedge_mamba_scan_cuda.cpp says how).
struct ScanBwdParams {
  ScanShape shape;
  const void* x = nullptr;       // [B,H,T,P]  dtype
  const void* Bm = nullptr;      // [B,H,T,N]  dtype
  const void* Cm = nullptr;      // [B,H,T,N]  dtype
  const float* dt = nullptr;     // [B,H,T]
  const float* A = nullptr;      // [H]
  const float* S0 = nullptr;     // [B,H,N,P] or null
  const float* n0 = nullptr;     // [B,H,N] or null
  const void* dnum = nullptr;    // [B,H,T,P]  dtype
  const float* dden = nullptr;   // [B,H,T] or null (zeros)
  const float* dS_T = nullptr;   // [B,H,N,P] or null
  const float* dn_T = nullptr;   // [B,H,N] or null
  float* dx = nullptr;           // [B,H,T,P]
  float* dB = nullptr;           // [B,H,T,N]  accumulated
  float* dC = nullptr;           // [B,H,T,N]  accumulated
  float* ddt_direct = nullptr;   // [B,H,T]    accumulated
  float* dS0 = nullptr;          // [B,H,N,P]
  float* dn0 = nullptr;          // [B,H,N]
};

// The tiling a launch uses: L tokens a chunk, Pt value columns a block, and the dynamic shared memory.
struct ScanTiling {
  int L = 0, Pt = 0;
  int64_t smem_bytes = 0;
};

enum class ScanKernel : int { kForward = 0, kBackwardC = 1, kBackwardReverse = 2 };

// The largest tiling of `kernel` that fits `smem_limit` bytes of shared memory a block; L == 0 when none.
ScanTiling scan_tiling(ScanKernel kernel, const ScanShape& shape, int64_t smem_limit);

// Launch on `stream` (a cudaStream_t); return 0 or a cudaError_t code, with the message in
// scan_error_string. No synchronisation.
int scan_forward(const ScanFwdParams& p, void* stream);
int scan_backward(const ScanBwdParams& p, void* stream);
const char* scan_error_string(int code);

}  // namespace hedgelab::cuda
