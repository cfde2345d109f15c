#include "core/ops/hedge_mamba_scan.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "core/common/env.h"
#include "core/ops/chunking.h"
#include "core/ops/dispatch_tally.h"

namespace hedgelab::ops {

namespace detail {

void check_scan_inputs(const char* fn, const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                       const at::Tensor& dt, const at::Tensor& A, const ScanState* initial, bool same_dtype) {
  TORCH_CHECK(x.defined() && Bm.defined() && Cm.defined() && dt.defined() && A.defined(), fn,
              ": undefined input tensor");
  TORCH_CHECK(x.dim() == 4, fn, ": x must be [B,H,T,P], got ", x.sizes());
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), P = x.size(3);
  TORCH_CHECK(Bm.dim() == 4 && Bm.size(0) == B && Bm.size(1) == H && Bm.size(2) == T, fn,
              ": Bm must be [B,H,T,N] matching x ", x.sizes(), ", got ", Bm.sizes());
  const int64_t N = Bm.size(3);
  TORCH_CHECK(Cm.sizes() == Bm.sizes(), fn, ": Cm ", Cm.sizes(), " must match Bm ", Bm.sizes());
  TORCH_CHECK(dt.sizes() == at::IntArrayRef({B, H, T}), fn, ": dt must be [B,H,T] = [", B, ",", H, ",", T,
              "], got ", dt.sizes());
  TORCH_CHECK(A.sizes() == at::IntArrayRef({H}), fn, ": A must be [H] = [", H, "], got ", A.sizes());
  for (const at::Tensor* t : {&Bm, &Cm, &dt, &A})
    TORCH_CHECK(t->device() == x.device(), fn, ": inputs must be on one device (x is on ", x.device(),
                ", got ", t->device(), ")");
  if (same_dtype) {
    TORCH_CHECK(c10::isFloatingType(x.scalar_type()), fn, ": expected floating-point inputs, got ",
                x.scalar_type());
    for (const at::Tensor* t : {&Bm, &Cm, &dt, &A})
      TORCH_CHECK(t->scalar_type() == x.scalar_type(), fn, ": inputs must share x's dtype ", x.scalar_type(),
                  ", got ", t->scalar_type());
  }
  if (initial) {
    TORCH_CHECK(initial->S.defined() && initial->n.defined(), fn, ": initial state has undefined S or n");
    TORCH_CHECK(initial->S.sizes() == at::IntArrayRef({B, H, N, P}), fn, ": initial S must be [B,H,N,P] = [",
                B, ",", H, ",", N, ",", P, "], got ", initial->S.sizes());
    TORCH_CHECK(initial->n.sizes() == at::IntArrayRef({B, H, N}), fn, ": initial n must be [B,H,N] = [", B,
                ",", H, ",", N, "], got ", initial->n.sizes());
  }
}

}  // namespace detail

ScanState hedge_mamba_zero_state(int64_t B, int64_t H, int64_t N, int64_t P,
                                 const at::TensorOptions& options) {
  return {at::zeros({B, H, N, P}, options), at::zeros({B, H, N}, options)};
}

