// The LibTorch-facing side of stage 2's fused logit losses (logit_losses_params.h has the maths): checks,
// the autograd Function and the plain parameter structs. The kernels (logit_losses_kernels.cu) never see a
// LibTorch type. The reference is core/ops/logit_losses.cpp's ATen form.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>

#include "core/ops/logit_losses.h"
#include "cuda/logit_losses_params.h"
#include "cuda/register.h"

namespace hedgelab::cuda {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

ScanDtype dtype_of(const at::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 ? ScanDtype::kBFloat16 : ScanDtype::kFloat32;
}

LogitLossesShape shape_of(const at::Tensor& zs, const at::Tensor& zt, double temperature) {
  LogitLossesShape s;
  s.rows = zs.size(0);
  s.V = zs.size(1);
  s.zs_dtype = dtype_of(zs);
  s.zt_dtype = dtype_of(zt);
  s.temperature = static_cast<float>(temperature);
  return s;
}

void check(int code, const char* what) {
  TORCH_CHECK(code == 0, "hedgelab fused logit losses (", what, "): ", scan_error_string(code));
}

class LogitLossesFunction : public torch::autograd::Function<LogitLossesFunction> {
 public:
  // zs, zt [N, V] (float32 or bf16 each), targets [N] int64 → ce_n, KL_n [N] float32; zt is a constant.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& zs, const at::Tensor& zt,
                               const at::Tensor& targets, double temperature) {
    const c10::cuda::CUDAGuard guard(zs.device());
    const at::Tensor zsc = zs.contiguous(), ztc = zt.contiguous(), yc = targets.contiguous();
    const LogitLossesShape shape = shape_of(zsc, ztc, temperature);
    const auto f32 = zsc.options().dtype(at::kFloat);
    at::Tensor ce = at::empty({shape.rows}, f32);        // [N]
    at::Tensor kl = at::empty({shape.rows}, f32);        // [N]
    at::Tensor stats = at::empty({shape.rows, 3}, f32);  // [N, 3] lse₁, lse_b, lse_a
    LogitLossesFwdParams p;
    p.shape = shape;
    p.zs = zsc.data_ptr();
    p.zt = ztc.data_ptr();
    p.targets = yc.data_ptr<int64_t>();
    p.ce = ce.data_ptr<float>();
    p.kl = kl.data_ptr<float>();
    p.stats = stats.data_ptr<float>();
    check(logit_losses_forward(p, at::cuda::getCurrentCUDAStream().stream()), "forward");
    ctx->save_for_backward({zsc, ztc, yc, stats});
    ctx->saved_data["temperature"] = temperature;
    ctx->mark_non_differentiable({stats});
    return {ce, kl};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &zsc = saved[0], &ztc = saved[1], &yc = saved[2], &stats = saved[3];
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const variable_list none = {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    if (!ctx->needs_input_grad(0) || (!grads[0].defined() && !grads[1].defined())) return none;
    const c10::cuda::CUDAGuard guard(zsc.device());
    const int64_t N = zsc.size(0);
    const auto f32 = zsc.options().dtype(at::kFloat);
    // An undefined gradient is a zero one (the loss did not use that output).
    const at::Tensor dce = grads[0].defined() ? grads[0].to(at::kFloat).contiguous() : at::zeros({N}, f32);
    const at::Tensor dkl = grads[1].defined() ? grads[1].to(at::kFloat).contiguous() : at::zeros({N}, f32);
    at::Tensor dzs = at::empty_like(zsc);  // [N, V] zs's dtype
    LogitLossesBwdParams p;
    p.shape = shape_of(zsc, ztc, temperature);
    p.zs = zsc.data_ptr();
    p.zt = ztc.data_ptr();
    p.targets = yc.data_ptr<int64_t>();
    p.stats = stats.data_ptr<float>();
    p.dce = dce.data_ptr<float>();
    p.dkl = dkl.data_ptr<float>();
    p.dzs = dzs.data_ptr();
    check(logit_losses_backward(p, at::cuda::getCurrentCUDAStream().stream()), "backward");
    return {dzs, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::pair<at::Tensor, at::Tensor> fused_logit_losses(const at::Tensor& student_logits,
                                                     const at::Tensor& teacher_logits,
                                                     const at::Tensor& targets, double temperature) {
  TORCH_CHECK(student_logits.dim() == 2 && student_logits.sizes() == teacher_logits.sizes(),
              "fused_logit_losses: expected student and teacher logits of one shape [N, V], got ",
              student_logits.sizes(), " and ", teacher_logits.sizes());
  TORCH_CHECK(
      targets.dim() == 1 && targets.size(0) == student_logits.size(0) && targets.scalar_type() == at::kLong,
      "fused_logit_losses: expected targets [N] = [", student_logits.size(0), "] int64, got ",
      targets.sizes(), " ", targets.scalar_type());
  TORCH_CHECK(student_logits.is_cuda() && teacher_logits.device() == student_logits.device() &&
                  targets.device() == student_logits.device(),
              "fused_logit_losses: expected the logits and targets on one CUDA device, got ",
              student_logits.device(), ", ", teacher_logits.device(), " and ", targets.device());
  for (const at::Tensor* x : {&student_logits, &teacher_logits})
    TORCH_CHECK(x->scalar_type() == at::kFloat || x->scalar_type() == at::kBFloat16,
                "fused_logit_losses: expected float32 or bf16 logits, got ", x->scalar_type());
  TORCH_CHECK(temperature > 0, "fused_logit_losses: the temperature must be > 0, got ", temperature);
  TORCH_CHECK(student_logits.size(0) <= 0x7fffffff, "fused_logit_losses: at most 2^31 − 1 rows, got ",
              student_logits.size(0));
  const variable_list rows =
      LogitLossesFunction::apply(student_logits, teacher_logits.detach(), targets, temperature);
  return {rows[0], rows[1]};
}

}  // namespace hedgelab::cuda
