// Helpers for suites that compare tensors (they link LibTorch; test_util.h stays torch-free).
#pragma once

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <algorithm>

namespace hedgelab::testing {

// Whether the cuda-labelled suites can run: built with the CUDA library (cuda/) and a CUDA device present.
inline bool cuda_kernels_ready() {
#ifdef HEDGELAB_HAS_CUDA_KERNELS
  return torch::cuda::is_available();
#else
  return false;
#endif
}

// ‖a − b‖∞ / ‖b‖∞: the relative error of `a` against the reference `b`, the form every bound in the issues
// (1e-4 for logits, 1e-5 for the ops) is stated in.
inline double relative_error(const at::Tensor& a, const at::Tensor& b) {
  const double scale = std::max(b.abs().max().item<double>(), 1e-300);
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() / scale;
}

// The kernels' two element types, picked by a test row's flag.
inline at::ScalarType dtype_of(bool bf16) {
  return bf16 ? at::kBFloat16 : at::kFloat;
}

// A copy of t (same shape and dtype, on t's device, contiguous) whose data starts one element past an
// allocation: off the kernels' 16-byte vector paths.
inline at::Tensor misaligned_copy(const at::Tensor& t) {
  at::Tensor buf = at::empty({t.numel() + 1}, t.options());
  at::Tensor view = buf.narrow(0, 1, t.numel()).view(t.sizes());
  view.copy_(t);
  return view;
}

}  // namespace hedgelab::testing
