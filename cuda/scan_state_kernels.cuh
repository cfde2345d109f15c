// The sequential part of the scan (scan_params.h, steps 1 and 2): ℓ inside every chunk, and the state pass
// that stores the state entering (forward) or the adjoint leaving (reverse) every chunk. Plain CUDA.
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
  void* states = nullptr;         // [BH,nc,N,P] Op: stored before each chunk's update
  float* vstates = nullptr;       // [BH,nc,N]
  float* S_out = nullptr;         // [BH,N,P] or null: S_T (forward) or dS0 (reverse)
  float* v_out = nullptr;         // [BH,N] or null
  int64_t T = 0, N = 0, P = 0, nc = 0;
};

// One block per (N tile, P tile, b·h) carries a 64 × 64 tile of the state in registers (fp32 accumulators)
// through the chunks, forward (c = 0 … nc−1) or in reverse, and at each chunk
//   stores it (the state entering chunk c, or the adjoint leaving it), then
//   forward:  S ← e^{ℓ_end} S + Bᵀ (u ∘ x),   u_s = Δ_s e^{ℓ_end − ℓ_s},   n ← e^{ℓ_end} n + Bᵀ u;
//   reverse:  R ← e^{ℓ_end} R + Cᵀ (u ∘ dnum), u_t = e^{ℓ_t},             r ← e^{ℓ_end} r + Cᵀ (u ∘ dden).
// The next chunk's tiles are fetched into registers while the current one is multiplied. The blocks of P tile
// 0 also carry the vector state (one thread an entry).
template <typename Op, bool kReverse>
__global__ void __launch_bounds__(kThreads, 4) state_pass_kernel(StatePassArgs a) {
  using M = Mma<Op>;
  extern __shared__ __align__(128) unsigned char sm[];
  Op* Ks = reinterpret_cast<Op*>(sm);                                  // [L × 64] K, raw
  Op* Vs = reinterpret_cast<Op*>(sm + tile_bytes<Op>());               // [L × 64] u ∘ V
  float* stage = reinterpret_cast<float*>(sm + 2 * tile_bytes<Op>());  // [64 × kLdF]
  float* vw = stage + kTile * kLdF;                                    // [L] the vector state's weights

  const int64_t T = a.T, N = a.N, P = a.P, nc = a.nc;
  const int64_t n0 = (int64_t)blockIdx.x * kTile, p0 = (int64_t)blockIdx.y * kTile, bh = blockIdx.z;
  const int tid = threadIdx.x, w = tid / 32;
  const Op* K = static_cast<const Op*>(a.K) + bh * T * N;
  const Op* V = static_cast<const Op*>(a.V) + bh * T * P;
  const float* dt = a.dt + bh * T;
  const float* ell = a.ell + bh * nc * kL;
  const float* vcol = a.vcol ? a.vcol + bh * T : nullptr;
  Op* states = static_cast<Op*>(a.states) + bh * nc * N * P;
  const bool vec_block = blockIdx.y == 0;
  const bool vK = vec_ok(K, N), vV = vec_ok(V, P);

  FragAcc<Op> acc[4];
  if (a.S_init) {
    const float* S0 = a.S_init + bh * N * P;
    for (int idx = tid; idx < kTile * kTile; idx += kThreads) {
      const int r = idx / kTile, c = idx % kTile;
      stage[r * kLdF + c] = (n0 + r < N && p0 + c < P) ? S0[(n0 + r) * P + p0 + c] : 0.f;
    }
    __syncthreads();
    stage_load<Op>(acc, stage);
  } else {
    zero<Op>(acc);
  }
  float vstate = 0.f;  // entry n0 + tid of the vector state (threads < 64 of P tile 0)
  if (vec_block && tid < kTile && a.v_init && n0 + tid < N) vstate = a.v_init[bh * N + n0 + tid];

  TileRegs<Op> rK, rV;
  float scale[TileRegs<Op>::kCount];  // the row factor u of each of this thread's V groups
  float vw_next = 0.f;                // the vector state's weight of token tid (threads < L of P tile 0)
  auto chunk_of = [&](int64_t i) { return kReverse ? nc - 1 - i : i; };
  // Issues every load of chunk c: the K and V tiles, and the factors u (forward Δ_s e^{ℓ_end − ℓ_s}, reverse
  // e^{ℓ_t}) of the rows this thread puts, and its vector weight.
  auto fetch = [&](int64_t c) {
    const int64_t t0 = c * kL;
    const float* ellc = ell + c * kL;
    rK.fetch(K, T, N, t0, n0, vK);
    rV.fetch(V, T, P, t0, p0, vV);
    const float ell_end = ellc[kL - 1];
#pragma unroll
    for (int k = 0; k < TileRegs<Op>::kCount; ++k) {
      const int r = TileRegs<Op>::row_of(k);
      scale[k] = kReverse ? __expf(ellc[r]) : (t0 + r < T ? dt[t0 + r] * __expf(ell_end - ellc[r]) : 0.f);
    }
    if (vec_block && tid < kL) {
      const int64_t t = t0 + tid;
      if (kReverse)
        vw_next = (vcol && t < T) ? __expf(ellc[tid]) * vcol[t] : 0.f;
      else
        vw_next = t < T ? dt[t] * __expf(ell_end - ellc[tid]) : 0.f;
    }
  };
  fetch(chunk_of(0));
  for (int64_t i = 0; i < nc; ++i) {
    const int64_t c = chunk_of(i);
    const float ell_end = ell[c * kL + kL - 1];
    __syncthreads();  // every warp is done with the previous chunk's tiles
    rK.put(Ks);
    rV.put(Vs, scale);
    if (vec_block && tid < kL) vw[tid] = vw_next;
    __syncthreads();
    if (i + 1 < nc) fetch(chunk_of(i + 1));  // in flight while this chunk is multiplied
    // Store the state as it is before this chunk's update.
    stage_store<Op>(stage, acc);
    warp_store_rows(stage, states + c * N * P, N, P, n0, p0, [](int, float v) { return v; });
    if (vec_block && tid < kTile && n0 + tid < N) a.vstates[(bh * nc + c) * N + n0 + tid] = vstate;

    const float g = __expf(ell_end);
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < acc[j].num_elements; ++e)
        acc[j].x[e] *= g;
    warp_mma<Op, wmma::col_major, wmma::row_major>(acc, Ks + 16 * w, M::kLd, Vs, M::kLd);
    if (vec_block && tid < kTile) {
      float s = 0.f;
      for (int t = 0; t < kL; ++t)
        s += M::to_float(Ks[t * M::kLd + tid]) * vw[t];
      vstate = g * vstate + s;
    }
  }
  if (a.S_out) {
    stage_store<Op>(stage, acc);
    warp_store_rows(stage, a.S_out + bh * N * P, N, P, n0, p0, [](int, float v) { return v; });
  }
  if (vec_block && a.v_out && tid < kTile && n0 + tid < N) a.v_out[bh * N + n0 + tid] = vstate;
}

}  // namespace hedgelab::cuda::detail