ScanOutput hedge_mamba_scan_chunked(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                                    const at::Tensor& dt, const at::Tensor& A, int64_t chunk,
                                    const ScanState* initial) {
  detail::check_scan_inputs("hedge_mamba_scan_chunked", x, Bm, Cm, dt, A, initial, /*same_dtype=*/true);
  TORCH_CHECK(chunk > 0, "hedge_mamba_scan_chunked: chunk must be positive, got ", chunk);
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), P = x.size(3), N = Bm.size(3);
  const ScanState start = initial ? *initial : hedge_mamba_zero_state(B, H, N, P, x.options());
  if (T == 0) return {at::zeros({B, H, 0, P}, x.options()), at::zeros({B, H, 0}, x.options()), start};

  const int64_t L = std::min(chunk, T);
  const int64_t nc = (T + L - 1) / L;
  // Padded tokens have Δ = 0: α = 1 and no write, so the state passes through them unchanged.
  const int64_t pad = nc * L - T;

  const at::Tensor xc = detail::to_chunks(detail::pad_tokens(x, pad), L);    // [B, H, nc, L, P]
  const at::Tensor Bc = detail::to_chunks(detail::pad_tokens(Bm, pad), L);   // [B, H, nc, L, N]
  const at::Tensor Cc = detail::to_chunks(detail::pad_tokens(Cm, pad), L);   // [B, H, nc, L, N]
  const at::Tensor dtc = detail::to_chunks(detail::pad_tokens(dt, pad), L);  // [B, H, nc, L]
  const at::Tensor log_alpha = dtc * A.view({1, H, 1, 1});                   // [B, H, nc, L]
  // ℓ relative to the chunk's start (inclusive): a sum of terms ≤ 0, never a difference.
  const at::Tensor ell = at::cumsum(log_alpha, -1);  // [B, H, nc, L]

  // Inside a chunk: M_ts = (C_t·B_s) Δ_s e^{ℓ_t−ℓ_s}, exactly 0 above the diagonal (segment_sums gives −inf).
  const at::Tensor decay = at::exp(detail::segment_sums(log_alpha));                      // [B, H, nc, L, L]
  const at::Tensor M = at::matmul(Cc, Bc.transpose(-1, -2)) * decay * dtc.unsqueeze(-2);  // [B, H, nc, L, L]
  at::Tensor num = at::matmul(M, xc);                                                     // [B, H, nc, L, P]
  at::Tensor den = M.sum(-1);                                                             // [B, H, nc, L]

  // What each chunk writes into the state by its end: token s weighted by Δ_s e^{ℓ_end−ℓ_s} (≤ Δ_s).
  const at::Tensor to_end = decay.select(-2, L - 1) * dtc;          // [B, H, nc, L]
  const at::Tensor Bw = Bc * to_end.unsqueeze(-1);                  // [B, H, nc, L, N]
  const at::Tensor S_local = at::matmul(Bw.transpose(-1, -2), xc);  // [B, H, nc, N, P]
  const at::Tensor n_local = Bw.sum(-2);                            // [B, H, nc, N]
  const at::Tensor chunk_decay = at::exp(ell.select(-1, L - 1));    // [B, H, nc]

  // Between chunks: S_end(c) = e^{ℓ_end(c)} S_end(c−1) + S_local(c). A product per chunk, not a difference of
  // long cumulative sums, so strong early decay cannot cost precision later.
  std::vector<at::Tensor> S_before, n_before;
  S_before.reserve(nc);
  n_before.reserve(nc);
  at::Tensor S = start.S, n = start.n;  // [B, H, N, P], [B, H, N]
  for (int64_t c = 0; c < nc; ++c) {
    S_before.push_back(S);
    n_before.push_back(n);
    const at::Tensor carry = chunk_decay.select(2, c);                 // [B, H]
    S = carry.unsqueeze(-1).unsqueeze(-1) * S + S_local.select(2, c);  // [B, H, N, P]
    n = carry.unsqueeze(-1) * n + n_local.select(2, c);                // [B, H, N]
  }
  const at::Tensor S_prev = at::stack(S_before, 2);  // [B, H, nc, N, P]
  const at::Tensor n_prev = at::stack(n_before, 2);  // [B, H, nc, N]

  // The carried state reaches token t of the chunk decayed by e^{ℓ_t} (≤ 1).
  const at::Tensor from_start = at::exp(ell);                                 // [B, H, nc, L]
  num = num + from_start.unsqueeze(-1) * at::matmul(Cc, S_prev);              // [B, H, nc, L, P]
  den = den + from_start * at::matmul(Cc, n_prev.unsqueeze(-1)).squeeze(-1);  // [B, H, nc, L]

  return {detail::from_chunks(num, T), detail::from_chunks(den, T), {S, n}};
}

