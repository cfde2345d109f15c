// Helpers for suites that compare tensors (they link LibTorch; test_util.h stays torch-free).
#pragma once

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <torch/csrc/autograd/function.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

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

// The names of every autograd node that t's gradient would pass through (t's grad_fn and all it reaches), so
// a test can check that a fast path was taken: a fused op's autograd Function appears as
// "torch::autograd::CppNode<…Name>", an ATen op as its backward, e.g. "DivBackward0".
inline std::vector<std::string> autograd_node_names(const at::Tensor& t) {
  std::vector<std::string> names;
  std::set<const torch::autograd::Node*> seen;
  std::vector<torch::autograd::Node*> todo;
  if (t.grad_fn()) todo.push_back(t.grad_fn().get());
  while (!todo.empty()) {
    torch::autograd::Node* n = todo.back();
    todo.pop_back();
    if (!seen.insert(n).second) continue;
    names.push_back(n->name());
    for (const auto& e : n->next_edges())
      if (e.function) todo.push_back(e.function.get());
  }
  return names;
}

// How many of `names` contain `part`.
inline int count_containing(const std::vector<std::string>& names, const std::string& part) {
  return static_cast<int>(std::count_if(names.begin(), names.end(),
                                        [&](const std::string& n) { return n.find(part) != n.npos; }));
}

}  // namespace hedgelab::testing
