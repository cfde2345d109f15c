// The parallel part of the scan (scan_params.h, step 3): every (tile, chunk, b·h) at once, from the states
// the state pass stored. Plain CUDA.
#pragma once

#include "cuda/scan_device.cuh"

namespace hedgelab::cuda::detail {

// The chunk's Gram matrix of two token-major operands, shared by every value or state tile of the chunk:
// forward C·Bᵀ, backward B·Cᵀ (dx) and dnum·xᵀ (dB, dC), each once a chunk rather than once a tile.
struct ChunkGramArgs {
  const void* A = nullptr;  // [BH,T,W] Op
  const void* B = nullptr;  // [BH,T,W] Op
  float* G = nullptr;       // [BH,nc,L,L]: G_c[i][j] = A_{cL+i} · B_{cL+j}, zero past T
  int64_t T = 0, W = 0, nc = 0;
};

// One block per (chunk, b·h); the W axis is walked in 64-wide tiles, the next tile's loads in flight while
// this one is multiplied; warp w writes rows 16w … 16w+15 straight from its accumulators.
template <typename Op>
__global__ void __launch_bounds__(kThreads, 4) chunk_gram_kernel(ChunkGramArgs a) {
  constexpr int ld = Mma<Op>::kLd;
  extern __shared__ __align__(128) unsigned char sm[];
  Op* As = reinterpret_cast<Op*>(sm);                     // [L × 64] A, one W tile
  Op* Bs = reinterpret_cast<Op*>(sm + tile_bytes<Op>());  // [L × 64] B, one W tile
  const int64_t T = a.T, W = a.W, c = blockIdx.x, bh = blockIdx.y, t0 = c * kL;
  const int w = threadIdx.x / 32;
  const Op* A = static_cast<const Op*>(a.A) + bh * T * W;
  const Op* B = static_cast<const Op*>(a.B) + bh * T * W;
  const bool vA = vec_ok(A, W), vB = vec_ok(B, W);
  TileRegs<Op> rA, rB;
  rA.fetch(A, T, W, t0, 0, vA);
  rB.fetch(B, T, W, t0, 0, vB);
  FragAcc<Op> acc[4];
  zero<Op>(acc);
  for (int64_t w0 = 0; w0 < W; w0 += kTile) {
    __syncthreads();
    rA.put(As);
    rB.put(Bs);
    __syncthreads();
    if (w0 + kTile < W) {
      rA.fetch(A, T, W, t0, w0 + kTile, vA);
      rB.fetch(B, T, W, t0, w0 + kTile, vB);
    }
    warp_mma<Op, wmma::row_major, wmma::col_major>(acc, As + 16 * w * ld, ld, Bs, ld);
  }
  float* G = a.G + (bh * a.nc + c) * kL * kL + (size_t)16 * w * kL;
#pragma unroll
  for (int j = 0; j < 4; ++j)
    wmma::store_matrix_sync(G + 16 * j, acc[j], kL, wmma::mem_row_major);
}

// A chunk's Gram rows r0 … r0+nrows−1 (global, row stride L) into a float tile of row stride kLdF, threads
// `first` … `first`+`count`−1 of the block taking turns with 16-byte loads.
__device__ inline void load_gram_rows(float* dst, const float* G, int r0, int nrows, int first, int count) {
  for (int idx = (int)threadIdx.x - first; idx < nrows * kL / 4; idx += count) {
    const int i = r0 + idx / (kL / 4), j = (idx % (kL / 4)) * 4;
    *reinterpret_cast<float4*>(dst + i * kLdF + j) = __ldg(reinterpret_cast<const float4*>(G + i * kL + j));
  }
}

struct ChunkOutArgs {
  const void* Q = nullptr;         // [BH,T,N]: Cm (forward) or Bm (dx)
  const float* gram = nullptr;     // [BH,nc,L,L]: Q Kᵀ a chunk, K = Bm (forward) or Cm (dx)
  const void* V = nullptr;         // [BH,T,P]: x (forward) or dnum (dx)
  const void* states = nullptr;    // [BH,nc,N,P] Op: S entering (forward) or R leaving (dx) each chunk
  const float* vstates = nullptr;  // [BH,nc,N]: n entering each chunk (forward)
  const float* dt = nullptr;       // [BH,T]
  const float* ell = nullptr;      // [BH,nc·L]
  void* out = nullptr;             // [BH,T,P] Op: num (forward) or dx
  float* den = nullptr;            // [BH,T] (forward; written by P tile 0)
  const void* num = nullptr;       // [BH,T,P] Op (dx: the forward's num, for the reader term)
  float* reader = nullptr;         // [BH,T] accumulated: dnum_t·num_t (dx)
  int64_t T = 0, N = 0, P = 0, nc = 0;
};

// out_i = post_i · ( pre_i · Q_i Sᵀ-side + Σ_j pair(i, j) (Q_i·K_j) V_j ) over the chunk's tokens i, j:
//   forward: out = num,  pre = e^{ℓ_i}, pair = [j ≤ i] Δ_j e^{ℓ_i−ℓ_j}, post = 1; den_i = pre_i Q_i·n + Σ_j
//   pair (Q_i·K_j); dx:      out = dx,   pre = e^{ℓ_end−ℓ_i}, pair = [j ≥ i] e^{ℓ_j−ℓ_i}, post = Δ_i; plus
//   reader_i += dnum_i·num_i.
// One block per (P tile, chunk, b·h); the N axis is walked in tiles, accumulating Q·S; Q·Kᵀ comes from the
// chunk's Gram matrix (chunk_gram_kernel), computed once for all P tiles.
template <typename Op, bool kDx>
__global__ void __launch_bounds__(kThreads, 3) chunk_out_kernel(ChunkOutArgs a) {
  using M = Mma<Op>;
  constexpr int ld = M::kLd;
  extern __shared__ __align__(128) unsigned char sm[];
  Op* Qs = reinterpret_cast<Op*>(sm);                         // [L × 64] Q, one N tile
  Op* Ss = reinterpret_cast<Op*>(sm + tile_bytes<Op>());      // [64 × 64] state, one N tile × the P tile
  Op* Vs = reinterpret_cast<Op*>(sm + 2 * tile_bytes<Op>());  // [L × 64] V, the P tile
  Op* Gm = reinterpret_cast<Op*>(sm + 3 * tile_bytes<Op>());  // [L × L] pair-weighted Q·Kᵀ
  float* stage = reinterpret_cast<float*>(sm + 4 * tile_bytes<Op>());  // [64 × kLdF] Q·Kᵀ, then Q·S
  float* ell_s = stage + kTile * kLdF;                                 // [L]
  float* dt_s = ell_s + kL;                                            // [L]
  float* nvec = dt_s + kL;                                             // [64]

  const int64_t T = a.T, N = a.N, P = a.P, nc = a.nc;
  const int64_t p0 = (int64_t)blockIdx.x * kTile, c = blockIdx.y, bh = blockIdx.z, t0 = c * kL;
  const int tid = threadIdx.x, w = tid / 32, lane = tid % 32;
  const Op* Q = static_cast<const Op*>(a.Q) + bh * T * N;
  const Op* V = static_cast<const Op*>(a.V) + bh * T * P;
  const Op* St = static_cast<const Op*>(a.states) + (bh * nc + c) * N * P;
  const bool den_block = !kDx && blockIdx.x == 0 && a.den;
  const bool vQ = vec_ok(Q, N);

  if (tid < kL) {
    ell_s[tid] = a.ell[bh * nc * kL + t0 + tid];
    dt_s[tid] = t0 + tid < T ? a.dt[bh * T + t0 + tid] : 0.f;
  }
  // Every load of an N tile is issued at once, the next tile's while this one is multiplied.
  const bool vS = vec_ok(St, P);
  TileRegs<Op> rQ, rS;
  float nv_next = 0.f;
  auto fetch = [&](int64_t n0) {
    rQ.fetch(Q, T, N, t0, n0, vQ);
    rS.fetch(St, N, P, n0, p0, vS);
    if (den_block && tid < kTile) nv_next = n0 + tid < N ? a.vstates[(bh * nc + c) * N + n0 + tid] : 0.f;
  };
  {
    TileRegs<Op> rV;
    rV.fetch(V, T, P, t0, p0, vec_ok(V, P));
    fetch(0);
    // The warp's own 16 rows of Q·Kᵀ into the stage, read back after the N loop.
    load_gram_rows(stage, a.gram + (bh * nc + c) * kL * kL, 16 * w, 16, 32 * w, 32);
    rV.put(Vs);
  }

  FragAcc<Op> accS[4];
  zero<Op>(accS);
  float qn = 0.f;  // den: row tid/2's share (half tid%2) of Q_i·n
  for (int64_t n0 = 0; n0 < N; n0 += kTile) {
    __syncthreads();
    rQ.put(Qs);
    rS.put(Ss);
    if (den_block && tid < kTile) nvec[tid] = nv_next;
    __syncthreads();
    if (n0 + kTile < N) fetch(n0 + kTile);
    warp_mma<Op, wmma::row_major, wmma::row_major>(accS, Qs + 16 * w * ld, ld, Ss, ld);
    if (den_block) {
      const int i = tid / 2, h = (tid % 2) * 32;
      for (int k = 0; k < 32; ++k)
        qn += M::to_float(Qs[i * ld + h + k]) * nvec[h + k];
    }
  }
  __syncthreads();  // ell_s and dt_s are visible even when the loop above is empty

  // Gm = pair ∘ (Q Kᵀ), the warp's own rows (it alone reads them back); den from the float values.
  {
    const int i = 16 * w + lane / 2, h = (lane % 2) * 32;
    float rowsum = 0.f;
    for (int k = 0; k < 32; ++k) {
      const int j = h + k;
      float pw;
      if (kDx)
        pw = j >= i ? __expf(ell_s[j] - ell_s[i]) : 0.f;
      else
        pw = j <= i ? dt_s[j] * __expf(ell_s[i] - ell_s[j]) : 0.f;
      const float v = stage[i * kLdF + j] * pw;
      Gm[i * ld + j] = M::from_float(v);
      rowsum += v;
    }
    if (den_block) {
      rowsum += __shfl_xor_sync(0xffffffffu, rowsum, 1);
      const float cn = qn + __shfl_xor_sync(0xffffffffu, qn, 1);  // tid/2 == i: the same row
      if (lane % 2 == 0 && t0 + i < T) a.den[bh * T + t0 + i] = __expf(ell_s[i]) * cn + rowsum;
    }
  }
  __syncwarp();
  // pre ∘ (Q S), then + Gm V.
  stage_store<Op>(stage, accS);
  stage_map(stage, [&](int i, int, float v) {
    return v * (kDx ? __expf(ell_s[kL - 1] - ell_s[i]) : __expf(ell_s[i]));
  });
  stage_load<Op>(accS, stage);
  warp_mma<Op, wmma::row_major, wmma::row_major>(accS, Gm + 16 * w * ld, ld, Vs, ld);
  stage_store<Op>(stage, accS);
  warp_store_rows(stage, static_cast<Op*>(a.out) + bh * T * P, T, P, t0, p0,
                  [&](int i, float v) { return kDx ? v * dt_s[i] : v; });

  if (kDx && a.reader) {  // reader_t += dnum_t · num_t over this P tile (Qs is free once every warp is here)
    __syncthreads();
    const Op* num = static_cast<const Op*>(a.num) + bh * T * P;
    load_tile(Qs, num, T, P, t0, p0, vec_ok(num, P));
    __syncthreads();
    const int i = tid / 2, h = (tid % 2) * 32;
    float s = 0.f;
    for (int k = 0; k < 32; ++k)
      s += M::to_float(Qs[i * ld + h + k]) * M::to_float(Vs[i * ld + h + k]);
    s += __shfl_xor_sync(0xffffffffu, s, 1);
    if (tid % 2 == 0 && t0 + i < T) atomicAdd(a.reader + bh * T + t0 + i, s);
  }
}

struct ChunkBCArgs {
  const void* x = nullptr;          // [BH,T,P]
  const void* dnum = nullptr;       // [BH,T,P]
  const void* Bm = nullptr;         // [BH,T,N]
  const void* Cm = nullptr;         // [BH,T,N]
  const void* states = nullptr;     // [BH,nc,N,P] Op: S entering each chunk
  const void* adj = nullptr;        // [BH,nc,N,P] Op: R leaving each chunk
  const float* n_states = nullptr;  // [BH,nc,N]
  const float* r_adj = nullptr;     // [BH,nc,N]
  const float* dt = nullptr;        // [BH,T]
  const float* ell = nullptr;       // [BH,nc·L]
  const float* dden = nullptr;      // [BH,T] or null
  void* dB = nullptr;               // [BH,T,N] Op
  void* dC = nullptr;               // [BH,T,N] Op
  float* ddt_direct = nullptr;      // [BH,T] accumulated
  const float* gram = nullptr;      // [BH,nc,L,L]: dnum·xᵀ a chunk (chunk_gram_kernel)
  int64_t T = 0, N = 0, P = 0, nc = 0;
};

// With Q_ts = dnum_t·x_s (+ dden_t, the ones column of x):
//   dC_t = e^{ℓ_t} (S dnum_t + dden_t n) + Σ_{s≤t} (Q_ts + dden_t) Δ_s e^{ℓ_t−ℓ_s} B_s,
//   E_s  = e^{ℓ_end−ℓ_s} (R x_s + r) + Σ_{t≥s} (Q_ts + dden_t) e^{ℓ_t−ℓ_s} C_t,
//   dB_s = Δ_s E_s,   ddt_direct_s += B_s·E_s (this N tile's share).
// One block per (N tile, chunk, b·h); the P axis is walked in tiles, accumulating dnum Sᵀ and x Rᵀ; Q comes
// from the chunk's Gram matrix dnum·xᵀ, computed once for all N tiles. A P tile's four operand tiles (dnum,
// x, S, R) are copied by cp.async straight into shared memory, without staging them in registers. (A second
// buffer, the next tile's copies in flight during this one's products, was slower on an H100: two blocks a
// multiprocessor instead of three; docs/results.md.)
template <typename Op>
__global__ void __launch_bounds__(kThreads, 3) chunk_bc_kernel(ChunkBCArgs a) {
  using M = Mma<Op>;
  constexpr int ld = M::kLd, kTileB = tile_bytes<Op>();
  extern __shared__ __align__(128) unsigned char sm[];
  Op* Bs = reinterpret_cast<Op*>(sm);                     // [L × 64] B, the N tile
  Op* Cs = reinterpret_cast<Op*>(sm + kTileB);            // [L × 64] C, the N tile
  float* Qf = reinterpret_cast<float*>(sm + 2 * kTileB);  // [L × kLdF] dnum·xᵀ
  float* ell_s = Qf + kL * kLdF;
  float* dt_s = ell_s + kL;
  float* dd_s = dt_s + kL;
  float* nin = dd_s + kL;     // [64] n entering the chunk, the N tile
  float* rout = nin + kTile;  // [64] r leaving the chunk
  // [dnum | x | S | R], each a 64-row tile of one P tile (dnum, x: L × 64; S, R: the N tile × 64).
  unsigned char* ops = reinterpret_cast<unsigned char*>(rout + kTile);
  auto operand = [&](int k) { return reinterpret_cast<Op*>(ops + k * kTileB); };
  static_assert(2 * tile_bytes<Op>() >= kStageBytes, "the stage reuses S and R");
  static_assert((2 * tile_bytes<Op>() + kL * kLdF * 4 + (3 * kL + 2 * kTile) * 4) % 16 == 0,
                "the operand tiles start 16-byte aligned (cp.async)");
  float* stage = reinterpret_cast<float*>(operand(2));

  const int64_t T = a.T, N = a.N, P = a.P, nc = a.nc;
  const int64_t n0 = (int64_t)blockIdx.x * kTile, c = blockIdx.y, bh = blockIdx.z, t0 = c * kL;
  const int tid = threadIdx.x, w = tid / 32, lane = tid % 32;
  const Op* X = static_cast<const Op*>(a.x) + bh * T * P;
  const Op* D = static_cast<const Op*>(a.dnum) + bh * T * P;
  const Op* St = static_cast<const Op*>(a.states) + (bh * nc + c) * N * P;
  const Op* Rt = static_cast<const Op*>(a.adj) + (bh * nc + c) * N * P;
  const bool vX = vec_ok(X, P), vD = vec_ok(D, P), vS = vec_ok(St, P), vR = vec_ok(Rt, P);
  auto issue = [&](int64_t p0) {
    tile_async(operand(0), D, T, P, t0, p0, vD);
    tile_async(operand(1), X, T, P, t0, p0, vX);
    tile_async(operand(2), St, N, P, n0, p0, vS);
    tile_async(operand(3), Rt, N, P, n0, p0, vR);
    async_commit();
  };

  if (tid < kL) {
    const int64_t t = t0 + tid;
    ell_s[tid] = a.ell[bh * nc * kL + t];
    dt_s[tid] = t < T ? a.dt[bh * T + t] : 0.f;
    dd_s[tid] = (a.dden && t < T) ? a.dden[bh * T + t] : 0.f;
    nin[tid] = n0 + tid < N ? a.n_states[(bh * nc + c) * N + n0 + tid] : 0.f;
    rout[tid] = n0 + tid < N ? a.r_adj[(bh * nc + c) * N + n0 + tid] : 0.f;
  }
  {
    const Op* Bg = static_cast<const Op*>(a.Bm) + bh * T * N;
    const Op* Cg = static_cast<const Op*>(a.Cm) + bh * T * N;
    load_tile(Bs, Bg, T, N, t0, n0, vec_ok(Bg, N));
    load_tile(Cs, Cg, T, N, t0, n0, vec_ok(Cg, N));
  }
  load_gram_rows(Qf, a.gram + (bh * nc + c) * kL * kL, 0, kL, 0, kThreads);  // every warp reads every row

  FragAcc<Op> accC[4], accE[4];
  zero<Op>(accC);
  zero<Op>(accE);
  for (int64_t p0 = 0; p0 < P; p0 += kTile) {
    __syncthreads();  // every warp is done with the previous tile
    issue(p0);
    async_wait_all();
    __syncthreads();  // this tile is in for every thread
    warp_mma<Op, wmma::row_major, wmma::col_major>(accC, operand(0) + 16 * w * ld, ld, operand(2), ld);
    warp_mma<Op, wmma::row_major, wmma::col_major>(accE, operand(1) + 16 * w * ld, ld, operand(3), ld);
  }
  __syncthreads();  // every warp is done with the operand tiles (and Qf, loaded above, is visible to all)
  Op* Mc = operand(0);
  Op* Me = operand(1);
  {
    const int i = 16 * w + lane / 2, h = (lane % 2) * 32;
    for (int k = 0; k < 32; ++k) {
      const int j = h + k;
      const float mc = j <= i ? (Qf[i * kLdF + j] + dd_s[i]) * dt_s[j] * __expf(ell_s[i] - ell_s[j]) : 0.f;
      const float me = j >= i ? (Qf[j * kLdF + i] + dd_s[j]) * __expf(ell_s[j] - ell_s[i]) : 0.f;
      Mc[i * ld + j] = M::from_float(mc);
      Me[i * ld + j] = M::from_float(me);
    }
  }
  __syncwarp();
  // dC
  stage_store<Op>(stage, accC);
  stage_map(stage, [&](int i, int n, float v) { return __expf(ell_s[i]) * (v + dd_s[i] * nin[n]); });
  stage_load<Op>(accC, stage);
  warp_mma<Op, wmma::row_major, wmma::row_major>(accC, Mc + 16 * w * ld, ld, Bs, ld);
  stage_store<Op>(stage, accC);
  warp_store_rows(stage, static_cast<Op*>(a.dC) + bh * T * N, T, N, t0, n0, [](int, float v) { return v; });
  // E → dB and Δ's direct share
  stage_store<Op>(stage, accE);
  stage_map(stage, [&](int i, int n, float v) { return __expf(ell_s[kL - 1] - ell_s[i]) * (v + rout[n]); });
  stage_load<Op>(accE, stage);
  warp_mma<Op, wmma::row_major, wmma::row_major>(accE, Me + 16 * w * ld, ld, Cs, ld);
  stage_store<Op>(stage, accE);
  warp_store_rows(stage, static_cast<Op*>(a.dB) + bh * T * N, T, N, t0, n0,
                  [&](int i, float v) { return dt_s[i] * v; });
  {
    const int i = 16 * w + lane / 2, h = (lane % 2) * 32;
    float s = 0.f;
    for (int k = 0; k < 32; ++k)
      s += M::to_float(Bs[i * ld + h + k]) * stage[i * kLdF + h + k];
    s += __shfl_xor_sync(0xffffffffu, s, 1);
    if (lane % 2 == 0 && t0 + i < T) atomicAdd(a.ddt_direct + bh * T + t0 + i, s);
  }
}

}  // namespace hedgelab::cuda::detail
