// Plain parameter structs and launch functions of the fused cosine alignment (core/ops/cosine_alignment.h),
// stage 1's per-token 1 − cos between the student's and the teacher's attention outputs. No LibTorch and no
// CUDA headers: cosine_kernels.cu implements these; cosine_alignment_cuda.cpp checks shapes and fills them.
// Tensors are dense, row-major [rows, d]; s and t each float32 or bf16; everything computed in float32.
//
// Per row, with ‖·‖ the Euclidean norm and ε = 1e-8:
//   forward   cos = s·t / (n_s n_t),  n_s = max(‖s‖, ε),  n_t = max(‖t‖, ε);
//   backward  with g = ∂L/∂cos,
//             ∂L/∂s = g (t / (n_s n_t) − [‖s‖ > ε] cos s / ‖s‖²),  ∂L/∂t the same with s and t swapped
//             (a clamped norm is a constant, as in at::cosine_similarity).
// The forward stores (n_s, n_t, cos) a row; the backward needs no reduction, only one more read of s and t.
#pragma once

#include <cstdint>

#include "cuda/scan_params.h"  // ScanDtype

namespace hedgelab::cuda {

struct CosineShape {
  int64_t rows = 0, d = 0;
  ScanDtype s_dtype = ScanDtype::kFloat32, t_dtype = ScanDtype::kFloat32;
  float eps = 1e-8f;
};

struct CosineFwdParams {
  CosineShape shape;
  const void* s = nullptr;  // [rows, d]  s_dtype (the student)
  const void* t = nullptr;  // [rows, d]  t_dtype (the teacher)
  float* cos = nullptr;     // [rows]
  float* stats = nullptr;   // [rows, 3]  n_s, n_t, cos (for the backward)
};

struct CosineBwdParams {
  CosineShape shape;
  const void* s = nullptr;       // [rows, d]  s_dtype
  const void* t = nullptr;       // [rows, d]  t_dtype
  const float* stats = nullptr;  // [rows, 3]  from the forward
  const float* dcos = nullptr;   // [rows]
  void* ds = nullptr;            // [rows, d]  s_dtype, or null (not needed)
  void* dt = nullptr;            // [rows, d]  t_dtype, or null
};

// Launch on `stream` (a cudaStream_t); return 0 or a cudaError_t code (scan_error_string gives its message).
// No synchronisation.
int cosine_forward(const CosineFwdParams& p, void* stream);
int cosine_backward(const CosineBwdParams& p, void* stream);

}  // namespace hedgelab::cuda
