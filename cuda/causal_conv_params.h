// Plain parameter structs and launch functions of the fused short causal convolution
// (core/ops/causal_conv.h), the depthwise convolution in front of the HedgeMamba mixer's scan. No LibTorch
// and no CUDA headers: causal_conv_kernels.cu implements these; causal_conv_cuda.cpp checks shapes and fills
// them. x, out, dout and dx are dense [B, T, C] (channels innermost) in one dtype, float32 or bf16; the
// weight [C, W] and the bias [C] are float32; everything is computed in float32. Inputs before t = 0 are
// zeros.
//
//   forward   out[b,t,c] = bias[c] + Σ_{j<W} w[c,j] · x[b, t−(W−1)+j, c]
//   backward  dx[b,s,c]  = Σ_{j<W} w[c,j] · dout[b, s+(W−1)−j, c]              (terms past T are zero)
//             dw[c,j]    = Σ_{b,s} x[b,s,c] · dout[b, s+(W−1)−j, c],   db[c] = Σ_{b,t} dout[b,t,c]
// A thread walks kCausalConvTile tokens of 8 channels (1 where C is not a multiple of 8), keeping the last
// W inputs (forward) or the next W output gradients (backward) in registers; a block covers
// kCausalConvSpan tokens. The backward writes dw and db as one partial sum per (b, block of
// kCausalConvSpan tokens), summed over those groups by the caller, so the result does not depend on the
// order blocks finish in.
#pragma once

#include <cstdint>

#include "cuda/scan_params.h"  // ScanDtype, scan_error_string

namespace hedgelab::cuda {

constexpr int kCausalConvTile = 16;                                          // tokens a thread walks through
constexpr int kCausalConvTilesPerBlock = 8;                                  // threads of a block along time
constexpr int kCausalConvSpan = kCausalConvTile * kCausalConvTilesPerBlock;  // tokens a block
constexpr int kCausalConvMaxW = 8;                                           // widths 1..8

struct CausalConvShape {
  int64_t B = 0, T = 0, C = 0, W = 0;
  ScanDtype dtype = ScanDtype::kFloat32;
};

// Groups of the backward's partial sums: B · ⌈T / kCausalConvSpan⌉.
inline int64_t causal_conv_groups(const CausalConvShape& s) {
  return s.B * ((s.T + kCausalConvSpan - 1) / kCausalConvSpan);
}

struct CausalConvFwdParams {
  CausalConvShape shape;
  const void* x = nullptr;        // [B, T, C]  dtype
  const float* weight = nullptr;  // [C, W]
  const float* bias = nullptr;    // [C]
  void* out = nullptr;            // [B, T, C]  dtype
};

struct CausalConvBwdParams {
  CausalConvShape shape;
  const void* x = nullptr;        // [B, T, C]  dtype
  const float* weight = nullptr;  // [C, W]
  const void* dout = nullptr;     // [B, T, C]  dtype
  void* dx = nullptr;             // [B, T, C]  dtype, or null (not needed)
  float* dweight = nullptr;       // [groups, C, W] partial sums
  float* dbias = nullptr;         // [groups, C]    partial sums
};

// Launch on `stream` (a cudaStream_t); return 0 or a cudaError_t code (scan_error_string gives its message;
// cudaErrorInvalidValue for a width outside 1..kCausalConvMaxW). No synchronisation.
int causal_conv_forward(const CausalConvFwdParams& p, void* stream);
int causal_conv_backward(const CausalConvBwdParams& p, void* stream);

}  // namespace hedgelab::cuda
