// The LibTorch-facing side of the fused decoding step (scan_step_params.h has the maths): checks and the
// plain parameter struct. The kernel (scan_step_kernels.cu) never sees a LibTorch type. The reference is
// ops::hedge_mamba_step_reference; the step is for decoding, so it has no backward (the dispatch in
// core/ops takes the reference whenever a gradient is asked).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda/register.h"
#include "cuda/scan_step_params.h"

namespace hedgelab::cuda {

ops::ScanStepOutput fused_hedge_mamba_step(const ops::ScanState& state, const at::Tensor& x_t,
                                           const at::Tensor& B_t, const at::Tensor& C_t,
                                           const at::Tensor& dt_t, const at::Tensor& A) {
  TORCH_CHECK(
      x_t.dim() == 3 && B_t.dim() == 3 && C_t.sizes() == B_t.sizes() && dt_t.dim() == 2 && A.dim() == 1,
      "fused_hedge_mamba_step: expected x_t [B,H,P], B_t and C_t [B,H,N], dt_t [B,H], A [H], got ",
      x_t.sizes(), ", ", B_t.sizes(), ", ", C_t.sizes(), ", ", dt_t.sizes(), ", ", A.sizes());
  const at::ScalarType d = x_t.scalar_type();
  TORCH_CHECK(x_t.is_cuda() && (d == at::kFloat || d == at::kBFloat16),
              "fused_hedge_mamba_step: expected CUDA float32 or bf16 operands, got ", x_t.device(), " ", d);
  for (const at::Tensor* t : {&B_t, &C_t, &dt_t, &A, &state.S, &state.n})
    TORCH_CHECK(!t->defined() || (t->scalar_type() == d && t->device() == x_t.device()),
                "fused_hedge_mamba_step: every operand must be ", d, " on ", x_t.device());
  const int64_t B = x_t.size(0), H = x_t.size(1), P = x_t.size(2), N = B_t.size(2);
  TORCH_CHECK(
      B_t.size(0) == B && B_t.size(1) == H && dt_t.size(0) == B && dt_t.size(1) == H && A.size(0) == H,
      "fused_hedge_mamba_step: B and H differ between the operands");
  const bool has_state = state.S.defined();
  TORCH_CHECK(!has_state || (state.S.sizes() == at::IntArrayRef({B, H, N, P}) && state.n.defined() &&
                             state.n.sizes() == at::IntArrayRef({B, H, N})),
              "fused_hedge_mamba_step: state must be S [B,H,N,P], n [B,H,N]");
  const c10::cuda::CUDAGuard guard(x_t.device());
  const at::Tensor x = x_t.contiguous(), Bm = B_t.contiguous(), Cm = C_t.contiguous();  // [B,H,P], [B,H,N] ×2
  const at::Tensor dt = dt_t.contiguous(), Ac = A.contiguous();                         // [B,H], [H]
  const at::Tensor S = has_state ? state.S.contiguous() : at::Tensor();                 // [B,H,N,P]
  const at::Tensor n = has_state ? state.n.contiguous() : at::Tensor();                 // [B,H,N]
  ops::ScanStepOutput out;
  out.state.S = at::empty({B, H, N, P}, x.options());  // [B, H, N, P]
  out.state.n = at::empty({B, H, N}, x.options());     // [B, H, N]
  out.num = at::empty({B, H, P}, x.options());         // [B, H, P]
  out.den = at::empty({B, H}, x.options());            // [B, H]
  ScanStepParams p;
  p.B = B, p.H = H, p.N = N, p.P = P;
  p.dtype = d == at::kBFloat16 ? ScanDtype::kBFloat16 : ScanDtype::kFloat32;
  p.S = has_state ? S.data_ptr() : nullptr;
  p.n = has_state ? n.data_ptr() : nullptr;
  p.x = x.data_ptr();
  p.Bm = Bm.data_ptr();
  p.Cm = Cm.data_ptr();
  p.dt = dt.data_ptr();
  p.A = Ac.data_ptr();
  p.S_out = out.state.S.data_ptr();
  p.n_out = out.state.n.data_ptr();
  p.num = out.num.data_ptr();
  p.den = out.den.data_ptr();
  const int code = scan_step(p, at::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(code == 0, "hedgelab fused scan step: ", scan_error_string(code));
  return out;
}

}  // namespace hedgelab::cuda
