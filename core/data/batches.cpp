#include "core/data/batches.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/common/prng.h"

namespace hedgelab::data {

namespace {

void require_positive(int64_t v, const char* what) {
  if (v < 1) throw Error(what, "expected a positive count, got " + std::to_string(v));
}

// Distinct, well-mixed seeds per epoch (Prng runs SplitMix64 over this).
uint64_t epoch_seed(uint64_t seed, int64_t epoch) {
  return seed ^ (0x9E3779B97F4A7C15ull * (static_cast<uint64_t>(epoch) + 1));
}

}  // namespace

// ---- CursorState

void to_json(nlohmann::json& j, const CursorState& state) {
  j = nlohmann::json{{"seed", state.seed}, {"epoch", state.epoch}, {"index", state.index}};
}

void from_json(const nlohmann::json& j, CursorState& state) {
  if (!j.is_object()) throw Error("cursor state", "expected a JSON object with seed, epoch and index");
  const auto field = [&](const char* name) -> const nlohmann::json& {
    const auto it = j.find(name);
    if (it == j.end() ||
        !(it->is_number_unsigned() || (it->is_number_integer() && it->get<int64_t>() >= 0))) {
      throw Error(std::string("cursor state: ") + name, "expected a non-negative integer");
    }
    return *it;
  };
  CursorState s;
  s.seed = field("seed").get<uint64_t>();
  s.epoch = field("epoch").get<int64_t>();
  s.index = field("index").get<int64_t>();
  if (s.epoch < 0 || s.index < 0) throw Error("cursor state", "epoch and index must fit in int64");
  state = s;
}

// ---- BatchCursor

BatchCursor::BatchCursor(TokenView view, int64_t seq_len, int64_t batch_size, uint64_t seed)
    : view_(std::move(view)), seq_len_(seq_len), batch_size_(batch_size) {
  require_positive(seq_len, "seq_len");
  require_positive(batch_size, "batch_size");
  const auto& ranges = view_.ranges();
  for (std::size_t r = 0; r < ranges.size(); ++r) {
    // Non-overlapping windows of T+1 tokens with stride T: the last token of one is the first of the next.
    const int64_t count = ranges[r].size() >= 1 ? (ranges[r].size() - 1) / seq_len : 0;
    for (int64_t w = 0; w < count; ++w)
      starts_.push_back(view_.range_offsets()[r] + w * seq_len);
  }
  if (starts_.empty()) {
    const std::string window = "one window of T+1 = " + std::to_string(seq_len + 1) + " tokens";
    view_.require_tokens(seq_len + 1, window);
    throw Error(view_.name(), "no stretch between held-out blocks holds " + window +
                                  "; raise split_block_tokens or lower the sequence length");
  }
  state_.seed = seed;
  shuffle_for_epoch();
}

void BatchCursor::shuffle_for_epoch() {
  order_ = starts_;
  Prng prng(epoch_seed(state_.seed, state_.epoch));
  // Fisher–Yates, written out so that the order does not depend on the standard library.
  for (std::size_t i = order_.size(); i > 1; --i) {
    const std::size_t j = static_cast<std::size_t>(prng.next_below(i));
    std::swap(order_[i - 1], order_[j]);
  }
}

at::Tensor BatchCursor::next() {
  const int64_t width = seq_len_ + 1;
  at::Tensor batch = at::empty({batch_size_, width}, at::kLong);  // [B, T+1] int64
  int64_t* out = batch.data_ptr<int64_t>();
  for (int64_t row = 0; row < batch_size_; ++row) {
    view_.copy_to(order_[static_cast<std::size_t>(state_.index)], width, out + row * width);
    if (++state_.index == windows_per_epoch()) {
      ++state_.epoch;
      state_.index = 0;
      shuffle_for_epoch();
    }
  }
  return batch;
}

void BatchCursor::restore(const CursorState& state) {
  if (state.epoch < 0 || state.index < 0 || state.index >= windows_per_epoch()) {
    throw Error("cursor state",
                "index " + std::to_string(state.index) + " is outside this corpus's epoch of " +
                    std::to_string(windows_per_epoch()) + " windows (was the corpus changed?)");
  }
  const bool reshuffle = state.seed != state_.seed || state.epoch != state_.epoch;
  state_ = state;
  if (reshuffle) shuffle_for_epoch();
}

// ---- evaluation

std::vector<int64_t> eval_window_starts(int64_t n_tokens, int64_t seq_len) {
  require_positive(seq_len, "seq_len");
  std::vector<int64_t> starts;
  for (int64_t s = 0; s + seq_len + 1 <= n_tokens; s += seq_len)
    starts.push_back(s);
  return starts;
}

at::Tensor eval_batch(const TokenView& view, int64_t seq_len, const std::vector<int64_t>& starts) {
  require_positive(seq_len, "seq_len");
  const int64_t width = seq_len + 1;
  at::Tensor batch = at::empty({static_cast<int64_t>(starts.size()), width}, at::kLong);  // [b, T+1] int64
  int64_t* out = batch.data_ptr<int64_t>();
  for (std::size_t i = 0; i < starts.size(); ++i)
    view.copy_to(starts[i], width, out + i * width);
  return batch;
}

std::vector<at::Tensor> eval_batches(const TokenView& view, int64_t seq_len, int64_t batch_size,
                                     int64_t max_windows) {
  require_positive(batch_size, "batch_size");
  std::vector<int64_t> starts = eval_window_starts(view.size(), seq_len);
  if (starts.empty()) view.require_tokens(seq_len + 1, "one evaluation window of T+1 tokens");
  if (max_windows > 0 && static_cast<int64_t>(starts.size()) > max_windows) starts.resize(max_windows);
  std::vector<at::Tensor> batches;
  for (std::size_t i = 0; i < starts.size(); i += static_cast<std::size_t>(batch_size)) {
    const std::size_t end = std::min(starts.size(), i + static_cast<std::size_t>(batch_size));
    batches.push_back(
        eval_batch(view, seq_len, std::vector<int64_t>(starts.begin() + i, starts.begin() + end)));
  }
  return batches;
}

}  // namespace hedgelab::data
