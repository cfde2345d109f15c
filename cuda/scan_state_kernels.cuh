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

// Step 2 in one kernel, the other way round: one block per (N tile × P tile, b·h) carries a 64 × 64 tile of
// the state in float32 accumulators through the chunks, forward (c = 0 … nc−1) or in reverse, and at each
// chunk stores it (the state entering chunk c, or the adjoint leaving it), then applies the chunk's update
//   S ← e^{ℓ_end} S + ΔS_c (ΔS_c as in chunk_state_kernel), and the same for the vector state.
// The shares never reach memory: the states are written once, where the parallel pass writes the shares and
// the walk reads and rewrites them. The price is parallelism: ⌈N/64⌉·⌈P/64⌉·B·H blocks, each walking the
// chunks in order, so the launcher picks this pass only when that fills the GPU (scan_kernels.cu).
// Latency is hidden by a two-buffer pipeline: chunk c+1's tiles are copied asynchronously into the other
// shared buffer, and the raw ℓ and Δ of its rows loaded, while chunk c is multiplied; each thread then
// scales the V rows it copied itself, so a chunk costs one block barrier. The vector share is split over all
// 128 threads (two halves of the chunk's tokens); the second half's partial sum reaches the first half
// through shared memory and is added one chunk later, behind the next barrier.
// Blocks a multiprocessor: 4 for bf16 (55 KB of shared memory each), 2 for float (88 KB).
template <typename Op, bool kReverse>
__global__ void __launch_bounds__(kThreads, sizeof(Op) == 2 ? 4 : 2)
    state_sequential_kernel(StatePassArgs a) {
  using M = Mma<Op>;
  using Regs = TileRegs<Op>;
  extern __shared__ __align__(128) unsigned char sm[];
  // Buffer b: K [L × 64] at tile 2b, u ∘ V [L × 64] at tile 2b + 1.
  auto Ks = [&](int b) { return reinterpret_cast<Op*>(sm + 2 * b * tile_bytes<Op>()); };
  auto Vs = [&](int b) { return reinterpret_cast<Op*>(sm + (2 * b + 1) * tile_bytes<Op>()); };
  float* stage = reinterpret_cast<float*>(sm + 4 * tile_bytes<Op>());  // [64 × kLdF]
  float* vw = stage + kTile * kLdF;                                    // [2][L] vector weights
  float* vpart = vw + 2 * kL;                                          // [2][64] second halves' shares

  const int64_t T = a.T, N = a.N, P = a.P, nc = a.nc;
  const int64_t tiles_n = (N + kTile - 1) / kTile;
  const int64_t n0 = (int64_t)(blockIdx.x % tiles_n) * kTile, p0 = (int64_t)(blockIdx.x / tiles_n) * kTile;
  const int64_t bh = blockIdx.y;
  const int tid = threadIdx.x, w = tid / 32;
  const Op* K = static_cast<const Op*>(a.K) + bh * T * N;
  const Op* V = static_cast<const Op*>(a.V) + bh * T * P;
  const float* dt = a.dt + bh * T;
  const float* ell = a.ell + bh * nc * kL;
  const float* vcol = a.vcol ? a.vcol + bh * T : nullptr;
  Op* states = static_cast<Op*>(a.states) + bh * nc * N * P;
  const bool vec_block = p0 == 0;
  const bool vK = vec_ok(K, N), vV = vec_ok(V, P);
  const int ve = tid % kTile, half = tid / kTile;  // the vector entry n0 + ve, tokens 32·half … 32·half+31

  FragAcc<Op> acc[4];
  if (a.S_init) {
    const float* S0 = a.S_init + bh * N * P;
    for (int idx = tid; idx < kTile * kTile; idx += kThreads) {
      const int r = idx / kTile, col = idx % kTile;
      stage[r * kLdF + col] = (n0 + r < N && p0 + col < P) ? S0[(n0 + r) * P + p0 + col] : 0.f;
    }
    __syncthreads();
    stage_load<Op>(acc, stage);
  } else {
    zero<Op>(acc);
  }
  float vstate = 0.f;  // entry n0 + ve of the vector state (half 0 of P tile 0 carries it)
  if (vec_block && half == 0 && a.v_init && n0 + ve < N) vstate = a.v_init[bh * N + n0 + ve];

  // What is in flight for the next chunk besides its tiles: ℓ and (forward) Δ of the rows this thread
  // copied, ℓ at the chunk's end, and the vector weight's inputs of token tid (threads < L).
  float ell_row[Regs::kCount], dt_row[Regs::kCount], ell_end = 0.f, ell_tok = 0.f, col_tok = 0.f;
  auto chunk_of = [&](int64_t i) { return kReverse ? nc - 1 - i : i; };
  auto fetch = [&](int64_t c, int b) {
    const int64_t t0 = c * kL;
    const float* ellc = ell + c * kL;
    tile_async(Ks(b), K, T, N, t0, n0, vK);
    tile_async(Vs(b), V, T, P, t0, p0, vV);
    async_commit();
#pragma unroll
    for (int k = 0; k < Regs::kCount; ++k) {
      const int r = Regs::row_of(k);
      ell_row[k] = ellc[r];
      if (!kReverse) dt_row[k] = t0 + r < T ? dt[t0 + r] : 0.f;
    }
    ell_end = ellc[kL - 1];
    if (vec_block && tid < kL) {
      const int64_t t = t0 + tid;
      ell_tok = ellc[tid];
      col_tok = kReverse ? ((vcol && t < T) ? vcol[t] : 0.f) : (t < T ? dt[t] : 0.f);
    }
  };

  fetch(chunk_of(0), 0);
  float g_prev = 0.f, s_prev = 0.f;  // the previous chunk's decay and this thread's half of its vector share
#pragma unroll 1
  for (int64_t i = 0; i < nc; ++i) {
    const int64_t c = chunk_of(i);
    const int buf = (int)(i & 1);
    // Chunk c's copies have landed: this thread's V rows times u (forward Δ_s e^{ℓ_end − ℓ_s}, reverse
    // e^{ℓ_t}).
    async_wait_all();
    {
      float scale[Regs::kCount];
#pragma unroll
      for (int k = 0; k < Regs::kCount; ++k)
        scale[k] = kReverse ? __expf(ell_row[k]) : dt_row[k] * __expf(ell_end - ell_row[k]);
      scale_own_groups(Vs(buf), scale);
    }
    if (vec_block && tid < kL)
      vw[buf * kL + tid] = kReverse ? __expf(ell_tok) * col_tok : col_tok * __expf(ell_end - ell_tok);
    const float g = __expf(ell_end);
    __syncthreads();  // buffer buf is complete; buffer buf^1 (read a chunk ago) is free
    if (i + 1 < nc) fetch(chunk_of(i + 1), buf ^ 1);

    // The previous chunk's vector update, completed with the other half's share, then the state as it is
    // before this chunk's update.
    if (vec_block && half == 0) {
      if (i > 0) vstate = g_prev * vstate + s_prev + vpart[(buf ^ 1) * kTile + ve];
      if (n0 + ve < N) a.vstates[(bh * nc + c) * N + n0 + ve] = vstate;
    }
    stage_store<Op>(stage, acc);
    warp_store_rows(stage, states + c * N * P, N, P, n0, p0, [](int, float v) { return v; });

#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < acc[j].num_elements; ++e)
        acc[j].x[e] *= g;
    warp_mma<Op, wmma::col_major, wmma::row_major>(acc, Ks(buf) + 16 * w, M::kLd, Vs(buf), M::kLd);
    if (vec_block) {
      const Op* kc = Ks(buf) + 32 * half * M::kLd + ve;
      const float* wv = vw + buf * kL + 32 * half;
      float s0 = 0.f, s1 = 0.f;
#pragma unroll
      for (int t = 0; t < 32; t += 2) {
        s0 += M::to_float(kc[t * M::kLd]) * wv[t];
        s1 += M::to_float(kc[(t + 1) * M::kLd]) * wv[t + 1];
      }
      if (half == 0)
        s_prev = s0 + s1;
      else
        vpart[buf * kTile + ve] = s0 + s1;
    }
    g_prev = g;
  }
  if (a.S_out) {
    stage_store<Op>(stage, acc);
    warp_store_rows(stage, a.S_out + bh * N * P, N, P, n0, p0, [](int, float v) { return v; });
  }
  __syncthreads();  // the last chunk's second-half vector share is visible
  if (vec_block && half == 0) {
    vstate = g_prev * vstate + s_prev + vpart[(int)((nc - 1) & 1) * kTile + ve];
    if (a.v_out && n0 + ve < N) a.v_out[bh * N + n0 + ve] = vstate;
  }
}

}  // namespace hedgelab::cuda::detail
