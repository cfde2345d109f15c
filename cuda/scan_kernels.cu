// Launches of the fused chunked HedgeMamba scan, forward and backward (scan_params.h has the maths, the
// contract and the split into passes; the kernels are in scan_state_kernels.cuh and scan_chunk_kernels.cuh).
// Plain CUDA C++: no LibTorch type is seen here.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/scan_chunk_kernels.cuh"
#include "cuda/scan_params.h"
#include "cuda/scan_state_kernels.cuh"

namespace hedgelab::cuda {
namespace {

using namespace detail;

int64_t chunks(const ScanShape& s) {
  return (s.T + kL - 1) / kL;
}

template <typename Op>
constexpr int state_smem() {
  return 2 * tile_bytes<Op>() + kStageBytes + kL * 4;
}
template <typename Op>
constexpr int state_sequential_smem() {
  return 4 * tile_bytes<Op>() + kStageBytes + (2 * kL + 2 * kTile) * 4;
}
template <typename Op>
constexpr int chunk_out_smem() {
  return 4 * tile_bytes<Op>() + kStageBytes + (2 * kL + kTile) * 4;
}
template <typename Op>
constexpr int gram_smem() {
  return 2 * tile_bytes<Op>();
}
template <typename Op>
constexpr int chunk_bc_smem() {
  return 6 * tile_bytes<Op>() + kL * kLdF * 4 + (3 * kL + 2 * kTile) * 4;
}

int64_t tiles(int64_t n) {
  return (n + kTile - 1) / kTile;
}

constexpr int kNoFit = 100000;  // not a cudaError_t: the kernel's shared memory exceeds the GPU's

// The most dynamic shared memory a block of this GPU may opt in to.
int smem_limit(int& limit) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  return (int)e;
}

template <typename Kernel, typename Args>
int launch(Kernel kernel, dim3 grid, int smem, const Args& args, cudaStream_t stream) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return 0;
  int limit = 0;
  if (int e = smem_limit(limit)) return e;
  if (smem > limit) return kNoFit;
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e != cudaSuccess) return (int)e;
  kernel<<<grid, kThreads, smem, stream>>>(args);
  return (int)cudaGetLastError();
}

int launch_ell(const ScanShape& s, const float* dt, const float* A, float* ell, cudaStream_t stream) {
  const int64_t nc = chunks(s);
  chunk_ell_kernel<<<dim3((unsigned)nc, (unsigned)(s.B * s.H)), kL, 0, stream>>>(dt, A, ell, s.T, s.H, nc);
  return (int)cudaGetLastError();
}

// One walk over the chunks of E-element states per (b, h): 256 threads a block, 16 bytes of Elem a thread.
template <typename Elem, bool kReverse>
int launch_walk(const ScanShape& s, void* states, const float* ell, const float* init, float* out, int64_t E,
                cudaStream_t stream) {
  StateWalkArgs w;
  w.states = states;
  w.ell = ell;
  w.init = init;
  w.out = out;
  w.E = E, w.nc = chunks(s);
  constexpr int kWalk = 256, kPerBlock = kWalk * (16 / (int)sizeof(Elem));
  const dim3 grid((unsigned)((E + kPerBlock - 1) / kPerBlock), (unsigned)(s.B * s.H));
  state_walk_kernel<Elem, kReverse><<<grid, kWalk, 0, stream>>>(w);
  return (int)cudaGetLastError();
}

// The sequential form when asked, or (kAuto) when its blocks are at least two a multiprocessor.
int sequential_pass(const ScanShape& s, StatePass pass, bool& sequential) {
  if (pass != StatePass::kAuto) {
    sequential = pass == StatePass::kSequential;
    return 0;
  }
  int dev = 0, sms = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return (int)e;
  sequential = tiles(s.N) * tiles(s.P) * s.B * s.H >= 2 * (int64_t)sms;
  return 0;
}

