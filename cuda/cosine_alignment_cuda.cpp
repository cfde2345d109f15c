// The LibTorch-facing side of the fused cosine alignment (cosine_params.h has the maths): checks, dtype
// handling, the autograd Function and the plain parameter structs. The kernels (cosine_kernels.cu) never
// see a LibTorch type. The reference is core/ops/cosine_alignment.cpp's ATen form.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>

#include "core/ops/cosine_alignment.h"
#include "cuda/cosine_params.h"
#include "cuda/register.h"

namespace hedgelab::cuda {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

ScanDtype dtype_of(const at::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 ? ScanDtype::kBFloat16 : ScanDtype::kFloat32;
}

CosineShape shape_of(const at::Tensor& s, const at::Tensor& t) {
  CosineShape c;
  c.d = s.size(-1);
  c.rows = c.d == 0 ? 0 : s.numel() / c.d;
  c.s_dtype = dtype_of(s);
  c.t_dtype = dtype_of(t);
  c.eps = static_cast<float>(ops::kCosineEps);
  return c;
}

void check(int code, const char* what) {
  TORCH_CHECK(code == 0, "hedgelab fused cosine alignment (", what, "): ", scan_error_string(code));
}

class CosineFunction : public torch::autograd::Function<CosineFunction> {
 public:
  // s, t [..., d] (float32 or bf16 each) → cos [...] float32.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& s, const at::Tensor& t) {
    const c10::cuda::CUDAGuard guard(s.device());
    const at::Tensor sc = s.contiguous(), tc = t.contiguous();  // [..., d]
    const CosineShape shape = shape_of(sc, tc);
    const auto f32 = sc.options().dtype(at::kFloat);
    at::Tensor cos = at::empty(sc.sizes().slice(0, sc.dim() - 1), f32);  // [...]
    at::Tensor stats = at::empty({shape.rows, 3}, f32);                  // [rows, 3] n_s, n_t, cos
    CosineFwdParams p;
    p.shape = shape;
    p.s = sc.data_ptr();
    p.t = tc.data_ptr();
    p.cos = cos.data_ptr<float>();
    p.stats = stats.data_ptr<float>();
    check(cosine_forward(p, at::cuda::getCurrentCUDAStream().stream()), "forward");
    ctx->save_for_backward({sc, tc, stats});
    return cos;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &sc = saved[0], &tc = saved[1], &stats = saved[2];
    const c10::cuda::CUDAGuard guard(sc.device());
    const bool need_s = ctx->needs_input_grad(0), need_t = ctx->needs_input_grad(1);
    if (!grads[0].defined() || (!need_s && !need_t)) return {at::Tensor(), at::Tensor()};
    const at::Tensor dcos = grads[0].to(at::kFloat).contiguous();  // [...]
    at::Tensor ds = need_s ? at::empty_like(sc) : at::Tensor();    // [..., d] s's dtype
    at::Tensor dt = need_t ? at::empty_like(tc) : at::Tensor();    // [..., d] t's dtype
    CosineBwdParams p;
    p.shape = shape_of(sc, tc);
    p.s = sc.data_ptr();
    p.t = tc.data_ptr();
    p.stats = stats.data_ptr<float>();
    p.dcos = dcos.data_ptr<float>();
    p.ds = need_s ? ds.data_ptr() : nullptr;
    p.dt = need_t ? dt.data_ptr() : nullptr;
    check(cosine_backward(p, at::cuda::getCurrentCUDAStream().stream()), "backward");
    return {ds, dt};
  }
};

}  // namespace

at::Tensor fused_cosine_alignment(const at::Tensor& student, const at::Tensor& teacher) {
  TORCH_CHECK(student.dim() >= 1 && student.sizes() == teacher.sizes(),
              "fused_cosine_alignment: expected student and teacher of one shape [..., d], got ",
              student.sizes(), " and ", teacher.sizes());
  TORCH_CHECK(student.is_cuda() && teacher.device() == student.device(),
              "fused_cosine_alignment: expected both on one CUDA device, got ", student.device(), " and ",
              teacher.device());
  for (const at::Tensor* x : {&student, &teacher})
    TORCH_CHECK(x->scalar_type() == at::kFloat || x->scalar_type() == at::kBFloat16,
                "fused_cosine_alignment: expected float32 or bf16 inputs, got ", x->scalar_type());
  return CosineFunction::apply(student, teacher);
}

}  // namespace hedgelab::cuda
