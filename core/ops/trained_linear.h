// A linear layer whose float32 weight is trained under bf16 autocast, with the weight and bias gradients
// made in float32 by the GEMM itself. Left to autocast, at::linear casts W to bf16 and its backward makes dW
// in bf16, rounds it, and casts it back to float32 (ToCopyBackward): at pythia-1b stage 2 that is 338 cast
// kernels a step, 6.3 ms on an H100 (docs/results.md, 2026-12-07), and every weight gradient carries bf16's
// 8-bit mantissa into AdamW. Here dW = dYᵀ X is one GEMM with bf16 operands and a float32 result where the
// LibTorch has that overload (at::mm with an out dtype, CUDA), and the same GEMM then one cast where it has
// not (1.13). The forward is autocast's own: the same cached bf16 copy of W, the same product, the same bits.
//
// Shapes: x [..., in], w [out, in], b [out] or undefined → y [..., out].
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

namespace hedgelab::ops {

// y = x wᵀ + b. The custom backward runs when the switch is on, CUDA autocast is on, grad mode is on and w is
// a float32 CUDA tensor that requires grad; at::linear otherwise (the reference, and every CPU run).
at::Tensor trained_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

// The custom form itself, for any device: the product in `dtype` (x, w and b cast to it; autocast's cached
// copy of a leaf w on CUDA), y in `dtype`; dx in x's dtype, dw and db in float32 whatever `dtype` is.
at::Tensor linear_with_f32_weight_grads(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                                        c10::ScalarType dtype);

// Whether the GEMM makes float32 directly (true with LibTorch's at::mm(a, b, out_dtype), for bf16/fp16 CUDA
// operands) or a cast follows it (false).
bool weight_grad_gemm_has_f32_output();

// Off by default until measured on a GPU; HEDGELAB_FP32_WEIGHT_GRADS=1 in the environment starts it on.
void set_fp32_weight_grads(bool on);
bool fp32_weight_grads();

}  // namespace hedgelab::ops
