// Mixed precision for CUDA runs (docs/method.md §6, last paragraph): inside a scope, matmuls and convolutions
// run in bf16 on the tensor cores while parameters, optimizer state and loss maths stay float32. LibTorch's
// CUDA autocast picks each op's dtype (softmax, log-softmax, norms and reductions stay float32); the scope
// only switches it on and restores the previous setting. Thread-local, like LibTorch's own flag.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <memory>

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

// Frozen weights' copies in the autocast dtype, one per weight, made at first use and kept while the weight
// is unchanged. Autocast's own cache keeps only leaves that require grad (the trained weights, for one step),
// so a frozen teacher's weights are cast again at every forward: at pythia-1b that is 1.6 GB written and 3.2
// GB read a step. A model holds one of these for its matmul weights and biases; the products are the same
// bits as autocast's (the same rounding of the same float32 values), at the cost of the bf16 copies' memory.
// Copying the owner starts an empty cache. Thread-safe.
class FrozenCastCache {
 public:
  FrozenCastCache();
  FrozenCastCache(const FrozenCastCache&);
  FrozenCastCache& operator=(const FrozenCastCache&);
  ~FrozenCastCache();

  // `w` as a matmul takes it under the calling thread's CUDA autocast: its cached copy in the autocast dtype
  // when autocast is on, the cache is switched on (frozen_cast_cache_enabled) and `w` is a float32 CUDA
  // tensor that requires no grad; `w` itself otherwise (undefined stays undefined).
  at::Tensor operand(const at::Tensor& w);

  // The cache itself, for any device: `w` in `dtype`, cast once and handed out again until `w`'s data
  // changes (in place, which bumps its version, or by set_data, which moves it to other storage) or its
  // shape does, then cast again. `w` itself when it has that dtype already.
  at::Tensor cast(const at::Tensor& w, c10::ScalarType dtype);

  int64_t size() const;  // cached copies
  void clear();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Whether FrozenCastCache::operand hands out cached copies (default on; HEDGELAB_FROZEN_CAST_CACHE=0 in the
// environment starts it off, for comparisons and memory-tight runs: autocast then casts at every use).
void set_frozen_cast_cache_enabled(bool on);
bool frozen_cast_cache_enabled();

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
