// Mixed precision for CUDA runs (docs/method.md §6, last paragraph): inside a scope, matmuls and convolutions
// run in bf16 on the tensor cores while parameters, optimizer state and loss maths stay float32. LibTorch's
// CUDA autocast picks each op's dtype (softmax, log-softmax, norms and reductions stay float32); the scope
// only switches it on and restores the previous setting. Thread-local, like LibTorch's own flag.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

namespace hedgelab::ops {

struct AutocastSetting {
  bool enabled = false;
  c10::ScalarType dtype = c10::ScalarType::BFloat16;
};

// The calling thread's CUDA autocast setting.
AutocastSetting cuda_autocast_setting();

// An activation that feeds several matmuls, cast once: `t` in the autocast dtype when CUDA autocast is on and
// `t` is a float32 CUDA tensor; `t` itself otherwise. Left to autocast, every matmul casts it again and the
// backward casts each gradient back and sums them in float32 (at pythia-1b, five casts forward and five casts
// plus four additions over [B,T,d] backward for the mixer's input); cast here, the matmuls share one copy and
// the gradients are summed in the autocast dtype, as a model held in bf16 sums them.
at::Tensor matmul_operand(const at::Tensor& t);

// Sets CUDA autocast to `setting` for the scope's lifetime (a no-op scope when `setting` equals the current
// one); the cast cache is cleared when the outermost enabled scope ends.
class AutocastScope {
 public:
  explicit AutocastScope(AutocastSetting setting);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  AutocastSetting previous_;
  bool changed_ = false;
  bool nested_ = false;
};

}  // namespace hedgelab::ops
