// Mixed precision for CUDA runs (docs/method.md §6, last paragraph): inside a scope, matmuls and convolutions
// run in bf16 on the tensor cores while parameters, optimizer state and loss maths stay float32. LibTorch's
// CUDA autocast picks each op's dtype (softmax, log-softmax, norms and reductions stay float32); the scope
// only switches it on and restores the previous setting. Thread-local, like LibTorch's own flag.
#pragma once

#include <c10/core/ScalarType.h>

namespace hedgelab::ops {

struct AutocastSetting {
  bool enabled = false;
  c10::ScalarType dtype = c10::ScalarType::BFloat16;
};

// The calling thread's CUDA autocast setting.
AutocastSetting cuda_autocast_setting();

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
