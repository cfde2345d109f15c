// The LibTorch-facing side of the fused HedgeMamba scan: dtype/device handling, the workspace, the autograd
// Function, the plain parameter structs (scan_params.h) and registration into core/ops' dispatch. The kernels
// (scan_kernels.cu and the headers it includes) never see a LibTorch type.
//
// Backward. The kernels give dx, dB, dC, dS0, dn0, ddt_direct (Δ's gradient through the writes Δ_s B_s x_sᵀ)
// and reader_t = dnum_t·num_t. Δ and A also enter through log α_t = Δ_t A_h, i.e. through ℓ: every term of
// every output carries e^{ℓ_t − ℓ_s}, so ∂/∂ℓ_t = (terms where t is the reader) − (terms where t is the
// writer)
//   gℓ_t = reader_t + dden_t den_t − Δ_t ddt_direct_t   (+ ⟨dS_T, S_T⟩ + dn_T·n_T at t = T−1),
// and since ℓ_t = Σ_{r≤t} log α_r, g_logα_r = Σ_{t≥r} gℓ_t. Then ddt = ddt_direct + A_h g_logα and
// dA_h = Σ_{b,t} Δ g_logα.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/common/env.h"
#include "core/common/error.h"
#include "cuda/register.h"
#include "cuda/scan_params.h"

namespace hedgelab::cuda {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The kernels' operand type: bf16 for bf16 inputs, float (tf32 operands) for every other floating type.
at::ScalarType kernel_dtype(const at::Tensor& x) {
  return x.scalar_type() == at::kBFloat16 ? at::kBFloat16 : at::kFloat;
}

ScanShape shape_of(const at::Tensor& x, const at::Tensor& Bm) {
  ScanShape s;
  s.B = x.size(0);
  s.H = x.size(1);
  s.T = x.size(2);
  s.P = x.size(3);
  s.N = Bm.size(3);
  s.dtype = x.scalar_type() == at::kBFloat16 ? ScanDtype::kBFloat16 : ScanDtype::kFloat32;
  return s;
}

const float* opt_ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<float>() : nullptr;
}

at::Tensor opt_float(const at::Tensor& t) {
  return t.defined() ? t.to(at::kFloat).contiguous() : at::Tensor();
}

// An absent initial state travels through the autograd Function as an empty tensor (LibTorch 2.x refuses
// undefined inputs there); present() tells them apart.
bool present(const at::Tensor& t) {
  return t.defined() && t.numel() > 0;
}

void check(int code, const char* what) {
  TORCH_CHECK(code == 0, "hedgelab fused scan (", what, "): ", scan_error_string(code));
}

std::atomic<bool>& keep_states_flag() {
  static std::atomic<bool> keep{!env_switch("HEDGELAB_SCAN_RECOMPUTE_STATES", /*default_on=*/false)};
  return keep;
}

// Without HEDGELAB_SCAN_STATE_PASS: auto. Where it picks the sequential form (pythia-1b's recipe shapes) that
// form measured 0.66 ms against 1.09 ms for the parallel pair on an H100 (docs/results.md, 2026-12-07).
constexpr StatePass kDefaultStatePass = StatePass::kAuto;

StatePass state_pass_from_env() {
  return parse_scan_state_pass(std::getenv("HEDGELAB_SCAN_STATE_PASS"));
}

// Whether the fused linear attention normalises (and scales by the gain) through the mixer's read-out kernel
// (HEDGELAB_FUSED_LA_NORMALISE=1, opt-in: not yet run on a GPU) or with ATen's division and product (the
// default until it is measured).
std::atomic<bool>& la_read_out_flag() {
  static std::atomic<bool> on{env_switch("HEDGELAB_FUSED_LA_NORMALISE", /*default_on=*/false)};
  return on;
}

std::atomic<int>& state_pass_setting() {
  static std::atomic<int> pass{static_cast<int>(state_pass_from_env())};
  return pass;
}

