#include "core/ops/hedge_mamba_scan_ref.h"

#include <vector>

#include "core/ops/chunking.h"

namespace hedgelab::ops {

ScanOutput hedge_mamba_scan_sequential(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                                       const at::Tensor& dt, const at::Tensor& A, const ScanState* initial) {
  detail::check_scan_inputs("hedge_mamba_scan_sequential", x, Bm, Cm, dt, A, initial, /*same_dtype=*/true);
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), P = x.size(3), N = Bm.size(3);
  at::Tensor S = initial ? initial->S : at::zeros({B, H, N, P}, x.options());  // [B, H, N, P]
  at::Tensor n = initial ? initial->n : at::zeros({B, H, N}, x.options());     // [B, H, N]
  std::vector<at::Tensor> nums, dens;
  for (int64_t t = 0; t < T; ++t) {
    const at::Tensor x_t = x.select(2, t);                     // [B, H, P]
    const at::Tensor B_t = Bm.select(2, t);                    // [B, H, N]
    const at::Tensor C_t = Cm.select(2, t);                    // [B, H, N]
    const at::Tensor dt_t = dt.select(2, t);                   // [B, H]
    const at::Tensor alpha = at::exp(dt_t * A).unsqueeze(-1);  // [B, H, 1]
    S = alpha.unsqueeze(-1) * S +
        (dt_t.unsqueeze(-1) * B_t).unsqueeze(-1) * x_t.unsqueeze(-2);  // [B, H, N, P]
    n = alpha * n + dt_t.unsqueeze(-1) * B_t;                          // [B, H, N]
    nums.push_back((C_t.unsqueeze(-1) * S).sum(-2));                   // [B, H, P]
    dens.push_back((C_t * n).sum(-1));                                 // [B, H]
  }
  if (T == 0) return {at::zeros({B, H, 0, P}, x.options()), at::zeros({B, H, 0}, x.options()), {S, n}};
  return {at::stack(nums, 2), at::stack(dens, 2), {S, n}};
}

ScanOutput hedge_mamba_scan_quadratic(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                                      const at::Tensor& dt, const at::Tensor& A, const ScanState* initial,
                                      at::Tensor* implied_out) {
  detail::check_scan_inputs("hedge_mamba_scan_quadratic", x, Bm, Cm, dt, A, initial, /*same_dtype=*/true);
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), P = x.size(3), N = Bm.size(3);
  const at::Tensor log_alpha = dt * A.view({1, H, 1});  // [B, H, T]

  const at::Tensor decay = at::exp(detail::segment_sums(log_alpha));                     // [B, H, T, T]
  const at::Tensor M = at::matmul(Cm, Bm.transpose(-1, -2)) * decay * dt.unsqueeze(-2);  // [B, H, T, T]
  if (implied_out) *implied_out = M;

  at::Tensor num = at::matmul(M, x);  // [B, H, T, P]
  at::Tensor den = M.sum(-1);         // [B, H, T]
  at::Tensor S, n;
  if (T == 0) {
    S = initial ? initial->S : at::zeros({B, H, N, P}, x.options());
    n = initial ? initial->n : at::zeros({B, H, N}, x.options());
    return {num, den, {S, n}};
  }
  // Final state: the last row of the decay, i.e. weights Δ_s e^{ℓ_T−ℓ_s}.
  const at::Tensor to_end = decay.select(2, T - 1) * dt;  // [B, H, T]
  const at::Tensor Bw = Bm * to_end.unsqueeze(-1);        // [B, H, T, N]
  S = at::matmul(Bw.transpose(-1, -2), x);                // [B, H, N, P]
  n = Bw.sum(-2);                                         // [B, H, N]
  if (initial) {
    const at::Tensor from_start = at::exp(at::cumsum(log_alpha, -1));  // [B, H, T] e^{ℓ_t}, ℓ from the start
    num = num + from_start.unsqueeze(-1) * at::matmul(Cm, initial->S);              // [B, H, T, P]
    den = den + from_start * at::matmul(Cm, initial->n.unsqueeze(-1)).squeeze(-1);  // [B, H, T]
    const at::Tensor total = from_start.select(2, T - 1);                           // [B, H]
    S = S + total.unsqueeze(-1).unsqueeze(-1) * initial->S;
    n = n + total.unsqueeze(-1) * initial->n;
  }
  return {num, den, {S, n}};
}

}  // namespace hedgelab::ops
