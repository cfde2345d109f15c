// Picks the instance of a kernel launcher for a pair of operand dtypes (float32 or bf16 each), shared by the
// kernels that take two tensors whose dtypes may differ (cosine_kernels.cu: student and teacher rows;
// logit_losses_kernels.cu: student and teacher logits). Plain CUDA: no LibTorch type.
#pragma once

#include <cuda_runtime.h>

namespace hedgelab::cuda::detail {

// f32f32(p, st) when neither is bf16, f32bf when only the second is, bff32 when only the first is, bfbf when
// both are.
template <typename Params, typename F32F32, typename F32BF, typename BFF32, typename BFBF>
int by_dtype_pair(bool first_bf16, bool second_bf16, const Params& p, cudaStream_t st, F32F32 f32f32,
                  F32BF f32bf, BFF32 bff32, BFBF bfbf) {
  if (first_bf16 && second_bf16) return bfbf(p, st);
  if (first_bf16) return bff32(p, st);
  if (second_bf16) return f32bf(p, st);
  return f32f32(p, st);
}

}  // namespace hedgelab::cuda::detail
