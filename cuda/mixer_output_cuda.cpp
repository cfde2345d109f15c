// The LibTorch-facing side of the fused mixer read-out (mixer_output_params.h has the maths): checks, the
// autograd Function and the plain parameter structs. The kernels (mixer_output_kernels.cu) never see a
// LibTorch type. The reference is core/ops/mixer_output.cpp's ATen form.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>

#include "core/ops/mixer_output.h"
#include "cuda/mixer_output_params.h"
#include "cuda/register.h"

namespace hedgelab::cuda {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

MixerOutputShape shape_of(const at::Tensor& num, const at::Tensor& x, bool gate, double eps) {
  MixerOutputShape s;
  s.B = num.size(0);
  s.H = num.size(1);
  s.T = num.size(2);
  s.P = num.size(3);
  s.x_stride_b = x.stride(0);
  s.x_stride_h = x.stride(1);
  s.x_stride_t = x.stride(2);
  s.gate = gate;
  s.eps = static_cast<float>(eps);
  s.dtype = num.scalar_type() == at::kBFloat16 ? ScanDtype::kBFloat16 : ScanDtype::kFloat32;
  return s;
}

void check(int code, const char* what) {
  TORCH_CHECK(code == 0, "hedgelab fused mixer output (", what, "): ", scan_error_string(code));
}

// x as the kernels take it: unit stride along P and dense (so that a gradient laid out like it exists).
at::Tensor kernel_x(const at::Tensor& x) {
  if (x.stride(3) == 1 && x.is_non_overlapping_and_dense()) return x;
  return x.contiguous();
}

class MixerOutputFunction : public torch::autograd::Function<MixerOutputFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& num, const at::Tensor& den,
                            const at::Tensor& x, const at::Tensor& D, const at::Tensor& gate_z,
                            const at::Tensor& gain, double eps, bool gate) {
    const c10::cuda::CUDAGuard guard(num.device());
    const at::Tensor nc = num.contiguous();                           // [B, H, T, P]
    const at::Tensor dc = den.contiguous();                           // [B, H, T]
    const at::Tensor xk = kernel_x(x);                                // [B, H, T, P]
    const at::Tensor Dc = D.contiguous(), gc = gain.contiguous();     // [H]
    const at::Tensor zc = gate ? gate_z.contiguous() : at::Tensor();  // [B, T, d]
    const int64_t B = nc.size(0), H = nc.size(1), T = nc.size(2), P = nc.size(3);
    at::Tensor y = at::empty({B, T, H * P}, nc.options());  // [B, T, d]
    MixerOutputFwdParams p;
    p.shape = shape_of(nc, xk, gate, eps);
    p.num = nc.data_ptr();
    p.den = dc.data_ptr<float>();
    p.x = xk.data_ptr();
    p.D = Dc.data_ptr<float>();
    p.z = gate ? zc.data_ptr() : nullptr;
    p.gain = gc.data_ptr<float>();
    p.y = y.data_ptr();
    check(mixer_output_forward(p, at::cuda::getCurrentCUDAStream().stream()), "forward");
    ctx->saved_data["gate"] = gate;
    ctx->saved_data["eps"] = eps;
    if (gate)
      ctx->save_for_backward({nc, dc, xk, Dc, gc, zc});
    else
      ctx->save_for_backward({nc, dc, xk, Dc, gc});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool gate = ctx->saved_data["gate"].toBool();
    const double eps = ctx->saved_data["eps"].toDouble();
    const at::Tensor &nc = saved[0], &dc = saved[1], &xk = saved[2], &Dc = saved[3], &gc = saved[4];
    const at::Tensor zc = gate ? saved[5] : at::Tensor();
    const c10::cuda::CUDAGuard guard(nc.device());
    if (!grads[0].defined()) return variable_list(8);
    const at::Tensor dy = grads[0].to(nc.scalar_type()).contiguous();  // [B, T, d]
    const MixerOutputShape shape = shape_of(nc, xk, gate, eps);
    at::Tensor dnum = at::empty_like(nc);  // [B, H, T, P]
    at::Tensor dden = at::empty_like(dc);  // [B, H, T]
    at::Tensor dx = at::empty_like(xk);    // [B, H, T, P], xk's strides
    TORCH_INTERNAL_ASSERT(dx.strides() == xk.strides(), "fused mixer output: dx must be laid out like x");
    at::Tensor dz = gate ? at::empty_like(zc) : at::Tensor();  // [B, T, d]
    const auto f32 = nc.options().dtype(at::kFloat);
    at::Tensor dD_part = at::empty({mixer_output_groups(shape), shape.H}, f32);     // [G, H]
    at::Tensor dgain_part = at::empty({mixer_output_groups(shape), shape.H}, f32);  // [G, H]
    MixerOutputBwdParams p;
    p.shape = shape;
    p.num = nc.data_ptr();
    p.den = dc.data_ptr<float>();
    p.x = xk.data_ptr();
    p.D = Dc.data_ptr<float>();
    p.z = gate ? zc.data_ptr() : nullptr;
    p.gain = gc.data_ptr<float>();
    p.dy = dy.data_ptr();
    p.dnum = dnum.data_ptr();
    p.dden = dden.data_ptr<float>();
    p.dx = dx.data_ptr();
    p.dz = gate ? dz.data_ptr() : nullptr;
    p.dD = dD_part.data_ptr<float>();
    p.dgain = dgain_part.data_ptr<float>();
    check(mixer_output_backward(p, at::cuda::getCurrentCUDAStream().stream()), "backward");
    return {dnum, dden, dx, dD_part.sum(0), dz, dgain_part.sum(0), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor fused_mixer_output(const at::Tensor& num, const at::Tensor& den, const at::Tensor& x,
                              const at::Tensor& D, const at::Tensor& gate_z, const at::Tensor& gain,
                              double eps) {
  TORCH_CHECK(num.dim() == 4 && x.sizes() == num.sizes() && den.dim() == 3 && den.size(0) == num.size(0) &&
                  den.size(1) == num.size(1) && den.size(2) == num.size(2),
              "fused_mixer_output: expected num and x [B,H,T,P] and den [B,H,T], got ", num.sizes(), ", ",
              x.sizes(), " and ", den.sizes());
  const int64_t B = num.size(0), H = num.size(1), T = num.size(2), P = num.size(3);
  TORCH_CHECK(D.dim() == 1 && D.size(0) == H && gain.dim() == 1 && gain.size(0) == H,
              "fused_mixer_output: expected D and gain [H] = [", H, "], got ", D.sizes(), " and ",
              gain.sizes());
  TORCH_CHECK(!gate_z.defined() || gate_z.sizes() == at::IntArrayRef({B, T, H * P}),
              "fused_mixer_output: expected gate_z [B,T,d] = [", B, ", ", T, ", ", H * P, "]");
  const auto dev = num.device();
  TORCH_CHECK(num.is_cuda() && x.device() == dev && den.device() == dev && D.device() == dev &&
                  gain.device() == dev && (!gate_z.defined() || gate_z.device() == dev),
              "fused_mixer_output: expected every input on one CUDA device");
  const auto st = num.scalar_type();
  TORCH_CHECK((st == at::kFloat || st == at::kBFloat16) && x.scalar_type() == st &&
                  (!gate_z.defined() || gate_z.scalar_type() == st),
              "fused_mixer_output: expected num, x and gate_z in one dtype, float32 or bf16, got ", st,
              " and ", x.scalar_type());
  TORCH_CHECK(
      den.scalar_type() == at::kFloat && D.scalar_type() == at::kFloat && gain.scalar_type() == at::kFloat,
      "fused_mixer_output: expected den, D and gain in float32");
  // An absent gate travels as an empty tensor: autograd Functions read the device of every tensor argument,
  // and an undefined one has none.
  const bool gate = gate_z.defined();
  const at::Tensor z = gate ? gate_z : at::empty({0}, num.options());
  return MixerOutputFunction::apply(num, den, x, D, z, gain, eps, gate);
}

}  // namespace hedgelab::cuda
