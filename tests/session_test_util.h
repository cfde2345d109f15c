// Shared by tests/test_sessions.cpp and bench/bench_sessions.cpp (header-only, no Qt): session layouts of
// given shapes.
#pragma once

#include <cstdint>

#include "sessions/session_types.h"

namespace hedgelab::sessions::test {

// A layout of shapes L, H, Tp, m, P, N, d, W (SessionLayout's members in order) with the standard loss part
// names of L layers.
inline SessionLayout layout_of(int64_t layers, int64_t heads, int64_t probe_tokens, int64_t feature_dim,
                               int64_t head_size, int64_t state_size, int64_t width, int64_t conv_width) {
  SessionLayout l;
  l.layers = layers;
  l.heads = heads;
  l.probe_tokens = probe_tokens;
  l.feature_dim = feature_dim;
  l.head_size = head_size;
  l.state_size = state_size;
  l.width = width;
  l.conv_width = conv_width;
  l.part_names = standard_part_names(layers);
  return l;
}

}  // namespace hedgelab::sessions::test
