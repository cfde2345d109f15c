// The state part of the scan (scan_params.h, steps 1 and 2): ℓ inside every chunk, and the state pass that
// stores the state entering (forward) or the adjoint leaving (reverse) every chunk: every chunk's own share
// in parallel, then one element-wise walk over the chunks. Plain CUDA.
#pragma once

#include "cuda/scan_device.cuh"

namespace hedgelab::cuda::detail {

// ℓ_i = Σ_{r≤i} Δ_r A_h inside each chunk (restarting at 0), padded tokens Δ = 0. Grid (nc, B·H), kL threads.
__global__ void __launch_bounds__(kL)
    chunk_ell_kernel(const float* dt, const float* A, float* ell, int64_t T, int64_t H, int64_t nc) {
  __shared__ float warp_total;
  const int64_t c = blockIdx.x, bh = blockIdx.y;
  const int i = threadIdx.x, lane = i % 32;
  const int64_t t = c * kL + i;
  float v = t < T ? dt[bh * T + t] * A[bh % H] : 0.f;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const float n = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += n;
  }
  if (i == 31) warp_total = v;
  __syncthreads();
  if (i >= 32) v += warp_total;
  ell[bh * nc * kL + t] = v;
}

struct StatePassArgs {
  const void* K = nullptr;     // [BH,T,N]: Bm (forward) or Cm (reverse)
  const void* V = nullptr;     // [BH,T,P]: x (forward) or dnum (reverse)
  const float* dt = nullptr;   // [BH,T]
  const float* ell = nullptr;  // [BH,nc·L]
  const float* vcol =
      nullptr;  // [BH,T]: the vector state's column (reverse: dden; null: ones forward, zeros reverse)
  const float* S_init = nullptr;  // [BH,N,P] or null: S0 (forward) or dS_T (reverse)
  const float* v_init = nullptr;  // [BH,N] or null: n0 or dn_T
  void* states = nullptr;         // [BH,nc,N,P] Op: the state entering (leaving) each chunk
  float* vstates = nullptr;       // [BH,nc,N]
  float* S_out = nullptr;         // [BH,N,P] or null: S_T (forward) or dS0 (reverse)
  float* v_out = nullptr;         // [BH,N] or null
  int64_t T = 0, N = 0, P = 0, nc = 0;
};

// Step 2, first half: every chunk's own share of the state, all chunks at once (the state it would leave
// from a zero state entering it):
//   forward:  ΔS_c = Bᵀ (u ∘ x),    u_s = Δ_s e^{ℓ_end − ℓ_s},   Δn_c = Bᵀ u;
//   reverse:  ΔR_c = Cᵀ (u ∘ dnum), u_t = e^{ℓ_t},               Δr_c = Cᵀ (u ∘ dden),
// written into states[c] and vstates[c], which state_walk_kernel then turns, in place, into the states
// entering (forward) or the adjoints leaving (reverse) every chunk. One block per (N tile × P tile, chunk,
// b·h); the blocks of P tile 0 also write the vector share (one thread an entry).
template <typename Op, bool kReverse>
__global__ void __launch_bounds__(kThreads, 4) chunk_state_kernel(StatePassArgs a) {
  using M = Mma<Op>;
  extern __shared__ __align__(128) unsigned char sm[];
  Op* Ks = reinterpret_cast<Op*>(sm);                                  // [L × 64] K, raw
  Op* Vs = reinterpret_cast<Op*>(sm + tile_bytes<Op>());               // [L × 64] u ∘ V
  float* stage = reinterpret_cast<float*>(sm + 2 * tile_bytes<Op>());  // [64 × kLdF]
  float* vw = stage + kTile * kLdF;                                    // [L] the vector share's weights

  const int64_t T = a.T, N = a.N, P = a.P, nc = a.nc;
  const int64_t tiles_n = (N + kTile - 1) / kTile;
  const int64_t n0 = (int64_t)(blockIdx.x % tiles_n) * kTile, p0 = (int64_t)(blockIdx.x / tiles_n) * kTile;
  const int64_t c = blockIdx.y, bh = blockIdx.z, t0 = c * kL;
  const int tid = threadIdx.x, w = tid / 32;
  const Op* K = static_cast<const Op*>(a.K) + bh * T * N;
  const Op* V = static_cast<const Op*>(a.V) + bh * T * P;
  const float* dt = a.dt + bh * T;
  const float* ellc = a.ell + (bh * nc + c) * kL;
  const float* vcol = a.vcol ? a.vcol + bh * T : nullptr;
  const bool vec_block = p0 == 0;

  TileRegs<Op> rK, rV;
  rK.fetch(K, T, N, t0, n0, vec_ok(K, N));
  rV.fetch(V, T, P, t0, p0, vec_ok(V, P));
  const float ell_end = ellc[kL - 1];
  float scale[TileRegs<Op>::kCount];  // the row factor u of each of this thread's V groups
#pragma unroll
  for (int k = 0; k < TileRegs<Op>::kCount; ++k) {
    const int r = TileRegs<Op>::row_of(k);
    scale[k] = kReverse ? __expf(ellc[r]) : (t0 + r < T ? dt[t0 + r] * __expf(ell_end - ellc[r]) : 0.f);
  }
  if (vec_block && tid < kL) {
    const int64_t t = t0 + tid;
    if (kReverse)
      vw[tid] = (vcol && t < T) ? __expf(ellc[tid]) * vcol[t] : 0.f;
    else
      vw[tid] = t < T ? dt[t] * __expf(ell_end - ellc[tid]) : 0.f;
  }
  rK.put(Ks);
  rV.put(Vs, scale);
  __syncthreads();

  FragAcc<Op> acc[4];
  zero<Op>(acc);
  warp_mma<Op, wmma::col_major, wmma::row_major>(acc, Ks + 16 * w, M::kLd, Vs, M::kLd);
  stage_store<Op>(stage, acc);
  warp_store_rows(stage, static_cast<Op*>(a.states) + (bh * nc + c) * N * P, N, P, n0, p0,
                  [](int, float v) { return v; });
  if (vec_block && tid < kTile && n0 + tid < N) {
    float s = 0.f;
    for (int t = 0; t < kL; ++t)
      s += M::to_float(Ks[t * M::kLd + tid]) * vw[t];
    a.vstates[(bh * nc + c) * N + n0 + tid] = s;
  }
}

