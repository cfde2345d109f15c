// Helpers for suites that compare tensors (they link LibTorch; test_util.h stays torch-free).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>

namespace hedgelab::testing {

// ‖a − b‖∞ / ‖b‖∞: the relative error of `a` against the reference `b`, the form every bound in the issues
// (1e-4 for logits, 1e-5 for the ops) is stated in.
inline double relative_error(const at::Tensor& a, const at::Tensor& b) {
  const double scale = std::max(b.abs().max().item<double>(), 1e-300);
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() / scale;
}

}  // namespace hedgelab::testing
