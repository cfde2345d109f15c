// The HedgeMamba selective scan (docs/method.md §4, §6). Per head, with log α_t = Δ_t A_h and
// ℓ_t = Σ_{r≤t} log α_r:
//   S_t = α_t S_{t−1} + Δ_t B_t x_tᵀ,   n_t = α_t n_{t−1} + Δ_t B_t,   num_t = C_tᵀ S_t,   den_t = C_tᵀ n_t,
// i.e. num_t = Σ_{s≤t} (C_t·B_s) Δ_s e^{ℓ_t−ℓ_s} x_s and den_t the same with x ≡ 1: a linear attention with a
// decay mask. The mixer's output is num / (den + ε) (+ D x); that division is the caller's.
// Inputs: x [B,H,T,P], Bm = φ_k(k) [B,H,T,N], Cm = φ_q(q) [B,H,T,N], dt = Δ [B,H,T] (> 0, softplus already
// applied), A [H] (< 0). Reference forms (sequential oracle, quadratic) are in hedge_mamba_scan_ref.h.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace hedgelab::ops {

struct ScanState {
  at::Tensor S;  // [B, H, N, P]
  at::Tensor n;  // [B, H, N]
};

struct ScanOutput {
  at::Tensor num;         // [B, H, T, P]
  at::Tensor den;         // [B, H, T]: x's dtype from the ATen forms, float32 from the fused scan
  ScanState final_state;  // state after the last token
};

struct ScanStepOutput {
  at::Tensor num;   // [B, H, P]
  at::Tensor den;   // [B, H]
  ScanState state;  // after the token
};

// SSD-style chunked scan, the CPU training path: inside each chunk of `chunk` tokens the decay-masked
// quadratic form; between chunks the state, decayed by the chunk's total decay. Any T (the last chunk is
// padded with Δ = 0 tokens, which neither decay nor write the state). `initial` continues from an earlier
// state (zeros when null). Differentiable in every input through LibTorch autograd.
ScanOutput hedge_mamba_scan_chunked(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                                    const at::Tensor& dt, const at::Tensor& A, int64_t chunk,
                                    const ScanState* initial = nullptr);

// Zero state for decoding.
ScanState hedge_mamba_zero_state(int64_t B, int64_t H, int64_t N, int64_t P,
                                 const at::TensorOptions& options);

// One token of decoding with O(1) state: x_t [B,H,P], B_t, C_t [B,H,N], dt_t [B,H], A [H]. The state is
// updated first and then read (the token sees itself). An undefined state (default-constructed) counts as
// zeros. The entry point models call: the fused step registered by the CUDA library (cuda/) when (1) one is
// registered, (2) x_t is on a CUDA device, (3) every operand, the state included, has x_t's dtype, float32
// or bf16, (4) no gradient is asked (grad mode off, or no operand requires one), (5) use_reference_scan()
// is false and (6) the fused step is preferred (the default; HEDGELAB_FUSED_SCAN_STEP=0 or
// set_prefer_fused_scan_step(false) turns it off); hedge_mamba_step_reference otherwise.
ScanStepOutput hedge_mamba_step(const ScanState& state, const at::Tensor& x_t, const at::Tensor& B_t,
                                const at::Tensor& C_t, const at::Tensor& dt_t, const at::Tensor& A);

// The same in ATen ops (the CPU path, and the fused step's reference); differentiable.
ScanStepOutput hedge_mamba_step_reference(const ScanState& state, const at::Tensor& x_t,
                                          const at::Tensor& B_t, const at::Tensor& C_t,
                                          const at::Tensor& dt_t, const at::Tensor& A);

// The fused step gets operands already checked for shapes, one dtype and one device, and returns what the
// reference returns (its S and n rounded to the dtype once). nullptr unregisters.
using ScanStepFn = ScanStepOutput (*)(const ScanState& state, const at::Tensor& x_t, const at::Tensor& B_t,
                                      const at::Tensor& C_t, const at::Tensor& dt_t, const at::Tensor& A);
void register_fused_scan_step(ScanStepFn fn);
ScanStepFn registered_fused_scan_step();
void set_prefer_fused_scan_step(bool prefer);
bool prefer_fused_scan_step();

// ---- dispatch ---------------------------------------------------------------------------------------------
// hedge_mamba_scan is the entry point models call. It uses the fused kernel registered by the CUDA library
// (cuda/) when (1) one is registered, (2) x is on a CUDA device and (3) set_use_reference_scan(false) (the
// default); otherwise hedge_mamba_scan_chunked. The fused function gets inputs already checked for shapes and
// one device, and must return what hedge_mamba_scan_chunked returns (forward and backward, via autograd),
// except that den may come back in float32 where x is in a narrower dtype. Registration and the switch are
// process-wide and thread-safe; register before training starts.
using ScanFn = ScanOutput (*)(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                              const at::Tensor& dt, const at::Tensor& A, const ScanState* initial);

// nullptr unregisters.
void register_fused_scan(ScanFn fn);
ScanFn registered_fused_scan();
// true forces the chunked ATen path even on CUDA (e.g. to check the fused kernel against it).
void set_use_reference_scan(bool use_reference);
bool use_reference_scan();

// `chunk` is used by the chunked path only.
ScanOutput hedge_mamba_scan(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                            const at::Tensor& dt, const at::Tensor& A, int64_t chunk,
                            const ScanState* initial = nullptr);

namespace detail {
// Shape/device/dtype checks shared by every scan form; `fn` names the caller in the message.
void check_scan_inputs(const char* fn, const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                       const at::Tensor& dt, const at::Tensor& A, const ScanState* initial, bool same_dtype);
}  // namespace detail

}  // namespace hedgelab::ops
