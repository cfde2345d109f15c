#include "core/ops/mixer_output.h"

#include <atomic>

#include "core/common/env.h"
#include "core/ops/dispatch_tally.h"

namespace hedgelab::ops {

namespace {

std::atomic<MixerOutputFn> g_fused{nullptr};
// The default on CUDA since it was measured on an H100 (docs/results.md); HEDGELAB_FUSED_MIXER_OUTPUT=0
// keeps the ATen form.
std::atomic<bool> g_prefer_fused{env_switch("HEDGELAB_FUSED_MIXER_OUTPUT", /*default_on=*/true)};

void check_shapes(const at::Tensor& num, const at::Tensor& den, const at::Tensor& x, const at::Tensor& D,
                  const at::Tensor& gate_z, const at::Tensor& gain) {
  TORCH_CHECK(num.dim() == 4, "mixer_output: num must be [B,H,T,P], got ", num.sizes());
  const int64_t B = num.size(0), H = num.size(1), T = num.size(2), P = num.size(3);
  TORCH_CHECK(den.sizes() == at::IntArrayRef({B, H, T}), "mixer_output: den must be [B,H,T] = [", B, ", ", H,
              ", ", T, "], got ", den.sizes());
  TORCH_CHECK(x.sizes() == num.sizes(), "mixer_output: x must be [B,H,T,P] like num ", num.sizes(), ", got ",
              x.sizes());
  TORCH_CHECK(D.dim() == 1 && D.size(0) == H && gain.dim() == 1 && gain.size(0) == H,
              "mixer_output: D and gain must be [H] = [", H, "], got ", D.sizes(), " and ", gain.sizes());
  TORCH_CHECK(!gate_z.defined() || gate_z.sizes() == at::IntArrayRef({B, T, H * P}),
              "mixer_output: gate_z must be [B,T,d] = [", B, ", ", T, ", ", H * P, "], got ",
              gate_z.defined() ? gate_z.sizes() : at::IntArrayRef{});
}

bool is_f32_or_bf16(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16;
}

// The reference on shapes already checked.
at::Tensor reference_checked(const at::Tensor& num, const at::Tensor& den, const at::Tensor& x,
                             const at::Tensor& D, const at::Tensor& gate_z, const at::Tensor& gain,
                             double eps) {
  const int64_t B = num.size(0), H = num.size(1), T = num.size(2), P = num.size(3);
  at::Tensor y = num / (den.unsqueeze(-1) + eps) + D.view({1, H, 1, 1}) * x;  // [B, H, T, P]
  y = y.permute({0, 2, 1, 3});                                                // [B, T, H, P]
  if (gate_z.defined()) y = y * (2.0 * at::sigmoid(gate_z)).view({B, T, H, P});
  y = y * gain.view({1, 1, H, 1});                        // [B, T, H, P]
  return y.reshape({B, T, H * P}).to(num.scalar_type());  // [B, T, d]
}

}  // namespace

void register_fused_mixer_output(MixerOutputFn fn) {
  g_fused.store(fn);
}
MixerOutputFn registered_fused_mixer_output() {
  return g_fused.load();
}
void set_prefer_fused_mixer_output(bool prefer) {
  g_prefer_fused.store(prefer);
}
bool prefer_fused_mixer_output() {
  return g_prefer_fused.load();
}

at::Tensor mixer_output_reference(const at::Tensor& num, const at::Tensor& den, const at::Tensor& x,
                                  const at::Tensor& D, const at::Tensor& gate_z, const at::Tensor& gain,
                                  double eps) {
  check_shapes(num, den, x, D, gate_z, gain);
  return reference_checked(num, den, x, D, gate_z, gain, eps);
}

at::Tensor mixer_output(const at::Tensor& num, const at::Tensor& den, const at::Tensor& x,
                        const at::Tensor& D, const at::Tensor& gate_z, const at::Tensor& gain, double eps) {
  check_shapes(num, den, x, D, gate_z, gain);
  const MixerOutputFn fused = g_fused.load();
  if (fused && num.is_cuda()) {
    const auto dev = num.device();
    const auto st = num.scalar_type();
    const bool same = x.device() == dev && x.scalar_type() == st && den.device() == dev &&
                      D.device() == dev && gain.device() == dev &&
                      (!gate_z.defined() || (gate_z.device() == dev && gate_z.scalar_type() == st));
    auto f32_or_st = [st](const at::Tensor& t) {
      return t.scalar_type() == at::kFloat || t.scalar_type() == st;
    };
    const bool dtypes = is_f32_or_bf16(num) && f32_or_st(den) && f32_or_st(D) && f32_or_st(gain);
    // The kernel takes den, D and gain in float32 (a cast of [B,H,T] at most).
    if (take_fused("mixer_output", g_prefer_fused.load(), same && dtypes))
      return fused(num, den.to(at::kFloat), x, D.to(at::kFloat), gate_z, gain.to(at::kFloat),
                   eps);  // [B,T,d]
  }
  return reference_checked(num, den, x, D, gate_z, gain, eps);
}

}  // namespace hedgelab::ops