// The kernels' scratch, from LibTorch's caching allocator; the tensors live as long as the struct. The
// backward can take the forward's kept states (and their vector part) instead of fresh scratch.
struct Workspace {
  at::Tensor ell, gram, states, n_states, adj, r_adj;
  ScanWorkspace ptrs;
  Workspace(const ScanShape& s, const at::TensorOptions& op_opts, bool backward,
            const at::Tensor& kept_states = {}, const at::Tensor& kept_n_states = {}) {
    const ScanWorkspaceSize z = scan_workspace(s);
    const auto f32 = op_opts.dtype(at::kFloat);
    ell = at::empty({z.ell}, f32);
    gram = at::empty({z.gram}, f32);
    const bool kept = kept_states.defined() && kept_states.numel() == z.states;
    states = kept ? kept_states : at::empty({z.states}, op_opts);
    n_states = kept ? kept_n_states : at::empty({z.n_states}, f32);
    ptrs.ell = ell.data_ptr<float>();
    ptrs.gram = gram.data_ptr<float>();
    ptrs.states = states.data_ptr();
    ptrs.n_states = n_states.data_ptr<float>();
    if (backward) {
      adj = at::empty({z.states}, op_opts);
      r_adj = at::empty({z.n_states}, f32);
      ptrs.adj = adj.data_ptr();
      ptrs.r_adj = r_adj.data_ptr<float>();
    }
  }
};