namespace {

// The step's shapes: x_t [B,H,P], B_t, C_t [B,H,N], dt_t [B,H], A [H], state undefined or S [B,H,N,P],
// n [B,H,N].
void check_step_inputs(const ScanState& state, const at::Tensor& x_t, const at::Tensor& B_t,
                       const at::Tensor& C_t, const at::Tensor& dt_t, const at::Tensor& A) {
  TORCH_CHECK(x_t.dim() == 3 && B_t.dim() == 3,
              "hedge_mamba_step: expected x_t [B,H,P] and B_t [B,H,N], got ", x_t.sizes(), ", ", B_t.sizes());
  const int64_t B = x_t.size(0), H = x_t.size(1), P = x_t.size(2), N = B_t.size(2);
  TORCH_CHECK(B_t.size(0) == B && B_t.size(1) == H, "hedge_mamba_step: B_t ", B_t.sizes(),
              " does not match x_t ", x_t.sizes());
  TORCH_CHECK(C_t.sizes() == B_t.sizes(), "hedge_mamba_step: C_t ", C_t.sizes(), " must match B_t ",
              B_t.sizes());
  TORCH_CHECK(dt_t.sizes() == at::IntArrayRef({B, H}), "hedge_mamba_step: dt_t must be [B,H], got ",
              dt_t.sizes());
  TORCH_CHECK(A.sizes() == at::IntArrayRef({H}), "hedge_mamba_step: A must be [H], got ", A.sizes());
  if (state.S.defined())
    TORCH_CHECK(state.S.sizes() == at::IntArrayRef({B, H, N, P}) && state.n.defined() &&
                    state.n.sizes() == at::IntArrayRef({B, H, N}),
                "hedge_mamba_step: state must be S [B,H,N,P], n [B,H,N] = [", B, ",", H, ",", N, ",", P, "]");
}

std::atomic<ScanStepFn> g_fused_step{nullptr};
// On by default (measured in docs/results.md, 2026-12-07); HEDGELAB_FUSED_SCAN_STEP=0 turns it off.
std::atomic<bool> g_prefer_fused_step{env_switch("HEDGELAB_FUSED_SCAN_STEP", /*default_on=*/true)};

}  // namespace

ScanStepOutput hedge_mamba_step_reference(const ScanState& state, const at::Tensor& x_t,
                                          const at::Tensor& B_t, const at::Tensor& C_t,
                                          const at::Tensor& dt_t, const at::Tensor& A) {
  check_step_inputs(state, x_t, B_t, C_t, dt_t, A);
  const int64_t B = x_t.size(0), H = x_t.size(1), P = x_t.size(2), N = B_t.size(2);
  const ScanState prev = state.S.defined() ? state : hedge_mamba_zero_state(B, H, N, P, x_t.options());

  const at::Tensor alpha = at::exp(dt_t * A.unsqueeze(0));  // [B, H]
  const at::Tensor write = B_t * dt_t.unsqueeze(-1);        // [B, H, N]
  ScanStepOutput out;
  out.state.S =
      alpha.unsqueeze(-1).unsqueeze(-1) * prev.S + write.unsqueeze(-1) * x_t.unsqueeze(-2);  // [B, H, N, P]
  out.state.n = alpha.unsqueeze(-1) * prev.n + write;                                        // [B, H, N]
  out.num = at::matmul(C_t.unsqueeze(-2), out.state.S).squeeze(-2);                          // [B, H, P]
  out.den = (C_t * out.state.n).sum(-1);                                                     // [B, H]
  return out;
}

void register_fused_scan_step(ScanStepFn fn) {
  g_fused_step.store(fn);
}
ScanStepFn registered_fused_scan_step() {
  return g_fused_step.load();
}
void set_prefer_fused_scan_step(bool prefer) {
  g_prefer_fused_step.store(prefer);
}
bool prefer_fused_scan_step() {
  return g_prefer_fused_step.load();
}

