// The LibTorch-facing side of the fused rotary embedding (rotary_params.h has the maths): checks, the
// autograd Function and the plain parameter struct. The kernel (rotary_kernels.cu) never sees a LibTorch
// type. The reference is core/ops/rotary.cpp's ATen form.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>

#include "core/ops/rotary.h"
#include "cuda/register.h"
#include "cuda/rotary_params.h"

namespace hedgelab::cuda {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// in [B,H,T,P] (unit stride along P) rotated by ±θ into a new dense tensor.
at::Tensor rotate(const at::Tensor& in, const at::Tensor& inv_freq, int64_t r, double linear_factor,
                  int64_t offset, float sign) {
  const c10::cuda::CUDAGuard guard(in.device());
  const at::Tensor src = in.stride(3) == 1 ? in : in.contiguous();  // [B, H, T, P]
  at::Tensor out = at::empty(src.sizes(), src.options().memory_format(at::MemoryFormat::Contiguous));
  RotaryParams p;
  p.B = src.size(0);
  p.H = src.size(1);
  p.T = src.size(2);
  p.P = src.size(3);
  p.r = r;
  p.in_stride_b = src.stride(0);
  p.in_stride_h = src.stride(1);
  p.in_stride_t = src.stride(2);
  p.offset = offset;
  p.linear_factor = static_cast<float>(linear_factor);
  p.sign = sign;
  p.dtype = src.scalar_type() == at::kBFloat16 ? ScanDtype::kBFloat16 : ScanDtype::kFloat32;
  p.inv_freq = inv_freq.data_ptr<float>();
  p.in = src.data_ptr();
  p.out = out.data_ptr();
  const int code = rotary_apply(p, at::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(code == 0, "hedgelab fused rotary: ", scan_error_string(code));
  return out;
}

class RotaryFunction : public torch::autograd::Function<RotaryFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& inv_freq, int64_t r,
                            double linear_factor, int64_t offset) {
    ctx->saved_data["r"] = r;
    ctx->saved_data["linear_factor"] = linear_factor;
    ctx->saved_data["offset"] = offset;
    ctx->save_for_backward({inv_freq});
    return rotate(x, inv_freq, r, linear_factor, offset, 1.f);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return variable_list(5);
    const at::Tensor inv_freq = ctx->get_saved_variables()[0];
    const at::Tensor dx =
        rotate(grads[0], inv_freq, ctx->saved_data["r"].toInt(), ctx->saved_data["linear_factor"].toDouble(),
               ctx->saved_data["offset"].toInt(), -1.f);
    return {dx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor fused_rotary(const at::Tensor& x, const at::Tensor& inv_freq, int64_t rotary_dims,
                        double linear_factor, int64_t position_offset) {
  TORCH_CHECK(x.dim() == 4, "fused_rotary: expected x [B,H,T,P], got ", x.sizes());
  TORCH_CHECK(rotary_dims > 0 && rotary_dims % 2 == 0 && rotary_dims <= x.size(3),
              "fused_rotary: expected an even r from 2 to P = ", x.size(3), ", got ", rotary_dims);
  TORCH_CHECK(inv_freq.dim() == 1 && inv_freq.size(0) == rotary_dims / 2 &&
                  inv_freq.scalar_type() == at::kFloat && inv_freq.device() == x.device(),
              "fused_rotary: expected inv_freq [r/2] float32 on x's device, got ", inv_freq.sizes());
  TORCH_CHECK(x.is_cuda() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16),
              "fused_rotary: expected a CUDA float32 or bf16 x, got ", x.device(), " ", x.scalar_type());
  return RotaryFunction::apply(x, inv_freq.contiguous(), rotary_dims, linear_factor, position_offset);
}

}  // namespace hedgelab::cuda
