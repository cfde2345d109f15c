#include "core/ops/autocast.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

// LibTorch 2.4 moved autocast's switches to per-device functions; 1.13 has the CUDA ("gpu") ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define HEDGELAB_AUTOCAST_PER_DEVICE 1
#else
#define HEDGELAB_AUTOCAST_PER_DEVICE 0
#endif

namespace hedgelab::ops {

namespace {

void apply(const AutocastSetting& s) {
#if HEDGELAB_AUTOCAST_PER_DEVICE
  at::autocast::set_autocast_dtype(at::kCUDA, s.dtype);
  at::autocast::set_autocast_enabled(at::kCUDA, s.enabled);
#else
  at::autocast::set_autocast_gpu_dtype(s.dtype);
  at::autocast::set_enabled(s.enabled);
#endif
}

}  // namespace

at::Tensor matmul_operand(const at::Tensor& t) {
  if (!t.defined() || !t.is_cuda() || t.scalar_type() != at::kFloat) return t;
  const AutocastSetting s = cuda_autocast_setting();
  return s.enabled ? t.to(s.dtype) : t;
}

AutocastSetting cuda_autocast_setting() {
  AutocastSetting s;
#if HEDGELAB_AUTOCAST_PER_DEVICE
  s.enabled = at::autocast::is_autocast_enabled(at::kCUDA);
  s.dtype = at::autocast::get_autocast_dtype(at::kCUDA);
#else
  s.enabled = at::autocast::is_enabled();
  s.dtype = at::autocast::get_autocast_gpu_dtype();
#endif
  return s;
}

AutocastScope::AutocastScope(AutocastSetting setting) : previous_(cuda_autocast_setting()) {
  if (setting.enabled == previous_.enabled && (!setting.enabled || setting.dtype == previous_.dtype)) return;
  changed_ = true;
  apply(setting);
  if (setting.enabled) {
    at::autocast::increment_nesting();
    nested_ = true;
  }
}

AutocastScope::~AutocastScope() {
  if (!changed_) return;
  if (nested_ && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  apply(previous_);
}

}  // namespace hedgelab::ops