struct ScanFunction : public torch::autograd::Function<ScanFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& Bm,
                               const at::Tensor& Cm, const at::Tensor& dt, const at::Tensor& A,
                               const at::Tensor& S0, const at::Tensor& n0) {
    ctx->set_materialize_grads(false);
    const c10::cuda::CUDAGuard guard(x.device());
    const at::ScalarType kd = kernel_dtype(x);
    const at::Tensor xc = x.to(kd).contiguous();                        // [B, H, T, P]
    const at::Tensor Bc = Bm.to(kd).contiguous();                       // [B, H, T, N]
    const at::Tensor Cc = Cm.to(kd).contiguous();                       // [B, H, T, N]
    const at::Tensor dtc = dt.to(at::kFloat).contiguous();              // [B, H, T]
    const at::Tensor Ac = A.to(at::kFloat).contiguous();                // [H]
    const at::Tensor S0c = present(S0) ? opt_float(S0) : at::Tensor();  // [B, H, N, P] or undefined
    const at::Tensor n0c = present(n0) ? opt_float(n0) : at::Tensor();  // [B, H, N] or undefined
    const ScanShape s = shape_of(xc, Bc);
    const auto f32 = xc.options().dtype(at::kFloat);
    at::Tensor num = at::empty({s.B, s.H, s.T, s.P}, xc.options());  // [B, H, T, P] kernel dtype
    at::Tensor den = at::empty({s.B, s.H, s.T}, f32);                // [B, H, T]
    at::Tensor Sf = at::empty({s.B, s.H, s.N, s.P}, f32);            // [B, H, N, P]
    at::Tensor nf = at::empty({s.B, s.H, s.N}, f32);                 // [B, H, N]
    const Workspace ws(s, xc.options(), /*backward=*/false);

    ScanFwdParams p;
    p.shape = s;
    p.x = xc.data_ptr();
    p.Bm = Bc.data_ptr();
    p.Cm = Cc.data_ptr();
    p.dt = dtc.data_ptr<float>();
    p.A = Ac.data_ptr<float>();
    p.S0 = opt_ptr(S0c);
    p.n0 = opt_ptr(n0c);
    p.num = num.data_ptr();
    p.den = den.data_ptr<float>();
    p.S_final = Sf.data_ptr<float>();
    p.n_final = nf.data_ptr<float>();
    p.ws = ws.ptrs;
    p.state_pass = scan_state_pass();
    check(scan_forward(p, at::cuda::getCurrentCUDAStream().stream()), "forward");

    const bool keep = keep_scan_states();
    ctx->save_for_backward({xc, Bc, Cc, dtc, Ac, S0c, n0c, num, den, Sf, nf, keep ? ws.states : at::Tensor(),
                            keep ? ws.n_states : at::Tensor()});
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["B_dtype"] = static_cast<int64_t>(Bm.scalar_type());
    ctx->saved_data["C_dtype"] = static_cast<int64_t>(Cm.scalar_type());
    ctx->saved_data["dt_dtype"] = static_cast<int64_t>(dt.scalar_type());
    ctx->saved_data["A_dtype"] = static_cast<int64_t>(A.scalar_type());
    // den stays in float32, as the kernels accumulate it: the read-out that divides by it takes it so, and
    // rounding it to a bf16 x's dtype would cost every token ~3 significant digits of its normaliser.
    const at::ScalarType out = x.scalar_type();
    return {num.to(out), den, Sf.to(out), nf.to(out)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &xc = saved[0], &Bc = saved[1], &Cc = saved[2], &dtc = saved[3], &Ac = saved[4];
    const at::Tensor &S0c = saved[5], &n0c = saved[6], &num = saved[7], &den = saved[8];
    const at::Tensor &Sf = saved[9], &nf = saved[10];
    const at::Tensor &kept_states = saved[11], &kept_n_states = saved[12];  // undefined: recompute them
    const c10::cuda::CUDAGuard guard(xc.device());
    const ScanShape s = shape_of(xc, Bc);
    const auto f32 = xc.options().dtype(at::kFloat);
    auto dtype_of = [&](const char* key) {
      return static_cast<at::ScalarType>(ctx->saved_data[key].toInt());
    };

    const at::Tensor dnum =
        grads[0].defined() ? grads[0].to(xc.scalar_type()).contiguous() : at::zeros_like(xc);  // [B, H, T, P]
    const at::Tensor dden = opt_float(grads[1]);                                               // [B, H, T]
    const at::Tensor dS_T = opt_float(grads[2]);                                               // [B, H, N, P]
    const at::Tensor dn_T = opt_float(grads[3]);                                               // [B, H, N]

    at::Tensor dx = at::empty({s.B, s.H, s.T, s.P}, xc.options());  // [B, H, T, P] kernel dtype
    at::Tensor dB = at::empty({s.B, s.H, s.T, s.N}, xc.options());  // [B, H, T, N] kernel dtype
    at::Tensor dC = at::empty({s.B, s.H, s.T, s.N}, xc.options());  // [B, H, T, N] kernel dtype
    at::Tensor reader = at::zeros({s.B, s.H, s.T}, f32);            // [B, H, T]
    at::Tensor ddt_direct = at::zeros({s.B, s.H, s.T}, f32);        // [B, H, T]
    at::Tensor dS0 = at::empty({s.B, s.H, s.N, s.P}, f32);          // [B, H, N, P]
    at::Tensor dn0 = at::empty({s.B, s.H, s.N}, f32);               // [B, H, N]
    const Workspace ws(s, xc.options(), /*backward=*/true, kept_states, kept_n_states);

    ScanBwdParams p;
    p.states_kept = ws.states.data_ptr() == (kept_states.defined() ? kept_states.data_ptr() : nullptr);
    p.shape = s;
    p.x = xc.data_ptr();
    p.Bm = Bc.data_ptr();
    p.Cm = Cc.data_ptr();
    p.dt = dtc.data_ptr<float>();
    p.A = Ac.data_ptr<float>();
    p.S0 = opt_ptr(S0c);
    p.n0 = opt_ptr(n0c);
    p.num = num.data_ptr();
    p.dnum = dnum.data_ptr();
    p.dden = opt_ptr(dden);
    p.dS_T = opt_ptr(dS_T);
    p.dn_T = opt_ptr(dn_T);
    p.dx = dx.data_ptr();
    p.dB = dB.data_ptr();
    p.dC = dC.data_ptr();
    p.reader = reader.data_ptr<float>();
    p.ddt_direct = ddt_direct.data_ptr<float>();
    p.dS0 = dS0.data_ptr<float>();
    p.dn0 = dn0.data_ptr<float>();
    p.ws = ws.ptrs;
    p.state_pass = scan_state_pass();
    check(scan_backward(p, at::cuda::getCurrentCUDAStream().stream()), "backward");

    // The decay's share (see the top of this file).
    at::Tensor g_ell = reader - dtc * ddt_direct;    // [B, H, T]
    if (dden.defined()) g_ell = g_ell + dden * den;  // [B, H, T]
    if (s.T > 0 && (dS_T.defined() || dn_T.defined())) {
      at::Tensor last = at::zeros({s.B, s.H}, f32);                                // [B, H]
      if (dS_T.defined()) last = last + (dS_T * Sf).sum(at::IntArrayRef{-2, -1});  // [B, H]
      if (dn_T.defined()) last = last + (dn_T * nf).sum(-1);                       // [B, H]
      g_ell.select(2, s.T - 1).add_(last);
    }
    const at::Tensor g_log_alpha = at::flip(at::cumsum(at::flip(g_ell, {2}), 2), {2});  // [B, H, T]
    const at::Tensor ddt = ddt_direct + Ac.view({1, s.H, 1}) * g_log_alpha;             // [B, H, T]
    const at::Tensor dA = (dtc * g_log_alpha).sum(at::IntArrayRef{0, 2});               // [H]

    return {dx.to(dtype_of("x_dtype")),        dB.to(dtype_of("B_dtype")), dC.to(dtype_of("C_dtype")),
            ddt.to(dtype_of("dt_dtype")),      dA.to(dtype_of("A_dtype")), S0c.defined() ? dS0 : at::Tensor(),
            n0c.defined() ? dn0 : at::Tensor()};
  }
};

}  // namespace