// The state pass (scan_params.h, step 2). Sequential: state_sequential_kernel. Parallel: every chunk's share
// (chunk_state_kernel), then the walk over the chunks of the matrix state and of the vector state
// (state_walk_kernel).
template <typename Op, bool kReverse>
int launch_state(const ScanShape& s, const StatePassArgs& a, StatePass pass, cudaStream_t stream) {
  bool sequential = false;
  if (int e = sequential_pass(s, pass, sequential)) return e;
  if (sequential) {
    const dim3 grid((unsigned)(tiles(s.N) * tiles(s.P)), (unsigned)(s.B * s.H));
    return launch(state_sequential_kernel<Op, kReverse>, grid, state_sequential_smem<Op>(), a, stream);
  }
  const dim3 grid((unsigned)(tiles(s.N) * tiles(s.P)), (unsigned)chunks(s), (unsigned)(s.B * s.H));
  if (int e = launch(chunk_state_kernel<Op, kReverse>, grid, state_smem<Op>(), a, stream)) return e;
  if (int e = launch_walk<Op, kReverse>(s, a.states, a.ell, a.S_init, a.S_out, s.N * s.P, stream)) return e;
  return launch_walk<float, kReverse>(s, a.vstates, a.ell, a.v_init, a.v_out, s.N, stream);
}

// G_c = A_c B_cᵀ for every chunk c of every (b, h) into ws.gram.
template <typename Op>
int launch_gram(const ScanShape& s, const void* A, const void* B, int64_t W, float* G, cudaStream_t stream) {
  ChunkGramArgs g;
  g.A = A;
  g.B = B;
  g.G = G;
  g.T = s.T, g.W = W, g.nc = chunks(s);
  const dim3 grid((unsigned)chunks(s), (unsigned)(s.B * s.H));
  return launch(chunk_gram_kernel<Op>, grid, gram_smem<Op>(), g, stream);
}

template <typename Op, bool kDx>
int launch_out(const ScanShape& s, const ChunkOutArgs& a, cudaStream_t stream) {
  const dim3 grid((unsigned)tiles(s.P), (unsigned)chunks(s), (unsigned)(s.B * s.H));
  return launch(chunk_out_kernel<Op, kDx>, grid, chunk_out_smem<Op>(), a, stream);
}

template <typename Op>
int launch_bc(const ScanShape& s, const ChunkBCArgs& a, cudaStream_t stream) {
  const dim3 grid((unsigned)tiles(s.N), (unsigned)chunks(s), (unsigned)(s.B * s.H));
  return launch(chunk_bc_kernel<Op>, grid, chunk_bc_smem<Op>(), a, stream);
}

// The forward state pass's arguments: S ← e^{ℓ_end} S + Bᵀ(w ∘ x) from S0, n0, the states entering each chunk
// stored in ws (the forward keeps the final state as well; the backward's recomputation does not).
StatePassArgs forward_state_args(const ScanShape& s, const void* Bm, const void* x, const float* dt,
                                 const float* S0, const float* n0, const ScanWorkspace& ws) {
  StatePassArgs st;
  st.K = Bm;
  st.V = x;
  st.dt = dt;
  st.ell = ws.ell;
  st.S_init = S0;
  st.v_init = n0;
  st.states = ws.states;
  st.vstates = ws.n_states;
  st.T = s.T, st.N = s.N, st.P = s.P, st.nc = chunks(s);
  return st;
}

template <typename Op>
int forward(const ScanFwdParams& p, cudaStream_t stream) {
  const ScanShape& s = p.shape;
  const int64_t nc = chunks(s);
  if (int e = launch_ell(s, p.dt, p.A, p.ws.ell, stream)) return e;

  StatePassArgs st = forward_state_args(s, p.Bm, p.x, p.dt, p.S0, p.n0, p.ws);
  st.S_out = p.S_final;
  st.v_out = p.n_final;
  if (int e = launch_state<Op, false>(s, st, p.state_pass, stream)) return e;
  if (int e = launch_gram<Op>(s, p.Cm, p.Bm, s.N, p.ws.gram, stream)) return e;

  ChunkOutArgs o;
  o.Q = p.Cm;
  o.gram = p.ws.gram;
  o.V = p.x;
  o.states = p.ws.states;
  o.vstates = p.ws.n_states;
  o.dt = p.dt;
  o.ell = p.ws.ell;
  o.out = p.num;
  o.den = p.den;
  o.T = s.T, o.N = s.N, o.P = s.P, o.nc = nc;
  return launch_out<Op, false>(s, o, stream);
}

