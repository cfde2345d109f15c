// Training batches from a token view (a seeded, restorable cursor over non-overlapping windows) and the
// evaluation windows of the perplexity protocol (docs/method.md §5).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/data/corpus.h"

namespace hedgelab::data {

// Where a BatchCursor stands: the next window is entry `index` of epoch `epoch`'s permutation.
struct CursorState {
  uint64_t seed = 0;
  int64_t epoch = 0;
  int64_t index = 0;
  bool operator==(const CursorState& o) const {
    return seed == o.seed && epoch == o.epoch && index == o.index;
  }
  bool operator!=(const CursorState& o) const { return !(*this == o); }
};

void to_json(nlohmann::json& j, const CursorState& state);
// Throws hedgelab::Error naming the field when one is missing or not a non-negative integer.
void from_json(const nlohmann::json& j, CursorState& state);

// Yields [B, T+1] int64 batches (inputs = [:, :-1], targets = [:, 1:]). The windows start at every T-th
// token of each range of the view and lie inside one range; each epoch visits all of them once in an order
// drawn from (seed, epoch) by a portable PRNG, so the batches are the same on every machine. A batch that
// runs past the end of an epoch continues with the next one.
class BatchCursor {
 public:
  // Throws hedgelab::Error when the view holds no window of T+1 tokens, or T or B is not positive.
  BatchCursor(TokenView view, int64_t seq_len, int64_t batch_size, uint64_t seed);

  at::Tensor next();  // [B, T+1] int64, on the CPU

  const CursorState& state() const { return state_; }
  // Continues exactly where `state` was taken; throws when its index is past this cursor's epoch.
  void restore(const CursorState& state);

  int64_t windows_per_epoch() const { return static_cast<int64_t>(starts_.size()); }
  // View positions of the windows in the current epoch's order.
  const std::vector<int64_t>& epoch_order() const { return order_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t batch_size() const { return batch_size_; }
  const TokenView& view() const { return view_; }

 private:
  void shuffle_for_epoch();

  TokenView view_;
  int64_t seq_len_ = 0;
  int64_t batch_size_ = 0;
  std::vector<int64_t> starts_;  // sorted window starts (view positions)
  std::vector<int64_t> order_;   // starts_ permuted for state_.epoch
  CursorState state_;
};

// 0, T, 2T, … while a whole window of T+1 tokens fits in n_tokens.
std::vector<int64_t> eval_window_starts(int64_t n_tokens, int64_t seq_len);

// The windows at `starts` (view positions) as one [starts.size(), T+1] int64 tensor.
at::Tensor eval_batch(const TokenView& view, int64_t seq_len, const std::vector<int64_t>& starts);

// The view's evaluation windows (the first `max_windows` of them when > 0) in batches of at most
// `batch_size` rows, each [b, T+1] int64. Throws when the view is shorter than one window.
std::vector<at::Tensor> eval_batches(const TokenView& view, int64_t seq_len, int64_t batch_size,
                                     int64_t max_windows = 0);

}  // namespace hedgelab::data
