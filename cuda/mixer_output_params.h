// Plain parameter structs and launch functions of the fused mixer read-out (core/ops/mixer_output.h). No
// LibTorch and no CUDA headers: mixer_output_kernels.cu implements these; mixer_output_cuda.cpp checks shapes
// and fills them. num, x, z, y and their gradients share one dtype, float32 or bf16; den, D, gain and the
// gradients of den, D and gain are float32; everything is computed in float32. With r = 1 / (den + eps),
// s = num · r + D · x, g = 2σ(z) (1 without a gate) and a = dy · g · gain:
//
//   forward   y[b,t,h,p] = s · g · gain[h]
//   backward  dnum = a · r,   dx = a · D[h],   dden[b,h,t] = −r² Σ_p a · num,   dz = dy · gain · s · g (1 −
//   g/2)
//             dD[h] = Σ_{b,t,p} a · x,   dgain[h] = Σ_{b,t,p} dy · s · g
//
// One warp reads and writes one row (b, t, h) of P values; a block holds one head and kMixerOutputRows
// consecutive rows r = b·T + t. The backward writes dD and dgain as one partial sum per (block of rows,
// head), summed over the row blocks by the caller, so the result does not depend on the order blocks finish
// in.
#pragma once

#include <cstdint>

#include "cuda/scan_params.h"  // ScanDtype, scan_error_string

namespace hedgelab::cuda {

constexpr int kMixerOutputWarps = 8;  // warps a block
constexpr int kMixerOutputRows = 32;  // rows (b, t) a block

struct MixerOutputShape {
  int64_t B = 0, H = 0, T = 0, P = 0;
  // x's strides in elements over (b, h, t); its p stride is 1 (x is the heads' view of [B,T,d], or dense).
  int64_t x_stride_b = 0, x_stride_h = 0, x_stride_t = 0;
  bool gate = false;  // z given
  float eps = 0.f;
  ScanDtype dtype = ScanDtype::kFloat32;
};

// Row blocks of the backward's partial sums: ⌈B·T / kMixerOutputRows⌉.
inline int64_t mixer_output_groups(const MixerOutputShape& s) {
  return (s.B * s.T + kMixerOutputRows - 1) / kMixerOutputRows;
}

struct MixerOutputFwdParams {
  MixerOutputShape shape;
  const void* num = nullptr;    // [B, H, T, P]  dtype, dense
  const float* den = nullptr;   // [B, H, T]
  const void* x = nullptr;      // [B, H, T, P]  dtype, strides above
  const float* D = nullptr;     // [H]
  const void* z = nullptr;      // [B, T, H·P]   dtype, dense; null without a gate
  const float* gain = nullptr;  // [H]
  void* y = nullptr;            // [B, T, H·P]   dtype, dense
};

struct MixerOutputBwdParams {
  MixerOutputShape shape;
  const void* num = nullptr;  // inputs as in the forward
  const float* den = nullptr;
  const void* x = nullptr;
  const float* D = nullptr;
  const void* z = nullptr;
  const float* gain = nullptr;
  const void* dy = nullptr;  // [B, T, H·P]   dtype, dense
  void* dnum = nullptr;      // [B, H, T, P]  dtype, dense
  float* dden = nullptr;     // [B, H, T]
  void* dx = nullptr;        // [B, H, T, P]  dtype, x's strides
  void* dz = nullptr;        // [B, T, H·P]   dtype, dense; null without a gate
  float* dD = nullptr;       // [groups, H] partial sums
  float* dgain = nullptr;    // [groups, H] partial sums
};

// Launch on `stream` (a cudaStream_t); return 0 or a cudaError_t code (scan_error_string gives its message).
// No synchronisation.
int mixer_output_forward(const MixerOutputFwdParams& p, void* stream);
int mixer_output_backward(const MixerOutputBwdParams& p, void* stream);

}  // namespace hedgelab::cuda
