// Plain parameter structs and launch functions of the fused HedgeMamba scan (docs/method.md §4, §6). No
// LibTorch and no CUDA headers: the .cu files implement these, the LibTorch-facing file
// (hedge_mamba_scan_cuda.cpp) checks shapes, allocates the workspace and fills them. All tensors are dense,
// row-major, [B, H, T, ·]; "bh" below is b·H + h.
//
// Per (b, h): log α_t = Δ_t A_h, ℓ_t = Σ_{r≤t} log α_r,
//   num_t = Σ_{s≤t} (C_t·B_s) Δ_s e^{ℓ_t−ℓ_s} x_s + e^{ℓ_t} C_tᵀ S0,   den_t the same with x ≡ 1 and n0.
//
// The kernels follow the state-space duality (SSD) split into chunks of kScanChunk tokens:
//   1. prep: ℓ inside each chunk (inclusive, restarting at every chunk), so no long difference is ever taken;
//   2. state pass, one of two forms (StatePass): parallel, every (tile of the N × P state, chunk, b, h) at
//      once forms the chunk's own share Bᵀ(w∘x), then one element-wise walk over the chunks turns the
//      shares, in place, into the state entering every chunk; or sequential, one block per (state tile, b,
//      h) carries its tile through the chunks in registers and writes each state once (fewer bytes, less
//      parallelism);
//   3. Gram pass: every (chunk, b, h) in parallel: C Bᵀ inside the chunk, once for all value tiles;
//   4. chunk pass: every (value tile, chunk, b, h) in parallel: the decay-masked quadratic form inside the
//      chunk (from the Gram matrix) plus the stored entering state.
// The backward takes the states the forward kept (or runs the state pass again for them), a reverse state
// pass for the adjoint, and two Gram + chunk passes (B Cᵀ → dx; dnum xᵀ → dB, dC and Δ's direct share).
// Products run on the tensor cores (bf16 operands for bf16 inputs, tf32 for float inputs) with float32
// accumulation; the chunk shares and the stored states have the operand type, the walk carries float32.
#pragma once

#include <cstdint>

namespace hedgelab::cuda {

enum class ScanDtype : int { kFloat32 = 0, kBFloat16 = 1 };

// Tokens a chunk (L). Padded tokens past T have Δ = 0 and zero rows: they neither decay nor write the state.
constexpr int kScanChunk = 64;

// Which form of the state pass (step 2) runs. kAuto takes the sequential one when its blocks,
// ⌈N/64⌉·⌈P/64⌉·B·H, fill the GPU (at least two a multiprocessor), the parallel one otherwise.
enum class StatePass : int { kAuto = 0, kSequential = 1, kParallel = 2 };

struct ScanShape {
  int64_t B = 0, H = 0, T = 0, N = 0, P = 0;
  ScanDtype dtype = ScanDtype::kFloat32;  // of x, Bm, Cm, num (and dnum, dx, dB, dC in the backward)
};

// Scratch the caller allocates (any contents on entry); scan_workspace says how large. nc = ⌈T / L⌉.
struct ScanWorkspace {
  float* ell = nullptr;       // [B,H,nc·L]    ℓ inside each chunk
  void* states = nullptr;     // [B,H,nc,N,P]  dtype: the state entering each chunk
  float* n_states = nullptr;  // [B,H,nc,N]    the vector state entering each chunk
  void* adj = nullptr;        // [B,H,nc,N,P]  dtype: the state's adjoint leaving each chunk (backward only)
  float* r_adj = nullptr;     // [B,H,nc,N]    the vector state's adjoint leaving each chunk (backward only)
  float* gram = nullptr;      // [B,H,nc,L,L]  a chunk's Gram matrix (C Bᵀ; backward B Cᵀ, then dnum xᵀ)
};

struct ScanWorkspaceSize {
  int64_t chunks = 0;             // nc
  int64_t ell = 0, n_states = 0;  // float elements
  int64_t states = 0;             // elements of dtype
  int64_t gram = 0;               // float elements
};
ScanWorkspaceSize scan_workspace(const ScanShape& shape);

// Forward. num is written in dtype, den and the final state in float32; all fully written.
struct ScanFwdParams {
  ScanShape shape;
  const void* x = nullptr;    // [B,H,T,P]  dtype
  const void* Bm = nullptr;   // [B,H,T,N]  dtype
  const void* Cm = nullptr;   // [B,H,T,N]  dtype
  const float* dt = nullptr;  // [B,H,T]
  const float* A = nullptr;   // [H]
  const float* S0 = nullptr;  // [B,H,N,P] or null (zeros)
  const float* n0 = nullptr;  // [B,H,N] or null (zeros)
  void* num = nullptr;        // [B,H,T,P]  dtype
  float* den = nullptr;       // [B,H,T]
  float* S_final = nullptr;   // [B,H,N,P]
  float* n_final = nullptr;   // [B,H,N]
  ScanWorkspace ws;           // ell, gram, states, n_states
  StatePass state_pass = StatePass::kAuto;
};

// Backward: the gradients that need the scan. dx, dB, dC (in dtype), dS0 and dn0 are fully written; reader
// and ddt_direct are ACCUMULATED (atomics over tiles): the caller zeroes them.
//   reader_t     = dnum_t·num_t, the reader's share of the decay gradient (num from the forward);
//   ddt_direct_s = B_s·(R_s x_s + r_s), Δ's gradient through the write Δ_s B_s x_sᵀ only.
// The decay's share of dΔ and dA (through ℓ) the caller forms from reader, dden·den and ddt_direct
// (hedge_mamba_scan_cuda.cpp says how).
struct ScanBwdParams {
  ScanShape shape;
  const void* x = nullptr;      // [B,H,T,P]  dtype
  const void* Bm = nullptr;     // [B,H,T,N]  dtype
  const void* Cm = nullptr;     // [B,H,T,N]  dtype
  const float* dt = nullptr;    // [B,H,T]
  const float* A = nullptr;     // [H]
  const float* S0 = nullptr;    // [B,H,N,P] or null
  const float* n0 = nullptr;    // [B,H,N] or null
  const void* num = nullptr;    // [B,H,T,P]  dtype, the forward's output
  const void* dnum = nullptr;   // [B,H,T,P]  dtype
  const float* dden = nullptr;  // [B,H,T] or null (zeros)
  const float* dS_T = nullptr;  // [B,H,N,P] or null
  const float* dn_T = nullptr;  // [B,H,N] or null
  void* dx = nullptr;           // [B,H,T,P]  dtype
  void* dB = nullptr;           // [B,H,T,N]  dtype
  void* dC = nullptr;           // [B,H,T,N]  dtype
  float* reader = nullptr;      // [B,H,T]    accumulated
  float* ddt_direct = nullptr;  // [B,H,T]    accumulated
  float* dS0 = nullptr;         // [B,H,N,P]
  float* dn0 = nullptr;         // [B,H,N]
  ScanWorkspace ws;             // all six
  // ws.states and ws.n_states already hold the forward's states entering every chunk (the forward kept
  // them): the backward skips its recomputation of them.
  bool states_kept = false;
  StatePass state_pass = StatePass::kAuto;  // of the recomputed forward states and of the reverse pass
};

// Launch on `stream` (a cudaStream_t); return 0 or a cudaError_t code, with the message in
// scan_error_string. No synchronisation.
int scan_forward(const ScanFwdParams& p, void* stream);
int scan_backward(const ScanBwdParams& p, void* stream);
const char* scan_error_string(int code);

}  // namespace hedgelab::cuda