template <typename Op>
int backward(const ScanBwdParams& p, cudaStream_t stream) {
  const ScanShape& s = p.shape;
  const int64_t nc = chunks(s);
  if (int e = launch_ell(s, p.dt, p.A, p.ws.ell, stream)) return e;

  // The forward's states again, unless the forward kept them (p.states_kept).
  if (!p.states_kept)
    if (int e = launch_state<Op, false>(s, forward_state_args(s, p.Bm, p.x, p.dt, p.S0, p.n0, p.ws),
                                        p.state_pass, stream))
      return e;

  StatePassArgs rv;
  rv.K = p.Cm;
  rv.V = p.dnum;
  rv.dt = p.dt;
  rv.ell = p.ws.ell;
  rv.vcol = p.dden;
  rv.S_init = p.dS_T;
  rv.v_init = p.dn_T;
  rv.states = p.ws.adj;
  rv.vstates = p.ws.r_adj;
  rv.S_out = p.dS0;
  rv.v_out = p.dn0;
  rv.T = s.T, rv.N = s.N, rv.P = s.P, rv.nc = nc;
  if (int e = launch_state<Op, true>(s, rv, p.state_pass, stream)) return e;

  if (int e = launch_gram<Op>(s, p.Bm, p.Cm, s.N, p.ws.gram, stream)) return e;
  ChunkOutArgs dx;
  dx.Q = p.Bm;
  dx.gram = p.ws.gram;
  dx.V = p.dnum;
  dx.states = p.ws.adj;
  dx.dt = p.dt;
  dx.ell = p.ws.ell;
  dx.out = p.dx;
  dx.num = p.num;
  dx.reader = p.reader;
  dx.T = s.T, dx.N = s.N, dx.P = s.P, dx.nc = nc;
  if (int e = launch_out<Op, true>(s, dx, stream)) return e;

  // The dx pass is done with B Cᵀ (stream order): the Gram buffer takes dnum xᵀ.
  if (int e = launch_gram<Op>(s, p.dnum, p.x, s.P, p.ws.gram, stream)) return e;

  ChunkBCArgs bc;
  bc.x = p.x;
  bc.dnum = p.dnum;
  bc.Bm = p.Bm;
  bc.Cm = p.Cm;
  bc.states = p.ws.states;
  bc.adj = p.ws.adj;
  bc.n_states = p.ws.n_states;
  bc.r_adj = p.ws.r_adj;
  bc.dt = p.dt;
  bc.ell = p.ws.ell;
  bc.dden = p.dden;
  bc.dB = p.dB;
  bc.dC = p.dC;
  bc.ddt_direct = p.ddt_direct;
  bc.gram = p.ws.gram;
  bc.T = s.T, bc.N = s.N, bc.P = s.P, bc.nc = nc;
  return launch_bc<Op>(s, bc, stream);
}

}  // namespace

ScanWorkspaceSize scan_workspace(const ScanShape& s) {
  ScanWorkspaceSize w;
  w.chunks = chunks(s);
  w.ell = s.B * s.H * w.chunks * kL;
  w.n_states = s.B * s.H * w.chunks * s.N;
  w.states = s.B * s.H * w.chunks * s.N * s.P;
  w.gram = s.B * s.H * w.chunks * kL * kL;
  return w;
}

int scan_forward(const ScanFwdParams& p, void* stream) {
  if (p.shape.B == 0 || p.shape.H == 0 || p.shape.T == 0 || p.shape.P == 0 || p.shape.N == 0) return 0;
  const auto st = static_cast<cudaStream_t>(stream);
  return p.shape.dtype == ScanDtype::kBFloat16 ? forward<__nv_bfloat16>(p, st) : forward<float>(p, st);
}

int scan_backward(const ScanBwdParams& p, void* stream) {
  if (p.shape.B == 0 || p.shape.H == 0 || p.shape.T == 0 || p.shape.P == 0 || p.shape.N == 0) return 0;
  const auto st = static_cast<cudaStream_t>(stream);
  return p.shape.dtype == ScanDtype::kBFloat16 ? backward<__nv_bfloat16>(p, st) : backward<float>(p, st);
}

const char* scan_error_string(int code) {
  if (code == kNoFit) return "the fused scan's kernels need more shared memory a block than this GPU offers";
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

}  // namespace hedgelab::cuda
