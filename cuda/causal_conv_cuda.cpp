// The LibTorch-facing side of the fused short causal convolution (causal_conv_params.h has the maths):
// checks, the autograd Function and the plain parameter structs. The kernels (causal_conv_kernels.cu) never
// see a LibTorch type. The reference is core/ops/causal_conv.cpp's ATen form.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>

#include "core/ops/causal_conv.h"
#include "cuda/causal_conv_params.h"
#include "cuda/register.h"

namespace hedgelab::cuda {

static_assert(ops::kFusedCausalConvMaxWidth == kCausalConvMaxW, "core's dispatch and the kernels agree on W");

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

CausalConvShape shape_of(const at::Tensor& x, const at::Tensor& weight) {
  CausalConvShape s;
  s.B = x.size(0);
  s.T = x.size(1);
  s.C = x.size(2);
  s.W = weight.size(1);
  s.dtype = x.scalar_type() == at::kBFloat16 ? ScanDtype::kBFloat16 : ScanDtype::kFloat32;
  return s;
}

void check(int code, const char* what) {
  TORCH_CHECK(code == 0, "hedgelab fused causal convolution (", what, "): ", scan_error_string(code));
}

class CausalConvFunction : public torch::autograd::Function<CausalConvFunction> {
 public:
  // x [B,T,C] (float32 or bf16), weight [C,W] and bias [C] float32 → out [B,T,C] in x's dtype.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias) {
    const c10::cuda::CUDAGuard guard(x.device());
    const at::Tensor xc = x.contiguous();                               // [B, T, C]
    const at::Tensor wc = weight.contiguous(), bc = bias.contiguous();  // [C, W], [C]
    at::Tensor out = at::empty_like(xc, at::MemoryFormat::Contiguous);  // [B, T, C]
    CausalConvFwdParams p;
    p.shape = shape_of(xc, wc);
    p.x = xc.data_ptr();
    p.weight = wc.data_ptr<float>();
    p.bias = bc.data_ptr<float>();
    p.out = out.data_ptr();
    check(causal_conv_forward(p, at::cuda::getCurrentCUDAStream().stream()), "forward");
    ctx->save_for_backward({xc, wc});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &xc = saved[0], &wc = saved[1];
    const c10::cuda::CUDAGuard guard(xc.device());
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    const bool need_x = ctx->needs_input_grad(0);
    const at::Tensor dout = grads[0].to(xc.scalar_type()).contiguous();  // [B, T, C]
    at::Tensor dx = need_x ? at::empty_like(xc) : at::Tensor();          // [B, T, C]
    const CausalConvShape shape = shape_of(xc, wc);
    const auto f32 = xc.options().dtype(at::kFloat);
    at::Tensor dw_part = at::empty({causal_conv_groups(shape), shape.C, shape.W}, f32);  // [G, C, W]
    at::Tensor db_part = at::empty({causal_conv_groups(shape), shape.C}, f32);           // [G, C]
    CausalConvBwdParams p;
    p.shape = shape;
    p.x = xc.data_ptr();
    p.weight = wc.data_ptr<float>();
    p.dout = dout.data_ptr();
    p.dx = need_x ? dx.data_ptr() : nullptr;
    p.dweight = dw_part.data_ptr<float>();
    p.dbias = db_part.data_ptr<float>();
    check(causal_conv_backward(p, at::cuda::getCurrentCUDAStream().stream()), "backward");
    return {dx, dw_part.sum(0), db_part.sum(0)};  // [B,T,C], [C,W], [C]
  }
};

}  // namespace

at::Tensor fused_causal_conv1d(const at::Tensor& in, const at::Tensor& weight, const at::Tensor& bias) {
  TORCH_CHECK(in.dim() == 3 && weight.dim() == 2 && bias.dim() == 1 && weight.size(0) == in.size(2) &&
                  bias.size(0) == in.size(2),
              "fused_causal_conv1d: expected in [B,T,C], weight [C,W] and bias [C], got ", in.sizes(), ", ",
              weight.sizes(), " and ", bias.sizes());
  TORCH_CHECK(weight.size(1) >= 1 && weight.size(1) <= kCausalConvMaxW,
              "fused_causal_conv1d: expected a width from 1 to ", kCausalConvMaxW, ", got ", weight.size(1));
  TORCH_CHECK(in.is_cuda() && weight.device() == in.device() && bias.device() == in.device(),
              "fused_causal_conv1d: expected in, weight and bias on one CUDA device, got ", in.device(), ", ",
              weight.device(), " and ", bias.device());
  TORCH_CHECK(in.scalar_type() == at::kFloat || in.scalar_type() == at::kBFloat16,
              "fused_causal_conv1d: expected a float32 or bf16 input, got ", in.scalar_type());
  TORCH_CHECK(weight.scalar_type() == at::kFloat && bias.scalar_type() == at::kFloat,
              "fused_causal_conv1d: expected float32 weight and bias, got ", weight.scalar_type(), " and ",
              bias.scalar_type());
  return CausalConvFunction::apply(in, weight, bias);
}

}  // namespace hedgelab::cuda
