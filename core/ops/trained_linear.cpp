#include "core/ops/trained_linear.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <atomic>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/common/env.h"
#include "core/ops/autocast.h"

namespace hedgelab::ops {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::atomic<bool>& flag() {
  static std::atomic<bool> on{env_switch("HEDGELAB_FP32_WEIGHT_GRADS", /*default_on=*/false)};
  return on;
}

// at::mm(a, b, out_dtype) where this LibTorch has it (its "mm.dtype" overload), found at compile time.
template <typename T, typename = void>
struct HasMmOutDtype : std::false_type {};
template <typename T>
struct HasMmOutDtype<T, std::void_t<decltype(at::mm(std::declval<const T&>(), std::declval<const T&>(),
                                                    std::declval<c10::ScalarType>()))>> : std::true_type {};

// a b in float32: one GEMM with a float32 result for bf16/fp16 CUDA operands where LibTorch has it, else the
// GEMM in the operands' dtype and one cast.
template <typename T>
at::Tensor mm_f32(const T& a, const T& b) {
  if constexpr (HasMmOutDtype<T>::value) {
    const auto st = a.scalar_type();
    if (a.is_cuda() && (st == at::kBFloat16 || st == at::kHalf)) return at::mm(a, b, at::kFloat);
  }
  return at::mm(a, b).to(at::kFloat);
}

// `t` in `dtype`: autocast's cached copy for a float32 CUDA leaf that requires grad, under CUDA autocast (the
// copy at::linear would use, detached: the backward below needs no graph through it); a plain cast otherwise
// (an activation: autocast would not cache it either).
// The cast runs with grad mode on, as at::linear's would: an entry this call adds to autocast's cache must
// keep its path back to the weight for any later at::linear on it in the same autocast scope (the Function's
// forward runs with grad mode off, and a copy cast there would carry no gradient).
at::Tensor operand(const at::Tensor& t, c10::ScalarType dtype) {
  if (!t.defined() || t.scalar_type() == dtype) return t;
  const AutocastSetting s = cuda_autocast_setting();
  if (s.enabled && s.dtype == dtype && t.is_cuda() && t.scalar_type() == at::kFloat && t.is_leaf() &&
      t.requires_grad()) {
    const at::AutoGradMode grad_on(true);
    return at::autocast::cached_cast(dtype, t, c10::DeviceType::CUDA).detach();
  }
  return t.to(dtype);
}

class LinearF32Grads : public torch::autograd::Function<LinearF32Grads> {
 public:
  // An absent bias travels as an empty tensor (has_bias false): autograd Functions read the device of every
  // tensor argument, and an undefined one has none.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& b, c10::ScalarType dtype, bool has_bias) {
    const at::Tensor xc = operand(x, dtype);                            // [..., in]
    const at::Tensor wc = operand(w, dtype);                            // [out, in]
    const at::Tensor bc = has_bias ? operand(b, dtype) : at::Tensor();  // [out] or undefined
    ctx->saved_data["x_dtype"] = x.scalar_type();
    ctx->saved_data["has_bias"] = has_bias;
    ctx->save_for_backward({xc, wc});
    // at::linear's own product (addmm with the bias, mm without, over the tokens flattened), returned through
    // _unsafe_view rather than as a view, so that the output allows in-place edits as at::linear's does.
    const int64_t in = w.size(1);
    const at::Tensor x2 = xc.reshape({-1, in});                                       // [M, in]
    const at::Tensor y2 = has_bias ? at::addmm(bc, x2, wc.t()) : at::mm(x2, wc.t());  // [M, out]
    std::vector<int64_t> sizes = x.sizes().vec();
    sizes.back() = w.size(0);
    return at::_unsafe_view(y2, sizes);  // [..., out]
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &xc = saved[0], &wc = saved[1];
    const auto x_dtype = ctx->saved_data["x_dtype"].toScalarType();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    const int64_t in = wc.size(1), out = wc.size(0);
    const at::Tensor dy = grads[0].to(wc.scalar_type()).reshape({-1, out});                 // [M, out]
    const at::Tensor x2 = xc.reshape({-1, in});                                             // [M, in]
    at::Tensor dx = ctx->needs_input_grad(0) ? at::mm(dy, wc).view(xc.sizes()).to(x_dtype)  // [..., in]
                                             : at::Tensor();
    at::Tensor dw = mm_f32(dy.t(), x2);  // [out, in] float32
    at::Tensor db = has_bias ? at::sum(dy, at::IntArrayRef{0}, /*keepdim=*/false, at::kFloat)
                             : at::Tensor();  // [out] float32
    return {dx, dw, db, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor linear_with_f32_weight_grads(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                                        c10::ScalarType dtype) {
  TORCH_CHECK(w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(1),
              "linear_with_f32_weight_grads: x [..., in] and w [out, in] do not match: ", x.sizes(), " and ",
              w.sizes());
  TORCH_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == w.size(0)),
              "linear_with_f32_weight_grads: b must be [out] = [", w.size(0), "], got ", b.sizes());
  const bool has_bias = b.defined();
  const at::Tensor bias = has_bias ? b : at::empty({0}, w.options());
  return LinearF32Grads::apply(x, w, bias, dtype, has_bias);  // [..., out]
}

bool weight_grad_gemm_has_f32_output() {
  return HasMmOutDtype<at::Tensor>::value;
}

void set_fp32_weight_grads(bool on) {
  flag().store(on);
}
bool fp32_weight_grads() {
  return flag().load();
}

at::Tensor trained_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (flag().load() && at::GradMode::is_enabled() && w.requires_grad() && w.is_cuda() &&
      w.scalar_type() == at::kFloat) {
    const AutocastSetting s = cuda_autocast_setting();
    if (s.enabled) return linear_with_f32_weight_grads(x, w, b, s.dtype);  // [..., out]
  }
  return at::linear(x, w, b);  // [..., out]
}

}  // namespace hedgelab::ops
