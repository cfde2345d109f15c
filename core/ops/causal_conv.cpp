#include "core/ops/causal_conv.h"

#include <atomic>

#include "core/common/env.h"
#include "core/ops/dispatch_tally.h"

namespace hedgelab::ops {

namespace {

std::atomic<CausalConvFn> g_fused_conv{nullptr};
// The default on CUDA since it was measured on an H100 (docs/results.md); HEDGELAB_FUSED_CONV=0 keeps the
// ATen form.
std::atomic<bool> g_prefer_fused{env_switch("HEDGELAB_FUSED_CONV", /*default_on=*/true)};

void check_shapes(const at::Tensor& in, const at::Tensor& weight, const at::Tensor& bias) {
  TORCH_CHECK(in.dim() == 3 && weight.dim() == 2 && bias.dim() == 1 && weight.size(0) == in.size(2) &&
                  bias.size(0) == in.size(2) && weight.size(1) >= 1,
              "causal_conv1d: expected in [B,T,C], weight [C,W] (W ≥ 1) and bias [C], got ", in.sizes(), ", ",
              weight.sizes(), " and ", bias.sizes());
}

}  // namespace

void register_fused_causal_conv(CausalConvFn fn) {
  g_fused_conv.store(fn);
}
CausalConvFn registered_fused_causal_conv() {
  return g_fused_conv.load();
}
void set_prefer_fused_causal_conv(bool prefer) {
  g_prefer_fused.store(prefer);
}
bool prefer_fused_causal_conv() {
  return g_prefer_fused.load();
}

at::Tensor causal_conv1d_reference(const at::Tensor& in, const at::Tensor& weight, const at::Tensor& bias,
                                   at::Tensor* tail) {
  check_shapes(in, weight, bias);
  const int64_t B = in.size(0), T = in.size(1), C = in.size(2), W = weight.size(1);
  const at::Tensor prev =
      (tail && tail->defined()) ? *tail : at::zeros({B, C, W - 1}, in.options());  // [B,C,W−1]
  const at::Tensor full = at::cat({prev, in.transpose(1, 2)}, 2);                  // [B, C, T+W−1]
  at::Tensor out;                                                                  // [B, C, T]
  if (T == 1) {
    // One token (decoding): full is the window itself, so the same sum is one product and one reduction.
    out = (full * weight.unsqueeze(0)).sum(2, /*keepdim=*/true) + bias.view({1, C, 1});  // [B, C, 1]
  } else {
    // W shifted multiply-adds: W is small, so this is cheaper and simpler than a grouped convolution call.
    out = bias.view({1, C, 1}).expand({B, C, T});  // [B, C, T]
    for (int64_t j = 0; j < W; ++j)
      out = out + weight.select(1, j).view({1, C, 1}) * full.narrow(2, j, T);
  }
  if (tail) *tail = full.narrow(2, T, W - 1);       // the last W−1 inputs
  return out.transpose(1, 2).to(in.scalar_type());  // [B, T, C]
}

at::Tensor causal_conv1d(const at::Tensor& in, const at::Tensor& weight, const at::Tensor& bias,
                         at::Tensor* tail) {
  check_shapes(in, weight, bias);
  const CausalConvFn fused = g_fused_conv.load();
  const bool dtypes = (in.scalar_type() == at::kFloat || in.scalar_type() == at::kBFloat16) &&
                      weight.scalar_type() == at::kFloat && bias.scalar_type() == at::kFloat;
  // The kernel keeps no tail (the decoding's streaming state): the reference hands it on.
  if (fused && in.is_cuda() &&
      take_fused("causal_conv", g_prefer_fused.load(),
                 tail == nullptr && weight.device() == in.device() && bias.device() == in.device() &&
                     dtypes && weight.size(1) <= kFusedCausalConvMaxWidth))
    return fused(in, weight, bias);  // [B, T, C]
  return causal_conv1d_reference(in, weight, bias, tail);
}

}  // namespace hedgelab::ops
