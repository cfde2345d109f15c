#include "core/ops/autocast.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/common/env.h"

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

// ---- FrozenCastCache
// ---------------------------------------------------------------------------------------

namespace {

std::atomic<bool>& frozen_cast_flag() {
  static std::atomic<bool> on{env_switch("HEDGELAB_FROZEN_CAST_CACHE", /*default_on=*/true)};
  return on;
}

}  // namespace

void set_frozen_cast_cache_enabled(bool on) {
  frozen_cast_flag().store(on);
}
bool frozen_cast_cache_enabled() {
  return frozen_cast_flag().load();
}

struct FrozenCastCache::State {
  // One copy per (weight, dtype). The entry holds the weight itself, so the address it is keyed by cannot be
  // reused by another tensor while the entry lives; what the copy was made from is checked at every use.
  struct Entry {
    at::Tensor source;
    const void* data = nullptr;
    int64_t version = 0;
    std::vector<int64_t> sizes, strides;
    at::Tensor copy;
  };
  mutable std::mutex mu;
  std::unordered_map<const c10::TensorImpl*, std::vector<Entry>> entries;
};

FrozenCastCache::FrozenCastCache() : state_(std::make_unique<State>()) {}
FrozenCastCache::FrozenCastCache(const FrozenCastCache&) : FrozenCastCache() {}
FrozenCastCache& FrozenCastCache::operator=(const FrozenCastCache&) {
  clear();
  return *this;
}
FrozenCastCache::~FrozenCastCache() = default;

at::Tensor FrozenCastCache::operand(const at::Tensor& w) {
  if (!w.defined() || !w.is_cuda() || w.scalar_type() != at::kFloat || w.requires_grad()) return w;
  if (!frozen_cast_cache_enabled()) return w;
  const AutocastSetting s = cuda_autocast_setting();
  return s.enabled ? cast(w, s.dtype) : w;
}

at::Tensor FrozenCastCache::cast(const at::Tensor& w, c10::ScalarType dtype) {
  if (!w.defined() || w.scalar_type() == dtype) return w;
  const void* data = w.data_ptr();
  const int64_t version = static_cast<int64_t>(w._version());
  const std::lock_guard<std::mutex> lock(state_->mu);
  auto& list = state_->entries[w.unsafeGetTensorImpl()];
  auto same = std::find_if(list.begin(), list.end(),
                           [&](const State::Entry& e) { return e.copy.scalar_type() == dtype; });
  if (same != list.end() && same->data == data && same->version == version &&
      w.sizes() == at::IntArrayRef(same->sizes) && w.strides() == at::IntArrayRef(same->strides))
    return same->copy;
  // New, or changed since its copy was made: cast (again), in place of a stale copy.
  State::Entry fresh{w, data, version, w.sizes().vec(), w.strides().vec(), w.detach().to(dtype)};
  if (same == list.end()) return list.emplace_back(std::move(fresh)).copy;
  *same = std::move(fresh);
  return same->copy;
}

int64_t FrozenCastCache::size() const {
  const std::lock_guard<std::mutex> lock(state_->mu);
  int64_t n = 0;
  for (const auto& [impl, list] : state_->entries)
    n += static_cast<int64_t>(list.size());
  return n;
}

void FrozenCastCache::clear() {
  const std::lock_guard<std::mutex> lock(state_->mu);
  state_->entries.clear();
}

// ---- autocast switches
// ---------------------------------------------------------------------------------------

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