struct StateWalkArgs {
  void* states = nullptr;       // [BH,nc,E] Elem: every chunk's share on entry, the states on exit
  const float* ell = nullptr;   // [BH,nc·L]
  const float* init = nullptr;  // [BH,E] or null (zeros): S0, n0 (forward) or dS_T, dn_T (reverse)
  float* out = nullptr;         // [BH,E] or null: S_T, n_T (forward) or dS0, dn0 (reverse)
  int64_t E = 0, nc = 0;
};

// Step 2, second half, the only sequential part: element by element, S ← S0, then for every chunk c in
// order (reverse: from the last) store S into states[c] and S ← e^{ℓ_end(c)} S + states[c]'s share. A
// thread carries 16 bytes' worth of elements in float32 and has the next chunk's share in flight while it
// writes this one's state; blocks of 256 threads over (E, b·h).
template <typename Elem, bool kReverse>
__global__ void __launch_bounds__(256) state_walk_kernel(StateWalkArgs a) {
  using M = Mma<Elem>;
  constexpr int V = 16 / (int)sizeof(Elem);
  const int64_t E = a.E, nc = a.nc, bh = blockIdx.y;
  const int64_t e0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * V;
  if (e0 >= E) return;
  Elem* base = static_cast<Elem*>(a.states) + bh * nc * E + e0;
  const int n = E - e0 < V ? (int)(E - e0) : V;
  const bool vec = n == V && E % V == 0 && aligned16(base);
  const float* ell = a.ell + bh * nc * kL + kL - 1;  // ell[c·L]: ℓ at the end of chunk c

  auto load = [&](int64_t c, float(&v)[V]) {
    const Elem* p = base + c * E;
    if (vec) {
      alignas(16) Elem e[V];
      *reinterpret_cast<uint4*>(e) = __ldcs(reinterpret_cast<const uint4*>(p));
#pragma unroll
      for (int i = 0; i < V; ++i)
        v[i] = M::to_float(e[i]);
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i)
        v[i] = i < n ? M::to_float(p[i]) : 0.f;
    }
  };
  auto store = [&](int64_t c, const float(&v)[V]) {
    Elem* p = base + c * E;
    if (vec) {
      alignas(16) Elem e[V];
#pragma unroll
      for (int i = 0; i < V; ++i)
        e[i] = M::from_float(v[i]);
      *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(e);
    } else {
      for (int i = 0; i < n; ++i)
        p[i] = M::from_float(v[i]);
    }
  };

  float S[V], share[V];
#pragma unroll
  for (int i = 0; i < V; ++i)
    S[i] = (a.init && i < n) ? a.init[bh * E + e0 + i] : 0.f;
  auto chunk_of = [&](int64_t i) { return kReverse ? nc - 1 - i : i; };
  load(chunk_of(0), share);
  for (int64_t i = 0; i < nc; ++i) {
    const int64_t c = chunk_of(i);
    float cur[V];
#pragma unroll
    for (int k = 0; k < V; ++k)
      cur[k] = share[k];
    if (i + 1 < nc) load(chunk_of(i + 1), share);  // in flight while this chunk's state is written
    const float g = __expf(ell[c * kL]);
    store(c, S);
#pragma unroll
    for (int k = 0; k < V; ++k)
      S[k] = g * S[k] + cur[k];
  }
  if (a.out)
    for (int i = 0; i < n; ++i)
      a.out[bh * E + e0 + i] = S[i];
}

}  // namespace hedgelab::cuda::detail