ops::ScanOutput fused_hedge_mamba_scan(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                                       const at::Tensor& dt, const at::Tensor& A,
                                       const ops::ScanState* initial) {
  ops::detail::check_scan_inputs("fused_hedge_mamba_scan", x, Bm, Cm, dt, A, initial, /*same_dtype=*/false);
  TORCH_CHECK(x.is_cuda(), "fused_hedge_mamba_scan: expected CUDA tensors, got ", x.device());
  for (const at::Tensor* t : {&x, &Bm, &Cm, &dt, &A})
    TORCH_CHECK(c10::isFloatingType(t->scalar_type()),
                "fused_hedge_mamba_scan: expected floating inputs, got ", t->scalar_type());
  if (x.size(2) == 0 || x.size(3) == 0 ||
      Bm.size(3) == 0) {  // nothing to launch: the reference's empty outputs
    const at::ScalarType d = x.scalar_type();
    ops::ScanOutput r = ops::hedge_mamba_scan_chunked(x, Bm.to(d), Cm.to(d), dt.to(d), A.to(d), 64, initial);
    r.den = r.den.to(at::kFloat);  // [B, H, T], float32 as the kernels' den
    return r;
  }
  at::Tensor S0 = at::empty({0}, x.options().dtype(at::kFloat)), n0 = S0;  // absent (see present())
  if (initial) {
    TORCH_CHECK(initial->S.device() == x.device() && initial->n.device() == x.device(),
                "fused_hedge_mamba_scan: the initial state must be on ", x.device());
    S0 = initial->S;
    n0 = initial->n;
  }
  const variable_list out = ScanFunction::apply(x, Bm, Cm, dt, A, S0, n0);
  ops::ScanOutput r;
  r.num = out[0];
  r.den = out[1];
  r.final_state = {out[2], out[3]};
  return r;
}

