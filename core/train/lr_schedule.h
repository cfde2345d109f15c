// Learning-rate schedule shared by pretraining and distillation: linear warmup, then cosine decay.
#pragma once

#include <cstdint>

namespace hedgelab::train {

struct WarmupCosine {
  double peak_lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;

  // The rate for optimizer step `step` (0-based): (step+1)/warmup·peak during warmup, then a half cosine
  // from peak to min_lr reached at the last step.
  double at(int64_t step) const;
};

}  // namespace hedgelab::train
