// Plain parameter structs and launch functions of the fused rotary embedding (core/ops/rotary.h). No LibTorch
// and no CUDA headers: rotary_kernels.cu implements these; rotary_cuda.cpp checks shapes and fills them. In
// and out share one dtype, float32 or bf16; the angles, their cos and sin and the products are float32:
//   θ[t,j] = pos_t · inv_freq[j],   pos_t = (offset + t) / linear_factor   (float32, as the ATen form has it)
//   out[j] = in[j] cos θ − sign · in[j + r/2] sin θ,   out[j + r/2] = in[j + r/2] cos θ + sign · in[j] sin θ
//   for j < r/2, and out[j] = in[j] for j ≥ r.
// sign = +1 is the forward (x → y); sign = −1 rotates back, which is the backward (dy → dx). One warp a row
// (b, h, t) of P values.
#pragma once

#include <cstdint>

#include "cuda/scan_params.h"  // ScanDtype, scan_error_string

namespace hedgelab::cuda {

constexpr int kRotaryWarps = 8;  // rows a block

struct RotaryParams {
  int64_t B = 0, H = 0, T = 0, P = 0, r = 0;
  int64_t in_stride_b = 0, in_stride_h = 0, in_stride_t = 0;  // in's strides in elements; along P: 1
  int64_t offset = 0;                                         // the position of t = 0
  float linear_factor = 1.f;
  float sign = 1.f;
  ScanDtype dtype = ScanDtype::kFloat32;
  const float* inv_freq = nullptr;  // [r/2]
  const void* in = nullptr;         // [B, H, T, P]  dtype, strides above
  void* out = nullptr;              // [B, H, T, P]  dtype, dense
};

// Launch on `stream` (a cudaStream_t); return 0 or a cudaError_t code (scan_error_string gives its message;
// cudaErrorInvalidValue for an odd r or r > P). No synchronisation.
int rotary_apply(const RotaryParams& p, void* stream);

}  // namespace hedgelab::cuda
