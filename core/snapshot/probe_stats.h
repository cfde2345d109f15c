// The per-head figures of docs/method.md §7 on plain data: row entropy, row KL, Spearman's ρ. Torch-free so
// that views can recompute them on what a session stores, and testable against hand-computed values.
#pragma once

#include <vector>

#include "core/snapshot/probe_snapshot.h"

namespace hedgelab::snapshot {

// Mean over rows t of −Σ_{s≤t} p_ts log p_ts, each row first renormalised to sum 1 over s ≤ t (so an
// unnormalised implied attention is measured like a distribution). Zero entries contribute nothing.
double mean_row_entropy(const Grid& p);
// Mean over rows t of Σ_{s≤t} p_ts (log p_ts − log q_ts), both rows renormalised over s ≤ t; q is floored at
// 1e-12 so a zero where p is not gives a large finite value.
double mean_row_kl(const Grid& p, const Grid& q);
// Spearman's rank correlation (average ranks for ties); 0 when either side is constant or n < 2.
double spearman(const std::vector<float>& a, const std::vector<float>& b);
// The lower triangle s ≤ t of a square grid in row-major order.
std::vector<float> lower_triangle(const Grid& g);

}  // namespace hedgelab::snapshot
