#include "core/ops/linear_attention.h"

#include <algorithm>
#include <atomic>
#include <tuple>

#include "core/common/env.h"
#include "core/ops/chunking.h"
#include "core/ops/dispatch_tally.h"

namespace hedgelab::ops {

namespace {

std::atomic<LinearAttentionFn> g_fused_linear_attention{nullptr};
std::atomic<bool> g_prefer_fused{env_switch("HEDGELAB_FUSED_LINEAR_ATTENTION", /*default_on=*/true)};

void check_inputs(const char* fn, const at::Tensor& phi_q, const at::Tensor& phi_k, const at::Tensor& v,
                  bool same_dtype = true) {
  TORCH_CHECK(phi_q.dim() == 4 && phi_k.dim() == 4 && v.dim() == 4, fn,
              ": expected phi_q, phi_k [B,H,T,N] and v [B,H,T,P], got ", phi_q.sizes(), ", ", phi_k.sizes(),
              ", ", v.sizes());
  TORCH_CHECK(phi_q.sizes() == phi_k.sizes(), fn, ": phi_q ", phi_q.sizes(), " and phi_k ", phi_k.sizes(),
              " differ");
  TORCH_CHECK(v.size(0) == phi_q.size(0) && v.size(1) == phi_q.size(1) && v.size(2) == phi_q.size(2), fn,
              ": v ", v.sizes(), " does not match phi_q ", phi_q.sizes(), " in [B,H,T]");
  TORCH_CHECK(
      !same_dtype || (phi_q.scalar_type() == phi_k.scalar_type() && phi_q.scalar_type() == v.scalar_type()),
      fn, ": phi_q, phi_k and v must share a dtype");
  TORCH_CHECK(c10::isFloatingType(v.scalar_type()) && c10::isFloatingType(phi_q.scalar_type()) &&
                  c10::isFloatingType(phi_k.scalar_type()),
              fn, ": expected floating-point tensors");
}

// Under autocast φ(q), φ(k) (float32 softmaxes) and v (a bf16 projection) arrive in different dtypes: the
// ATen forms run them in the widest.
std::tuple<at::Tensor, at::Tensor, at::Tensor> common_dtype(const at::Tensor& phi_q, const at::Tensor& phi_k,
                                                            const at::Tensor& v) {
  if (!phi_q.defined() || !phi_k.defined() || !v.defined() ||
      (phi_q.scalar_type() == v.scalar_type() && phi_k.scalar_type() == v.scalar_type()))
    return {phi_q, phi_k, v};
  const at::ScalarType t =
      at::promote_types(at::promote_types(phi_q.scalar_type(), phi_k.scalar_type()), v.scalar_type());
  return {phi_q.to(t), phi_k.to(t), v.to(t)};
}

void check_state(const char* fn, const LinearAttentionState& s, int64_t B, int64_t H, int64_t N, int64_t P) {
  TORCH_CHECK(s.S.defined() && s.z.defined(), fn, ": state has undefined S or z");
  TORCH_CHECK(s.S.sizes() == at::IntArrayRef({B, H, N, P}), fn, ": state S must be [B,H,N,P] = [", B, ",", H,
              ",", N, ",", P, "], got ", s.S.sizes());
  TORCH_CHECK(s.z.sizes() == at::IntArrayRef({B, H, N}), fn, ": state z must be [B,H,N] = [", B, ",", H, ",",
              N, "], got ", s.z.sizes());
}

}  // namespace

at::Tensor linear_attention_quadratic(const at::Tensor& phi_q_in, const at::Tensor& phi_k_in,
                                      const at::Tensor& v_in, double eps, at::Tensor* weights_out) {
  const auto [phi_q, phi_k, v] = common_dtype(phi_q_in, phi_k_in, v_in);
  check_inputs("linear_attention_quadratic", phi_q, phi_k, v);
  const int64_t T = phi_q.size(2);
  const at::Tensor a = at::matmul(phi_q, phi_k.transpose(-1, -2))
                           .masked_fill(detail::future_mask(T, phi_q.device()), 0.0);  // [B, H, T, T]
  const at::Tensor den = a.sum(-1, /*keepdim=*/true);                                  // [B, H, T, 1]
  const at::Tensor weights = a / (den + eps);                                          // [B, H, T, T]
  if (weights_out) *weights_out = weights;
  return at::matmul(weights, v);  // [B, H, T, P]
}

namespace {

// The chunked ATen form itself (checked inputs, one dtype), without the gain.
at::Tensor chunked_form(const at::Tensor& phi_q, const at::Tensor& phi_k, const at::Tensor& v, int64_t chunk,
                        double eps, const LinearAttentionState* initial, LinearAttentionState* final_state) {
  const int64_t B = phi_q.size(0), H = phi_q.size(1), T = phi_q.size(2), N = phi_q.size(3), P = v.size(3);

  if (T == 0) {
    if (final_state) *final_state = initial ? *initial : linear_attention_zero_state(B, H, N, P, v.options());
    return at::zeros({B, H, 0, P}, v.options());
  }
  const int64_t L = std::min(chunk, T);
  const int64_t nc = (T + L - 1) / L;
  const int64_t pad = nc * L - T;  // zero keys add nothing to any sum; padded rows are dropped

  const at::Tensor q = detail::to_chunks(detail::pad_tokens(phi_q, pad), L);  // [B, H, nc, L, N]
  const at::Tensor k = detail::to_chunks(detail::pad_tokens(phi_k, pad), L);  // [B, H, nc, L, N]
  const at::Tensor vc = detail::to_chunks(detail::pad_tokens(v, pad), L);     // [B, H, nc, L, P]

  // Inside a chunk: the quadratic form with the causal mask.
  const at::Tensor a = at::matmul(q, k.transpose(-1, -2))
                           .masked_fill(detail::future_mask(L, v.device()), 0.0);  // [B, H, nc, L, L]
  at::Tensor num = at::matmul(a, vc);                                              // [B, H, nc, L, P]
  at::Tensor den = a.sum(-1);                                                      // [B, H, nc, L]

  // Between chunks: each chunk's contribution to the state, summed over the chunks before it (no decay here).
  const at::Tensor S_local = at::matmul(k.transpose(-1, -2), vc);  // [B, H, nc, N, P]
  const at::Tensor z_local = k.sum(-2);                            // [B, H, nc, N]
  const at::Tensor S_through = at::cumsum(S_local, 2);             // [B, H, nc, N, P] state after each chunk
  const at::Tensor z_through = at::cumsum(z_local, 2);             // [B, H, nc, N]
  // State before chunk c = state after chunk c−1: shift by one rather than subtract, to avoid cancellation.
  at::Tensor S_before = at::cat({at::zeros_like(S_through.slice(2, 0, 1)), S_through.slice(2, 0, nc - 1)}, 2);
  at::Tensor z_before = at::cat({at::zeros_like(z_through.slice(2, 0, 1)), z_through.slice(2, 0, nc - 1)}, 2);
  at::Tensor S_final = S_through.select(2, nc - 1);  // [B, H, N, P]
  at::Tensor z_final = z_through.select(2, nc - 1);  // [B, H, N]
  if (initial) {
    S_before = S_before + initial->S.unsqueeze(2);
    z_before = z_before + initial->z.unsqueeze(2);
    S_final = S_final + initial->S;
    z_final = z_final + initial->z;
  }
  num = num + at::matmul(q, S_before);                            // [B, H, nc, L, P]
  den = den + at::matmul(q, z_before.unsqueeze(-1)).squeeze(-1);  // [B, H, nc, L]

  if (final_state) *final_state = {S_final, z_final};
  const at::Tensor y = num / (den + eps).unsqueeze(-1);  // [B, H, nc, L, P]
  return detail::from_chunks(y, T);                      // [B, H, T, P]
}

}  // namespace

at::Tensor linear_attention_chunked(const at::Tensor& phi_q_in, const at::Tensor& phi_k_in,
                                    const at::Tensor& v_in, int64_t chunk, double eps,
                                    const LinearAttentionState* initial, LinearAttentionState* final_state,
                                    const at::Tensor& gain) {
  const LinearAttentionFn fused = g_fused_linear_attention.load();
  const bool use_fused = fused && v_in.defined() && v_in.is_cuda() &&
                         take_fused("linear_attention", g_prefer_fused.load(), /*supported=*/true);
  // The fused kernel takes mixed dtypes (it runs φ in v's dtype, as autocast would for a matmul).
  const auto [phi_q, phi_k, v] =
      use_fused ? std::make_tuple(phi_q_in, phi_k_in, v_in) : common_dtype(phi_q_in, phi_k_in, v_in);
  check_inputs("linear_attention_chunked", phi_q, phi_k, v, /*same_dtype=*/!use_fused);
  TORCH_CHECK(chunk > 0, "linear_attention_chunked: chunk must be positive, got ", chunk);
  const int64_t B = phi_q.size(0), H = phi_q.size(1), N = phi_q.size(3), P = v.size(3);
  if (initial) check_state("linear_attention_chunked", *initial, B, H, N, P);
  TORCH_CHECK(!gain.defined() || (gain.dim() == 1 && gain.size(0) == H),
              "linear_attention_chunked: gain must be [H] = [", H, "], got ", gain.sizes());
  if (use_fused) return fused(phi_q, phi_k, v, eps, initial, final_state, gain);
  const at::Tensor y = chunked_form(phi_q, phi_k, v, chunk, eps, initial, final_state);  // [B, H, T, P]
  return gain.defined() ? y * gain.view({1, -1, 1, 1}) : y;
}

LinearAttentionState linear_attention_zero_state(int64_t B, int64_t H, int64_t N, int64_t P,
                                                 const at::TensorOptions& options) {
  return {at::zeros({B, H, N, P}, options), at::zeros({B, H, N}, options)};
}

LinearAttentionStep linear_attention_recurrent_step(const LinearAttentionState& state,
                                                    const at::Tensor& phi_q_t, const at::Tensor& phi_k_t,
                                                    const at::Tensor& v_t, double eps) {
  TORCH_CHECK(phi_q_t.dim() == 3 && phi_k_t.dim() == 3 && v_t.dim() == 3,
              "linear_attention_recurrent_step: expected phi_q_t, phi_k_t [B,H,N] and v_t [B,H,P], got ",
              phi_q_t.sizes(), ", ", phi_k_t.sizes(), ", ", v_t.sizes());
  TORCH_CHECK(phi_q_t.sizes() == phi_k_t.sizes(), "linear_attention_recurrent_step: phi_q_t ",
              phi_q_t.sizes(), " and phi_k_t ", phi_k_t.sizes(), " differ");
  TORCH_CHECK(v_t.size(0) == phi_q_t.size(0) && v_t.size(1) == phi_q_t.size(1),
              "linear_attention_recurrent_step: v_t ", v_t.sizes(), " does not match phi_q_t ",
              phi_q_t.sizes());
  const int64_t B = phi_q_t.size(0), H = phi_q_t.size(1), N = phi_q_t.size(2), P = v_t.size(2);
  const LinearAttentionState prev =
      state.S.defined() ? state : linear_attention_zero_state(B, H, N, P, v_t.options());
  check_state("linear_attention_recurrent_step", prev, B, H, N, P);

  LinearAttentionStep out;
  out.state.S = prev.S + phi_k_t.unsqueeze(-1) * v_t.unsqueeze(-2);                   // [B, H, N, P]
  out.state.z = prev.z + phi_k_t;                                                     // [B, H, N]
  const at::Tensor num = at::matmul(phi_q_t.unsqueeze(-2), out.state.S).squeeze(-2);  // [B, H, P]
  const at::Tensor den = (phi_q_t * out.state.z).sum(-1, /*keepdim=*/true);           // [B, H, 1]
  out.y = num / (den + eps);                                                          // [B, H, P]
  return out;
}

void register_fused_linear_attention(LinearAttentionFn fn) {
  g_fused_linear_attention.store(fn);
}
LinearAttentionFn registered_fused_linear_attention() {
  return g_fused_linear_attention.load();
}
void set_prefer_fused_linear_attention(bool prefer) {
  g_prefer_fused.store(prefer);
}
bool prefer_fused_linear_attention() {
  return g_prefer_fused.load();
}

}  // namespace hedgelab::ops