at::Tensor fused_linear_attention(const at::Tensor& phi_q, const at::Tensor& phi_k, const at::Tensor& v,
                                  double eps, const ops::LinearAttentionState* initial,
                                  ops::LinearAttentionState* final_state, const at::Tensor& gain) {
  TORCH_CHECK(phi_q.dim() == 4 && phi_k.sizes() == phi_q.sizes() && v.dim() == 4 &&
                  v.size(0) == phi_q.size(0) && v.size(1) == phi_q.size(1) && v.size(2) == phi_q.size(2),
              "fused_linear_attention: expected phi_q, phi_k [B,H,T,N] and v [B,H,T,P], got ", phi_q.sizes(),
              ", ", phi_k.sizes(), ", ", v.sizes());
  const int64_t B = v.size(0), H = v.size(1), T = v.size(2);
  const auto f32 = v.options().dtype(at::kFloat);
  const at::Tensor dt = at::ones({B, H, T}, f32);  // [B, H, T] Δ ≡ 1: every token writes with weight 1
  const at::Tensor A = at::zeros({H}, f32);        // [H] α ≡ 1: no decay
  ops::ScanState start;
  if (initial) start = {initial->S, initial->z};
  const ops::ScanOutput out = fused_hedge_mamba_scan(v, phi_k.to(v.scalar_type()), phi_q.to(v.scalar_type()),
                                                     dt, A, initial ? &start : nullptr);
  if (final_state) *final_state = {out.final_state.S, out.final_state.n};
  const bool read_out =
      linear_attention_read_out() && (v.scalar_type() == at::kFloat || v.scalar_type() == at::kBFloat16);
  if (!read_out) {
    const at::Tensor y = out.num / (out.den.unsqueeze(-1) + eps);  // [B, H, T, P]
    return gain.defined() ? y * gain.view({1, -1, 1, 1}) : y;
  }
  // y = num / (den + eps) · gain in one pass forward and one backward: the mixer's read-out with D ≡ 0 and no
  // gate, in num's dtype (v's: float32 or bf16), heads merged; handed back as the [B,H,T,P] view of that
  // [B,T,d] tensor (merging the heads again, as the attention's dense projection does, is then free).
  const int64_t P = v.size(3);
  const at::Tensor D = at::zeros({H}, f32);                                               // [H]
  const at::Tensor g = gain.defined() ? gain.to(at::kFloat) : at::ones({H}, f32);         // [H]
  const at::Tensor y = fused_mixer_output(out.num, out.den, v, D, at::Tensor(), g, eps);  // [B, T, d]
  return y.view({B, T, H, P}).permute({0, 2, 1, 3});                                      // [B, H, T, P]
}

void set_keep_scan_states(bool keep) {
  keep_states_flag().store(keep);
}
bool keep_scan_states() {
  return keep_states_flag().load();
}

void set_linear_attention_read_out(bool on) {
  la_read_out_flag().store(on);
}
bool linear_attention_read_out() {
  return la_read_out_flag().load();
}

StatePass parse_scan_state_pass(const char* value) {
  if (!value || !*value) return kDefaultStatePass;
  if (std::strcmp(value, "auto") == 0) return StatePass::kAuto;
  if (std::strcmp(value, "sequential") == 0) return StatePass::kSequential;
  if (std::strcmp(value, "parallel") == 0) return StatePass::kParallel;
  throw Error("HEDGELAB_SCAN_STATE_PASS",
              std::string("expected sequential, parallel or auto, got \"") + value + "\"");
}

void set_scan_state_pass(StatePass pass) {
  state_pass_setting().store(static_cast<int>(pass));
}
StatePass scan_state_pass() {
  return static_cast<StatePass>(state_pass_setting().load());
}

void register_kernels() {
  static std::once_flag once;
  std::call_once(once, [] {
    ops::register_fused_scan(&fused_hedge_mamba_scan);
    ops::register_fused_scan_step(&fused_hedge_mamba_step);
    ops::register_fused_linear_attention(&fused_linear_attention);
    ops::register_fused_feature_map(&fused_hedgehog_features);
    ops::register_fused_cosine_alignment(&fused_cosine_alignment);
    ops::register_fused_causal_conv(&fused_causal_conv1d);
    ops::register_fused_mixer_output(&fused_mixer_output);
    ops::register_fused_rotary(&fused_rotary);
    ops::register_fused_logit_losses(&fused_logit_losses);
  });
}

namespace {
// Registration at load: the library is linked into hedgelab_core's consumers as object files
// (cuda/CMakeLists.txt), so this runs before main.
const bool g_registered = (register_kernels(), true);
}  // namespace

}  // namespace hedgelab::cuda
