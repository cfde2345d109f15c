#include "core/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace hedgelab::train {

double WarmupCosine::at(int64_t step) const {
  if (step < warmup_steps) return peak_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const int64_t decay_steps = std::max<int64_t>(total_steps - warmup_steps - 1, 1);
  const double progress = std::clamp(static_cast<double>(step - warmup_steps) / decay_steps, 0.0, 1.0);
  return min_lr + 0.5 * (peak_lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace hedgelab::train