ScanStepOutput hedge_mamba_step(const ScanState& state, const at::Tensor& x_t, const at::Tensor& B_t,
                                const at::Tensor& C_t, const at::Tensor& dt_t, const at::Tensor& A) {
  const ScanStepFn fused = g_fused_step.load();
  if (fused && x_t.defined() && x_t.is_cuda()) {
    const at::ScalarType d = x_t.scalar_type();
    bool one_dtype = d == at::kFloat || d == at::kBFloat16, needs_grad = false;
    for (const at::Tensor* t : {&x_t, &B_t, &C_t, &dt_t, &A, &state.S, &state.n}) {
      if (!t->defined()) continue;
      one_dtype = one_dtype && t->scalar_type() == d && t->device() == x_t.device();
      needs_grad = needs_grad || t->requires_grad();
    }
    // The kernel has no backward: a step that asks for gradients takes the reference.
    if (take_fused("hedge_mamba_step", g_prefer_fused_step.load(),
                   one_dtype && !(needs_grad && at::GradMode::is_enabled()))) {
      check_step_inputs(state, x_t, B_t, C_t, dt_t, A);
      return fused(state, x_t, B_t, C_t, dt_t, A);
    }
  }
  return hedge_mamba_step_reference(state, x_t, B_t, C_t, dt_t, A);
}

// ---- dispatch
// -----------------------------------------------------------------------------------------------

namespace {
std::atomic<ScanFn> g_fused_scan{nullptr};
// HEDGELAB_REFERENCE_KERNELS=1 in the environment starts a process on the reference path (cuda/README.md).
std::atomic<bool> g_use_reference_scan{env_switch("HEDGELAB_REFERENCE_KERNELS", /*default_on=*/false)};
}  // namespace

void register_fused_scan(ScanFn fn) {
  g_fused_scan.store(fn);
}
ScanFn registered_fused_scan() {
  return g_fused_scan.load();
}
void set_use_reference_scan(bool use_reference) {
  g_use_reference_scan.store(use_reference);
}
bool use_reference_scan() {
  return g_use_reference_scan.load();
}

ScanOutput hedge_mamba_scan(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                            const at::Tensor& dt, const at::Tensor& A, int64_t chunk,
                            const ScanState* initial) {
  const ScanFn fused = g_fused_scan.load();
  if (fused && x.defined() && x.is_cuda() &&
      take_fused("hedge_mamba_scan", /*prefer=*/true, /*supported=*/true)) {
    // dtypes are the kernel's business (bf16/fp16 in, fp32 accumulation), so only shapes and device here.
    detail::check_scan_inputs("hedge_mamba_scan", x, Bm, Cm, dt, A, initial, /*same_dtype=*/false);
    return fused(x, Bm, Cm, dt, A, initial);
  }
  // Under autocast the inputs arrive in mixed dtypes (bf16 projections, float32 softplus and feature maps):
  // the ATen form runs them in the widest one.
  if (x.defined() && Bm.defined() && Cm.defined() && dt.defined() && A.defined()) {
    const at::ScalarType t = at::promote_types(
        at::promote_types(at::promote_types(x.scalar_type(), Bm.scalar_type()), Cm.scalar_type()),
        at::promote_types(dt.scalar_type(), A.scalar_type()));
    if (x.scalar_type() != t || Bm.scalar_type() != t || Cm.scalar_type() != t || dt.scalar_type() != t ||
        A.scalar_type() != t)
      return hedge_mamba_scan_chunked(x.to(t), Bm.to(t), Cm.to(t), dt.to(t), A.to(t), chunk, initial);
  }
  return hedge_mamba_scan_chunked(x, Bm, Cm, dt, A, chunk, initial);
}

}  // namespace hedgelab::ops
