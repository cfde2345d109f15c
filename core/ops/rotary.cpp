#include "core/ops/rotary.h"

#include <atomic>
#include <map>
#include <mutex>
#include <tuple>

#include "core/common/env.h"
#include "core/ops/dispatch_tally.h"

namespace hedgelab::ops {

namespace {

std::atomic<RotaryFn> g_fused{nullptr};
// The default on CUDA since it was measured on an H100 (docs/results.md); HEDGELAB_FUSED_ROTARY=0 keeps the
// ATen form.
std::atomic<bool> g_prefer_fused{env_switch("HEDGELAB_FUSED_ROTARY", /*default_on=*/true)};

}  // namespace

void register_fused_rotary(RotaryFn fn) {
  g_fused.store(fn);
}
RotaryFn registered_fused_rotary() {
  return g_fused.load();
}
void set_prefer_fused_rotary(bool prefer) {
  g_prefer_fused.store(prefer);
}
bool prefer_fused_rotary() {
  return g_prefer_fused.load();
}

at::Tensor rotary_inverse_frequencies(int64_t rotary_dims, double base, at::Device device) {
  // One table per (r, base, device), made once: every layer's q and k and every decoding step ask again, and
  // making it is five small kernels. The map is never destroyed, so no device tensor outlives its runtime at
  // exit.
  using Key = std::tuple<int64_t, double, int, int>;
  static std::mutex mutex;
  static auto* tables = new std::map<Key, at::Tensor>();
  const Key key{rotary_dims, base, static_cast<int>(device.type()), static_cast<int>(device.index())};
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = tables->find(key);
  if (it != tables->end()) return it->second;
  const int64_t r = rotary_dims;
  // inv_freq_j = base^(-2j/r), computed in float32 on the CPU as transformers does, then moved.
  const at::Tensor exponents = at::arange(0, r, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) / r;
  const at::Tensor table = (1.0 / at::pow(base, exponents)).to(device);  // [r/2]
  tables->emplace(key, table);
  return table;
}

at::Tensor rotary_reference(const at::Tensor& x, int64_t rotary_dims, double base, double linear_factor,
                            int64_t position_offset) {
  const int64_t r = rotary_dims;
  if (r == 0) return x;
  TORCH_CHECK(x.dim() == 4 && r % 2 == 0 && r <= x.size(3),
              "rotary: expected x [B,H,T,P] and an even r ≤ P, got ", x.sizes(), " and r = ", r);
  const int64_t T = x.size(2);
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(x.device());
  const at::Tensor inv_freq = rotary_inverse_frequencies(r, base, x.device());  // [r/2]
  at::Tensor pos = at::arange(position_offset, position_offset + T, f32);       // [T]
  if (linear_factor != 1.0) pos = pos / linear_factor;
  const at::Tensor freqs = at::outer(pos, inv_freq);          // [T, r/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1);         // [T, r]
  const at::Tensor cos = emb.cos().to(x.scalar_type());       // [T, r]
  const at::Tensor sin = emb.sin().to(x.scalar_type());       // [T, r]
  const at::Tensor x_rot = x.narrow(-1, 0, r);                // [B, H, T, r]
  const at::Tensor x_pass = x.narrow(-1, r, x.size(-1) - r);  // [B, H, T, P-r]
  const at::Tensor rotated_half = at::cat({-x_rot.narrow(-1, r / 2, r / 2), x_rot.narrow(-1, 0, r / 2)}, -1);
  return at::cat({x_rot * cos + rotated_half * sin, x_pass}, -1);  // [B, H, T, P]
}

at::Tensor rotary(const at::Tensor& x, int64_t rotary_dims, double base, double linear_factor,
                  int64_t position_offset) {
  const int64_t r = rotary_dims;
  if (r == 0) return x;
  const RotaryFn fused = g_fused.load();
  if (fused && x.is_cuda() &&
      take_fused("rotary", g_prefer_fused.load(),
                 x.dim() == 4 && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) &&
                     x.stride(3) == 1 && r % 2 == 0 && r <= x.size(3)))
    return fused(x, rotary_inverse_frequencies(r, base, x.device()), r, linear_factor, position_offset);
  return rotary_reference(x, r, base, linear_factor, position_offset);
}

}  // namespace hedgelab::ops
