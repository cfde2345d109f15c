// Internal helpers shared by the chunked ops: cutting the token axis of [B, H, T, ·] tensors into chunks.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <limits>
#include <vector>

namespace hedgelab::ops::detail {

// Appends `pad` zero tokens at the end of dim 2 (the token axis) of a tensor of any rank ≥ 3.
inline at::Tensor pad_tokens(const at::Tensor& t, int64_t pad) {
  if (pad == 0) return t;
  // constant_pad_nd lists (before, after) pairs from the last dimension backwards.
  std::vector<int64_t> spec(2 * (t.dim() - 2), 0);
  spec.back() = pad;
  return at::constant_pad_nd(t, spec, 0.0);
}

// [B, H, nc·L, ...] → [B, H, nc, L, ...].
inline at::Tensor to_chunks(const at::Tensor& t, int64_t L) {
  std::vector<int64_t> shape{t.size(0), t.size(1), t.size(2) / L, L};
  for (int64_t d = 3; d < t.dim(); ++d)
    shape.push_back(t.size(d));
  return t.reshape(shape);
}

// [B, H, nc, L, ...] → [B, H, T, ...], dropping the padding tokens past T.
inline at::Tensor from_chunks(const at::Tensor& t, int64_t T) {
  std::vector<int64_t> shape{t.size(0), t.size(1), t.size(2) * t.size(3)};
  for (int64_t d = 4; d < t.dim(); ++d)
    shape.push_back(t.size(d));
  return t.reshape(shape).slice(2, 0, T);
}

// True strictly above the diagonal (s > t): the future a causal row must not see.
inline at::Tensor future_mask(int64_t L, const at::Device& device) {
  return at::ones({L, L}, at::TensorOptions().dtype(at::kBool).device(device)).triu(1);  // [L, L]
}

// Segment sums of log α along the last axis: out[..., t, s] = Σ_{s<r≤t} log α_r = ℓ_t − ℓ_s for s ≤ t, and
// −inf above the diagonal so that exp gives exactly 0 there (with zero gradient). Each entry is summed term
// by term down its column rather than taken as a difference of cumulative sums: after a stretch of strong
// decay ℓ is large, and ℓ_t − ℓ_s would lose the small exponents of a weak stretch that follows to
// cancellation.
inline at::Tensor segment_sums(const at::Tensor& log_alpha) {
  const int64_t L = log_alpha.size(-1);
  const at::Tensor future = future_mask(L, log_alpha.device());  // [L, L]
  std::vector<int64_t> shape(log_alpha.sizes().begin(), log_alpha.sizes().end());
  shape.push_back(L);
  // terms[..., r, s] = log α_r where r > s, else 0; a cumulative sum over r then gives the segment sums.
  const at::Tensor terms = log_alpha.unsqueeze(-1).expand(shape).masked_fill(
      future.transpose(0, 1).logical_not(), 0.0);                                              // [..., L, L]
  return at::cumsum(terms, -2).masked_fill(future, -std::numeric_limits<double>::infinity());  // [..., L, L]
}

}  // namespace hedgelab::ops::detail
