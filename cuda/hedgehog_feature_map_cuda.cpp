// The LibTorch-facing side of the fused Hedgehog feature map (feature_map_params.h has the maths): checks,
// dtype handling, the autograd Function and the plain parameter structs. The kernels (feature_map_kernels.cu)
// never see a LibTorch type. The reference is core/ops/hedgehog_feature_map.cpp's ATen form.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>

#include "cuda/feature_map_params.h"
#include "cuda/register.h"

namespace hedgelab::cuda {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

FeatureMapShape shape_of(const at::Tensor& z) {
  FeatureMapShape s;
  s.H = z.size(1);
  s.T = z.size(2);
  s.m = z.size(3);
  s.rows = z.size(0) * s.H * s.T;
  s.dtype = z.scalar_type() == at::kBFloat16 ? ScanDtype::kBFloat16 : ScanDtype::kFloat32;
  return s;
}

void check(int code, const char* what) {
  TORCH_CHECK(code == 0, "hedgelab fused feature map (", what, "): ", scan_error_string(code));
}

class FeatureMapFunction : public torch::autograd::Function<FeatureMapFunction> {
 public:
  // z [B,H,T,m] (float32 or bf16), b [H,m] → φ [B,H,T,2m] in z's dtype.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& z, const at::Tensor& b) {
    const c10::cuda::CUDAGuard guard(z.device());
    const at::Tensor zc = z.contiguous();                 // [B, H, T, m]
    const at::Tensor bc = b.to(at::kFloat).contiguous();  // [H, m]
    const FeatureMapShape s = shape_of(zc);
    at::Tensor phi = at::empty({z.size(0), s.H, s.T, 2 * s.m}, zc.options());  // [B, H, T, 2m]
    FeatureMapFwdParams p;
    p.shape = s;
    p.z = zc.data_ptr();
    p.b = bc.data_ptr<float>();
    p.phi = phi.data_ptr();
    check(feature_map_forward(p, at::cuda::getCurrentCUDAStream().stream()), "forward");
    ctx->save_for_backward({zc, bc});
    ctx->saved_data["b_dtype"] = static_cast<int64_t>(b.scalar_type());
    return phi;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& zc = saved[0];  // [B, H, T, m]
    const at::Tensor& bc = saved[1];  // [H, m] float32
    const c10::cuda::CUDAGuard guard(zc.device());
    const FeatureMapShape s = shape_of(zc);
    const at::Tensor dphi = grads[0].to(zc.scalar_type()).contiguous();                      // [B, H, T, 2m]
    at::Tensor dz = at::empty({zc.size(0), s.H, s.T, s.m}, zc.options().dtype(at::kFloat));  // [B, H, T, m]
    FeatureMapBwdParams p;
    p.shape = s;
    p.z = zc.data_ptr();
    p.b = bc.data_ptr<float>();
    p.dphi = dphi.data_ptr();
    p.dz = dz.data_ptr<float>();
    check(feature_map_backward(p, at::cuda::getCurrentCUDAStream().stream()), "backward");
    const auto b_dtype = static_cast<at::ScalarType>(ctx->saved_data["b_dtype"].toInt());
    const at::Tensor db = dz.sum(at::IntArrayRef{0, 2}).to(b_dtype);  // [H, m], summed in float32
    return {dz.to(zc.scalar_type()), db};
  }
};

}  // namespace

at::Tensor fused_hedgehog_features(const at::Tensor& z, const at::Tensor& b) {
  TORCH_CHECK(z.dim() == 4 && b.dim() == 2 && b.size(0) == z.size(1) && b.size(1) == z.size(3),
              "fused_hedgehog_features: expected z [B,H,T,m] and b [H,m], got ", z.sizes(), " and ",
              b.sizes());
  TORCH_CHECK(z.is_cuda() && b.device() == z.device(),
              "fused_hedgehog_features: expected z and b on one CUDA ", "device, got ", z.device(), " and ",
              b.device());
  TORCH_CHECK(z.scalar_type() == at::kFloat || z.scalar_type() == at::kBFloat16,
              "fused_hedgehog_features: expected float32 or bf16 z, got ", z.scalar_type());
  TORCH_CHECK(c10::isFloatingType(b.scalar_type()), "fused_hedgehog_features: expected a floating b, got ",
              b.scalar_type());
  return FeatureMapFunction::apply(z, b);
}

}  // namespace hedgelab::cuda
