// Fused chunked HedgeMamba scan, forward and backward (scan_params.h has the maths and the contract).
// Plain CUDA C++: no LibTorch type is seen here. One thread block per (tile of Pt value columns, h, b) walks
// the chunks in order (forward, dC) or in reverse (dx, dB, Δ), keeping the state (or its adjoint) in shared
// memory in float32; every product inside a chunk runs on the tensor cores through WMMA (bf16 operands for
// bf16 inputs, tf32 for float inputs) with float32 accumulation. Padded tokens past T have Δ = 0 and zero
// rows, so they neither decay nor write the state.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>
#include <type_traits>

#include "cuda/scan_params.h"

namespace hedgelab::cuda {
namespace {

using namespace nvcuda;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// ---- operand types -----------------------------------------------------------------------------------------
template <typename Op>
struct Mma;

template <>
struct Mma<__nv_bfloat16> {
  static constexpr int K = 16;
  using Prec = __nv_bfloat16;
  __device__ static __nv_bfloat16 from_float(float v) { return __float2bfloat16(v); }
  __device__ static float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  template <typename Frag>
  __device__ static void fix(Frag&) {}
};

template <>
struct Mma<float> {
  static constexpr int K = 8;
  using Prec = wmma::precision::tf32;
  __device__ static float from_float(float v) { return v; }
  __device__ static float to_float(float v) { return v; }
  template <typename Frag>
  __device__ static void fix(Frag& f) {
#pragma unroll
    for (int i = 0; i < f.num_elements; ++i)
      f.x[i] = wmma::__float_to_tf32(f.x[i]);
  }
};

template <typename In>
__device__ inline float load_in(const In* p) {
  return static_cast<float>(*p);
}
template <>
__device__ inline float load_in<__nv_bfloat16>(const __nv_bfloat16* p) {
  return __bfloat162float(*p);
}

// C[M×Nn] (float, ldc) = beta·C + A[M×K]·B[K×Nn] (beta < 0: C = A·B). A row-major: A(m,k) = As[m·lda + k];
// col-major: As[k·lda + m]. Likewise B(k,n) = Bs[k·ldb + n] (row) or Bs[n·ldb + k] (col). M, Nn, K are
// multiples of 16; every warp of the block takes 16×16 output tiles in turn.
template <typename Op, typename LA, typename LB>
__device__ void block_mma(float* Cs, int ldc, const Op* As, int lda, const Op* Bs, int ldb, int M, int Nn,
                          int K, float beta) {
  using T = Mma<Op>;
  constexpr bool a_row = std::is_same<LA, wmma::row_major>::value;
  constexpr bool b_row = std::is_same<LB, wmma::row_major>::value;
  const int warp = threadIdx.x / 32;
  const int mt = M / 16, nt = Nn / 16;
  for (int tile = warp; tile < mt * nt; tile += kWarps) {
    const int i = tile / nt, j = tile % nt;
    wmma::fragment<wmma::accumulator, 16, 16, T::K, float> acc;
    float* cptr = Cs + (size_t)i * 16 * ldc + j * 16;
    if (beta < 0.f) {
      wmma::fill_fragment(acc, 0.f);
    } else {
      wmma::load_matrix_sync(acc, cptr, ldc, wmma::mem_row_major);
#pragma unroll
      for (int e = 0; e < acc.num_elements; ++e)
        acc.x[e] *= beta;
    }
    for (int k = 0; k < K; k += T::K) {
      wmma::fragment<wmma::matrix_a, 16, 16, T::K, typename T::Prec, LA> fa;
      wmma::fragment<wmma::matrix_b, 16, 16, T::K, typename T::Prec, LB> fb;
      const Op* ap = a_row ? As + (size_t)i * 16 * lda + k : As + (size_t)k * lda + i * 16;
      const Op* bp = b_row ? Bs + (size_t)k * ldb + j * 16 : Bs + (size_t)j * 16 * ldb + k;
      wmma::load_matrix_sync(fa, ap, lda);
      wmma::load_matrix_sync(fb, bp, ldb);
      T::fix(fa);
      T::fix(fb);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(cptr, acc, ldc, wmma::mem_row_major);
  }
}

// ---- shared-memory layout ------------------------------------------------------------------------------------
// Every buffer starts on a 128-byte boundary; rows are padded by 16 bytes against bank conflicts (WMMA needs
// the leading dimension to be a multiple of 16 bytes).
struct Layout {
  int L, Pt, Np;
  int ldN, ldP, ldL;    // Op buffers
  int ldSf, ldGf, ldEf; // float buffers
  // byte offsets
  int64_t Cs, Bs, Xs, X2, Dn, Gop, Sop, Sf, Gf, Ef, vec_n, ell, dts, es, ws, dds, total;
};

__host__ __device__ inline int64_t align128(int64_t v) {
  return (v + 127) / 128 * 128;
}

// kernel: 0 forward, 1 backward dC, 2 backward reverse. op_bytes: 2 (bf16) or 4 (tf32).
__host__ __device__ inline Layout make_layout(int kernel, int L, int Pt, int64_t N, int op_bytes) {
  Layout l{};
  l.L = L;
  l.Pt = Pt;
  l.Np = (int)((N + 15) / 16 * 16);
  const int pad = 16 / op_bytes;
  l.ldN = l.Np + pad;
  l.ldP = Pt + pad;
  l.ldL = L + pad;
  l.ldSf = Pt + 4;
  l.ldGf = (L > Pt ? L : Pt) + 4;
  l.ldEf = l.Np + 4;
  int64_t off = 0;
  auto take = [&](int64_t bytes) {
    const int64_t at = off;
    off = align128(off + bytes);
    return at;
  };
  const int64_t none = -1;
  // Cs: C (forward, reverse). Bs: B (all). Xs: x (all). X2: Δ-weighted x (forward, dC) or e^ℓ·dnum (reverse).
  // Dn: dnum (backward). Gop: masked chunk matrix. Sop/Sf: state (or adjoint) as operand and in float.
  // Gf: float L×max(L,Pt) scratch. Ef: float L×Np (backward).
  l.Cs = (kernel != 1) ? take((int64_t)L * l.ldN * op_bytes) : none;
  l.Bs = take((int64_t)L * l.ldN * op_bytes);
  l.Xs = take((int64_t)L * l.ldP * op_bytes);
  l.X2 = take((int64_t)L * l.ldP * op_bytes);
  l.Dn = (kernel != 0) ? take((int64_t)L * l.ldP * op_bytes) : none;
  l.Gop = take((int64_t)L * l.ldL * op_bytes);
  l.Sop = take((int64_t)l.Np * l.ldP * op_bytes);
  l.Sf = take((int64_t)l.Np * l.ldSf * 4);
  l.Gf = take((int64_t)L * l.ldGf * 4);
  l.Ef = (kernel != 0) ? take((int64_t)L * l.ldEf * 4) : none;
  l.vec_n = take((int64_t)l.Np * 4);
  l.ell = take(L * 4);
  l.dts = take(L * 4);
  l.es = take(L * 4);
  l.ws = take(L * 4);
  l.dds = take(L * 4);
  l.total = off;
  return l;
}

template <typename T>
__device__ inline T* at(unsigned char* base, int64_t off) {
  return reinterpret_cast<T*>(base + off);
}

__device__ inline float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Loads rows [t0, t0+L) × columns [c0, c0+cols) of a [T, width] matrix into an Op tile (ld), zero outside.
// When the input and operand types agree and widths allow, 16-byte vectors (8 bf16 or 4 floats) a thread.
template <typename In, typename Op>
__device__ void load_tile(Op* dst, int ld, const In* src, int64_t T, int64_t width, int64_t t0, int64_t c0,
                          int rows, int cols) {
  constexpr int V = 16 / sizeof(In);
  if (std::is_same<In, Op>::value && width % V == 0 && c0 % V == 0 && cols % V == 0 && ld % V == 0) {
    const int groups = cols / V;
    for (int idx = threadIdx.x; idx < rows * groups; idx += kThreads) {
      const int r = idx / groups, c = (idx % groups) * V;
      const int64_t t = t0 + r, col = c0 + c;
      uint4 v = make_uint4(0u, 0u, 0u, 0u);
      if (t < T && col < width) v = __ldg(reinterpret_cast<const uint4*>(src + t * width + col));
      *reinterpret_cast<uint4*>(dst + r * ld + c) = v;
    }
    return;
  }
  for (int idx = threadIdx.x; idx < rows * cols; idx += kThreads) {
    const int r = idx / cols, c = idx % cols;
    const int64_t t = t0 + r, col = c0 + c;
    float v = 0.f;
    if (t < T && col < width) v = load_in(src + t * width + col);
    dst[r * ld + c] = Mma<Op>::from_float(v);
  }
}

// Δ of the chunk, its local cumulative log-decay ℓ (inclusive), e^ℓ, and w_s = Δ_s e^{ℓ_end − ℓ_s}.
__device__ void chunk_decay(const Layout& l, unsigned char* sm, const float* dt, float A, int64_t T, int64_t t0) {
  float* dts = at<float>(sm, l.dts);
  float* ell = at<float>(sm, l.ell);
  float* es = at<float>(sm, l.es);
  float* ws = at<float>(sm, l.ws);
  if (threadIdx.x < 32) {
    // Inclusive scan of Δ·A over L ≤ 64 tokens by one warp, two tokens a lane at most.
    float carry = 0.f;
    for (int base = 0; base < l.L; base += 32) {
      const int t = base + threadIdx.x;
      const float d = (t < l.L && t0 + t < T) ? dt[t0 + t] : 0.f;
      float v = d * A;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const float n = __shfl_up_sync(0xffffffffu, v, o);
        if ((int)threadIdx.x >= o) v += n;
      }
      v += carry;
      if (t < l.L) {
        dts[t] = d;
        ell[t] = v;
      }
      carry = __shfl_sync(0xffffffffu, v, 31);
    }
  }
  __syncthreads();
  const float end = ell[l.L - 1];
  for (int t = threadIdx.x; t < l.L; t += kThreads) {
    es[t] = __expf(ell[t]);
    ws[t] = dts[t] * __expf(end - ell[t]);
  }
  __syncthreads();
}

// float state → operand copy.
template <typename Op>
__device__ void state_to_op(const Layout& l, const float* Sf, Op* Sop) {
  for (int idx = threadIdx.x; idx < l.Np * l.Pt; idx += kThreads) {
    const int n = idx / l.Pt, j = idx % l.Pt;
    Sop[n * l.ldP + j] = Mma<Op>::from_float(Sf[n * l.ldSf + j]);
  }
}

// ---- forward -------------------------------------------------------------------------------------------------
template <typename In, typename Op>
__global__ void __launch_bounds__(kThreads) scan_fwd_kernel(ScanFwdParams p, Layout l) {
  extern __shared__ __align__(128) unsigned char sm[];
  const int64_t T = p.shape.T, N = p.shape.N, P = p.shape.P, H = p.shape.H;
  const int pt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t p0 = (int64_t)pt * l.Pt;
  const bool den_tile = pt == 0;
  const int64_t bh = (int64_t)b * H + h;
  const In* x = static_cast<const In*>(p.x) + bh * T * P;
  const In* Bg = static_cast<const In*>(p.Bm) + bh * T * N;
  const In* Cg = static_cast<const In*>(p.Cm) + bh * T * N;
  const float* dt = p.dt + bh * T;
  const float A = p.A[h];

  Op* Cs = at<Op>(sm, l.Cs);
  Op* Bs = at<Op>(sm, l.Bs);
  Op* Xs = at<Op>(sm, l.Xs);
  Op* Xw = at<Op>(sm, l.X2);
  Op* Gop = at<Op>(sm, l.Gop);
  Op* Sop = at<Op>(sm, l.Sop);
  float* Sf = at<float>(sm, l.Sf);
  float* Gf = at<float>(sm, l.Gf);  // G, then Y (aliased: G is dead once Gop is made)
  float* nv = at<float>(sm, l.vec_n);
  float* ell = at<float>(sm, l.ell);
  float* dts = at<float>(sm, l.dts);
  float* es = at<float>(sm, l.es);
  float* ws = at<float>(sm, l.ws);

  for (int idx = threadIdx.x; idx < l.Np * l.Pt; idx += kThreads) {
    const int n = idx / l.Pt, j = idx % l.Pt;
    float v = 0.f;
    if (p.S0 && n < N && p0 + j < P) v = p.S0[(bh * N + n) * P + p0 + j];
    Sf[n * l.ldSf + j] = v;
  }
  for (int n = threadIdx.x; n < l.Np; n += kThreads)
    nv[n] = (p.n0 && n < N) ? p.n0[bh * N + n] : 0.f;
  __syncthreads();
  state_to_op(l, Sf, Sop);

  const int64_t nc = (T + l.L - 1) / l.L;
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t t0 = c * l.L;
    load_tile(Cs, l.ldN, Cg, T, N, t0, 0, l.L, l.Np);
    load_tile(Bs, l.ldN, Bg, T, N, t0, 0, l.L, l.Np);
    load_tile(Xs, l.ldP, x, T, P, t0, p0, l.L, l.Pt);
    chunk_decay(l, sm, dt, A, T, t0);  // syncs
    for (int idx = threadIdx.x; idx < l.L * l.Pt; idx += kThreads) {
      const int s = idx / l.Pt, j = idx % l.Pt;
      Xw[s * l.ldP + j] = Mma<Op>::from_float(ws[s] * Mma<Op>::to_float(Xs[s * l.ldP + j]));
    }
    // G = C Bᵀ
    block_mma<Op, wmma::row_major, wmma::col_major>(Gf, l.ldGf, Cs, l.ldN, Bs, l.ldN, l.L, l.L, l.Np, -1.f);
    __syncthreads();
    // Gm_ts = G_ts Δ_s e^{ℓ_t−ℓ_s} for s ≤ t
    for (int idx = threadIdx.x; idx < l.L * l.L; idx += kThreads) {
      const int t = idx / l.L, s = idx % l.L;
      const float v = s <= t ? Gf[t * l.ldGf + s] * dts[s] * __expf(ell[t] - ell[s]) : 0.f;
      Gop[t * l.ldL + s] = Mma<Op>::from_float(v);
    }
    if (den_tile) {
      // den_t = Σ_s Gm_ts + e^{ℓ_t} C_t·n, one warp a row, from the float G.
      const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
      for (int t = warp; t < l.L; t += kWarps) {
        float acc = 0.f;
        for (int s = lane; s <= t; s += 32)
          acc += Gf[t * l.ldGf + s] * dts[s] * __expf(ell[t] - ell[s]);
        float cn = 0.f;
        for (int n = lane; n < l.Np; n += 32)
          cn += Mma<Op>::to_float(Cs[t * l.ldN + n]) * nv[n];
        acc = warp_sum(acc) + es[t] * warp_sum(cn);
        if (lane == 0 && t0 + t < T) p.den[bh * T + t0 + t] = acc;
      }
    }
    __syncthreads();
    // Y = e^ℓ ∘ (C S_prev) + Gm x
    block_mma<Op, wmma::row_major, wmma::row_major>(Gf, l.ldGf, Cs, l.ldN, Sop, l.ldP, l.L, l.Pt, l.Np, -1.f);
    __syncthreads();
    for (int idx = threadIdx.x; idx < l.L * l.Pt; idx += kThreads) {
      const int t = idx / l.Pt, j = idx % l.Pt;
      Gf[t * l.ldGf + j] *= es[t];
    }
    __syncthreads();
    block_mma<Op, wmma::row_major, wmma::row_major>(Gf, l.ldGf, Gop, l.ldL, Xs, l.ldP, l.L, l.Pt, l.L, 1.f);
    // S ← e^{ℓ_end} S + Bᵀ (w ∘ x); n ← e^{ℓ_end} n + Bᵀ w
    const float e_end = es[l.L - 1];
    block_mma<Op, wmma::col_major, wmma::row_major>(Sf, l.ldSf, Bs, l.ldN, Xw, l.ldP, l.Np, l.Pt, l.L, e_end);
    if (den_tile) {
      for (int n = threadIdx.x; n < l.Np; n += kThreads) {
        float acc = 0.f;
        for (int s = 0; s < l.L; ++s)
          acc += ws[s] * Mma<Op>::to_float(Bs[s * l.ldN + n]);
        nv[n] = e_end * nv[n] + acc;
      }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < l.L * l.Pt; idx += kThreads) {
      const int t = idx / l.Pt, j = idx % l.Pt;
      if (t0 + t < T && p0 + j < P) p.num[(bh * T + t0 + t) * P + p0 + j] = Gf[t * l.ldGf + j];
    }
    state_to_op(l, Sf, Sop);
    __syncthreads();
  }
  for (int idx = threadIdx.x; idx < l.Np * l.Pt; idx += kThreads) {
    const int n = idx / l.Pt, j = idx % l.Pt;
    if (n < N && p0 + j < P) p.S_final[(bh * N + n) * P + p0 + j] = Sf[n * l.ldSf + j];
  }
  if (den_tile)
    for (int n = threadIdx.x; n < N; n += kThreads)
      p.n_final[bh * N + n] = nv[n];
}

// ---- backward, forward direction: dC_t = S_t dnum_t + n_t dden_t -------------------------------------------
template <typename In, typename Op>
__global__ void __launch_bounds__(kThreads) scan_bwd_c_kernel(ScanBwdParams p, Layout l) {
  extern __shared__ __align__(128) unsigned char sm[];
  const int64_t T = p.shape.T, N = p.shape.N, P = p.shape.P, H = p.shape.H;
  const int pt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t p0 = (int64_t)pt * l.Pt;
  const bool den_tile = pt == 0;
  const int64_t bh = (int64_t)b * H + h;
  const In* x = static_cast<const In*>(p.x) + bh * T * P;
  const In* Bg = static_cast<const In*>(p.Bm) + bh * T * N;
  const In* dng = static_cast<const In*>(p.dnum) + bh * T * P;
  const float* dt = p.dt + bh * T;
  const float A = p.A[h];

  Op* Bs = at<Op>(sm, l.Bs);
  Op* Xs = at<Op>(sm, l.Xs);
  Op* Xw = at<Op>(sm, l.X2);
  Op* Dn = at<Op>(sm, l.Dn);
  Op* Gop = at<Op>(sm, l.Gop);
  Op* Sop = at<Op>(sm, l.Sop);
  float* Sf = at<float>(sm, l.Sf);
  float* Gf = at<float>(sm, l.Gf);
  float* Ef = at<float>(sm, l.Ef);
  float* nv = at<float>(sm, l.vec_n);
  float* ell = at<float>(sm, l.ell);
  float* dts = at<float>(sm, l.dts);
  float* es = at<float>(sm, l.es);
  float* ws = at<float>(sm, l.ws);
  float* dds = at<float>(sm, l.dds);

  for (int idx = threadIdx.x; idx < l.Np * l.Pt; idx += kThreads) {
    const int n = idx / l.Pt, j = idx % l.Pt;
    float v = 0.f;
    if (p.S0 && n < N && p0 + j < P) v = p.S0[(bh * N + n) * P + p0 + j];
    Sf[n * l.ldSf + j] = v;
  }
  for (int n = threadIdx.x; n < l.Np; n += kThreads)
    nv[n] = (p.n0 && n < N) ? p.n0[bh * N + n] : 0.f;
  __syncthreads();
  state_to_op(l, Sf, Sop);

  const int64_t nc = (T + l.L - 1) / l.L;
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t t0 = c * l.L;
    load_tile(Bs, l.ldN, Bg, T, N, t0, 0, l.L, l.Np);
    load_tile(Xs, l.ldP, x, T, P, t0, p0, l.L, l.Pt);
    load_tile(Dn, l.ldP, dng, T, P, t0, p0, l.L, l.Pt);
    for (int t = threadIdx.x; t < l.L; t += kThreads)
      dds[t] = (den_tile && p.dden && t0 + t < T) ? p.dden[bh * T + t0 + t] : 0.f;
    chunk_decay(l, sm, dt, A, T, t0);  // syncs
    for (int idx = threadIdx.x; idx < l.L * l.Pt; idx += kThreads) {
      const int s = idx / l.Pt, j = idx % l.Pt;
      Xw[s * l.ldP + j] = Mma<Op>::from_float(ws[s] * Mma<Op>::to_float(Xs[s * l.ldP + j]));
    }
    // G2_ts = dnum_t·x_s (+ dden_t, the ones column)
    block_mma<Op, wmma::row_major, wmma::col_major>(Gf, l.ldGf, Dn, l.ldP, Xs, l.ldP, l.L, l.L, l.Pt, -1.f);
    __syncthreads();
    for (int idx = threadIdx.x; idx < l.L * l.L; idx += kThreads) {
      const int t = idx / l.L, s = idx % l.L;
      const float v = s <= t ? (Gf[t * l.ldGf + s] + dds[t]) * dts[s] * __expf(ell[t] - ell[s]) : 0.f;
      Gop[t * l.ldL + s] = Mma<Op>::from_float(v);
    }
    // E = dnum S_prevᵀ
    block_mma<Op, wmma::row_major, wmma::col_major>(Ef, l.ldEf, Dn, l.ldP, Sop, l.ldP, l.L, l.Np, l.Pt, -1.f);
    __syncthreads();
    for (int idx = threadIdx.x; idx < l.L * l.Np; idx += kThreads) {
      const int t = idx / l.Np, n = idx % l.Np;
      Ef[t * l.ldEf + n] = es[t] * (Ef[t * l.ldEf + n] + dds[t] * nv[n]);
    }
    __syncthreads();
    block_mma<Op, wmma::row_major, wmma::row_major>(Ef, l.ldEf, Gop, l.ldL, Bs, l.ldN, l.L, l.Np, l.L, 1.f);
    const float e_end = es[l.L - 1];
    block_mma<Op, wmma::col_major, wmma::row_major>(Sf, l.ldSf, Bs, l.ldN, Xw, l.ldP, l.Np, l.Pt, l.L, e_end);
    if (den_tile) {
      for (int n = threadIdx.x; n < l.Np; n += kThreads) {
        float acc = 0.f;
        for (int s = 0; s < l.L; ++s)
          acc += ws[s] * Mma<Op>::to_float(Bs[s * l.ldN + n]);
        nv[n] = e_end * nv[n] + acc;
      }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < l.L * l.Np; idx += kThreads) {
      const int t = idx / l.Np, n = idx % l.Np;
      if (t0 + t < T && n < N) atomicAdd(p.dC + (bh * T + t0 + t) * N + n, Ef[t * l.ldEf + n]);
    }
    state_to_op(l, Sf, Sop);
    __syncthreads();
  }
}

// ---- backward, reverse direction: dx, dB, ddt_direct, dS0, dn0 ---------------------------------------------
// Adjoint of the state after token s: R_s = Σ_{t≥s} e^{ℓ_t−ℓ_s} C_t dnum_tᵀ (+ the final state's gradient),
// r_s the same with dden. dx_s = Δ_s R_sᵀ B_s, E_s = R_s x_s + r_s, dB_s = Δ_s E_s, ddt_direct_s = B_s·E_s.
template <typename In, typename Op>
__global__ void __launch_bounds__(kThreads) scan_bwd_rev_kernel(ScanBwdParams p, Layout l) {
  extern __shared__ __align__(128) unsigned char sm[];
  const int64_t T = p.shape.T, N = p.shape.N, P = p.shape.P, H = p.shape.H;
  const int pt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t p0 = (int64_t)pt * l.Pt;
  const bool den_tile = pt == 0;
  const int64_t bh = (int64_t)b * H + h;
  const In* x = static_cast<const In*>(p.x) + bh * T * P;
  const In* Bg = static_cast<const In*>(p.Bm) + bh * T * N;
  const In* Cg = static_cast<const In*>(p.Cm) + bh * T * N;
  const In* dng = static_cast<const In*>(p.dnum) + bh * T * P;
  const float* dt = p.dt + bh * T;
  const float A = p.A[h];

  Op* Cs = at<Op>(sm, l.Cs);
  Op* Bs = at<Op>(sm, l.Bs);
  Op* Xs = at<Op>(sm, l.Xs);
  Op* De = at<Op>(sm, l.X2);
  Op* Dn = at<Op>(sm, l.Dn);
  Op* Gop = at<Op>(sm, l.Gop);
  Op* Rop = at<Op>(sm, l.Sop);
  float* Rf = at<float>(sm, l.Sf);
  float* Gf = at<float>(sm, l.Gf);
  float* Ef = at<float>(sm, l.Ef);  // E, then the dx tile (aliased)
  float* rv = at<float>(sm, l.vec_n);
  float* ell = at<float>(sm, l.ell);
  float* dts = at<float>(sm, l.dts);
  float* es = at<float>(sm, l.es);
  float* fs = at<float>(sm, l.ws);  // e^{ℓ_end − ℓ_s} here
  float* dds = at<float>(sm, l.dds);

  for (int idx = threadIdx.x; idx < l.Np * l.Pt; idx += kThreads) {
    const int n = idx / l.Pt, j = idx % l.Pt;
    float v = 0.f;
    if (p.dS_T && n < N && p0 + j < P) v = p.dS_T[(bh * N + n) * P + p0 + j];
    Rf[n * l.ldSf + j] = v;
  }
  for (int n = threadIdx.x; n < l.Np; n += kThreads)
    rv[n] = (den_tile && p.dn_T && n < N) ? p.dn_T[bh * N + n] : 0.f;
  __syncthreads();
  state_to_op(l, Rf, Rop);

  const int64_t nc = (T + l.L - 1) / l.L;
  for (int64_t c = nc - 1; c >= 0; --c) {
    const int64_t t0 = c * l.L;
    load_tile(Cs, l.ldN, Cg, T, N, t0, 0, l.L, l.Np);
    load_tile(Bs, l.ldN, Bg, T, N, t0, 0, l.L, l.Np);
    load_tile(Xs, l.ldP, x, T, P, t0, p0, l.L, l.Pt);
    load_tile(Dn, l.ldP, dng, T, P, t0, p0, l.L, l.Pt);
    for (int t = threadIdx.x; t < l.L; t += kThreads)
      dds[t] = (den_tile && p.dden && t0 + t < T) ? p.dden[bh * T + t0 + t] : 0.f;
    chunk_decay(l, sm, dt, A, T, t0);  // syncs; ws = Δ e^{ℓ_end−ℓ}: turn into e^{ℓ_end−ℓ}
    for (int s = threadIdx.x; s < l.L; s += kThreads)
      fs[s] = __expf(ell[l.L - 1] - ell[s]);
    for (int idx = threadIdx.x; idx < l.L * l.Pt; idx += kThreads) {
      const int t = idx / l.Pt, j = idx % l.Pt;
      De[t * l.ldP + j] = Mma<Op>::from_float(es[t] * Mma<Op>::to_float(Dn[t * l.ldP + j]));
    }
    // Q_st = x_s·dnum_t (+ dden_t) for t ≥ s, times e^{ℓ_t−ℓ_s}
    block_mma<Op, wmma::row_major, wmma::col_major>(Gf, l.ldGf, Xs, l.ldP, Dn, l.ldP, l.L, l.L, l.Pt, -1.f);
    // E = x R_nextᵀ (scaled below)
    block_mma<Op, wmma::row_major, wmma::col_major>(Ef, l.ldEf, Xs, l.ldP, Rop, l.ldP, l.L, l.Np, l.Pt, -1.f);
    __syncthreads();
    for (int idx = threadIdx.x; idx < l.L * l.L; idx += kThreads) {
      const int s = idx / l.L, t = idx % l.L;
      const float v = t >= s ? (Gf[s * l.ldGf + t] + dds[t]) * __expf(ell[t] - ell[s]) : 0.f;
      Gop[s * l.ldL + t] = Mma<Op>::from_float(v);
    }
    for (int idx = threadIdx.x; idx < l.L * l.Np; idx += kThreads) {
      const int s = idx / l.Np, n = idx % l.Np;
      Ef[s * l.ldEf + n] = fs[s] * (Ef[s * l.ldEf + n] + rv[n]);
    }
    __syncthreads();
    block_mma<Op, wmma::row_major, wmma::row_major>(Ef, l.ldEf, Gop, l.ldL, Cs, l.ldN, l.L, l.Np, l.L, 1.f);
    __syncthreads();
    // dB (partial over tiles), ddt_direct (partial)
    {
      const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
      for (int s = warp; s < l.L; s += kWarps) {
        const bool live = t0 + s < T;
        float acc = 0.f;
        for (int n = lane; n < l.Np; n += 32) {
          const float e = Ef[s * l.ldEf + n];
          acc += e * Mma<Op>::to_float(Bs[s * l.ldN + n]);
          if (live && n < N) atomicAdd(p.dB + (bh * T + t0 + s) * N + n, dts[s] * e);
        }
        acc = warp_sum(acc);
        if (lane == 0 && live) atomicAdd(p.ddt_direct + bh * T + t0 + s, acc);
      }
    }
    // Hm_st = (B_s·C_t) e^{ℓ_t−ℓ_s} for t ≥ s
    block_mma<Op, wmma::row_major, wmma::col_major>(Gf, l.ldGf, Bs, l.ldN, Cs, l.ldN, l.L, l.L, l.Np, -1.f);
    __syncthreads();
    for (int idx = threadIdx.x; idx < l.L * l.L; idx += kThreads) {
      const int s = idx / l.L, t = idx % l.L;
      const float v = t >= s ? Gf[s * l.ldGf + t] * __expf(ell[t] - ell[s]) : 0.f;
      Gop[s * l.ldL + t] = Mma<Op>::from_float(v);
    }
    // dx = Δ ∘ (f ∘ (B R_next) + Hm dnum), built in Ef (E is consumed)
    block_mma<Op, wmma::row_major, wmma::row_major>(Ef, l.ldEf, Bs, l.ldN, Rop, l.ldP, l.L, l.Pt, l.Np, -1.f);
    __syncthreads();
    for (int idx = threadIdx.x; idx < l.L * l.Pt; idx += kThreads) {
      const int s = idx / l.Pt, j = idx % l.Pt;
      Ef[s * l.ldEf + j] *= fs[s];
    }
    __syncthreads();
    block_mma<Op, wmma::row_major, wmma::row_major>(Ef, l.ldEf, Gop, l.ldL, Dn, l.ldP, l.L, l.Pt, l.L, 1.f);
    // R ← e^{ℓ_end} R + Cᵀ (e^ℓ ∘ dnum); r ← e^{ℓ_end} r + Cᵀ (e^ℓ ∘ dden)
    const float e_end = es[l.L - 1];
    block_mma<Op, wmma::col_major, wmma::row_major>(Rf, l.ldSf, Cs, l.ldN, De, l.ldP, l.Np, l.Pt, l.L, e_end);
    if (den_tile) {
      for (int n = threadIdx.x; n < l.Np; n += kThreads) {
        float acc = 0.f;
        for (int t = 0; t < l.L; ++t)
          acc += es[t] * dds[t] * Mma<Op>::to_float(Cs[t * l.ldN + n]);
        rv[n] = e_end * rv[n] + acc;
      }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < l.L * l.Pt; idx += kThreads) {
      const int s = idx / l.Pt, j = idx % l.Pt;
      if (t0 + s < T && p0 + j < P) p.dx[(bh * T + t0 + s) * P + p0 + j] = dts[s] * Ef[s * l.ldEf + j];
    }
    state_to_op(l, Rf, Rop);
    __syncthreads();
  }
  for (int idx = threadIdx.x; idx < l.Np * l.Pt; idx += kThreads) {
    const int n = idx / l.Pt, j = idx % l.Pt;
    if (n < N && p0 + j < P) p.dS0[(bh * N + n) * P + p0 + j] = Rf[n * l.ldSf + j];
  }
  if (den_tile)
    for (int n = threadIdx.x; n < N; n += kThreads)
      p.dn0[bh * N + n] = rv[n];
}

// ---- launch --------------------------------------------------------------------------------------------------
int op_bytes(ScanDtype d) {
  return d == ScanDtype::kBFloat16 ? 2 : 4;
}

int smem_limit_now(int64_t* limit) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return (int)e;
  int v = 0;
  e = cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (e != cudaSuccess) return (int)e;
  *limit = v;
  return 0;
}

template <typename Kernel, typename Params>
int launch(Kernel kernel, const Params& p, const Layout& l, void* stream) {
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)l.total);
  if (e != cudaSuccess) return (int)e;
  const dim3 grid((unsigned)((p.shape.P + l.Pt - 1) / l.Pt), (unsigned)p.shape.H, (unsigned)p.shape.B);
  kernel<<<grid, kThreads, l.total, static_cast<cudaStream_t>(stream)>>>(p, l);
  return (int)cudaGetLastError();
}

constexpr int kNoTiling = 100000;  // returned when no tiling fits (not a cudaError_t)

}  // namespace

ScanTiling scan_tiling(ScanKernel kernel, const ScanShape& shape, int64_t smem_limit) {
  // Preference: long chunks (fewer state passes), then wide value tiles (fewer recomputed L×L products).
  static const int kCandidates[][2] = {{64, 64}, {64, 32}, {32, 64}, {32, 32}, {16, 64}, {16, 32}, {16, 16}};
  for (const auto& c : kCandidates) {
    if (c[1] > 16 && shape.P <= c[1] / 2) continue;  // no tile mostly padding
    const Layout l = make_layout((int)kernel, c[0], c[1], shape.N, op_bytes(shape.dtype));
    if (l.total <= smem_limit) return {c[0], c[1], l.total};
  }
  return {};
}

int scan_forward(const ScanFwdParams& p, void* stream) {
  if (p.shape.B == 0 || p.shape.H == 0 || p.shape.P == 0) return 0;
  int64_t limit = 0;
  if (int e = smem_limit_now(&limit)) return e;
  const ScanTiling t = scan_tiling(ScanKernel::kForward, p.shape, limit);
  if (t.L == 0) return kNoTiling;
  const Layout l = make_layout(0, t.L, t.Pt, p.shape.N, op_bytes(p.shape.dtype));
  if (p.shape.dtype == ScanDtype::kBFloat16)
    return launch(scan_fwd_kernel<__nv_bfloat16, __nv_bfloat16>, p, l, stream);
  return launch(scan_fwd_kernel<float, float>, p, l, stream);
}

int scan_backward(const ScanBwdParams& p, void* stream) {
  if (p.shape.B == 0 || p.shape.H == 0 || p.shape.P == 0) return 0;
  int64_t limit = 0;
  if (int e = smem_limit_now(&limit)) return e;
  const ScanTiling tc = scan_tiling(ScanKernel::kBackwardC, p.shape, limit);
  const ScanTiling tr = scan_tiling(ScanKernel::kBackwardReverse, p.shape, limit);
  if (tc.L == 0 || tr.L == 0) return kNoTiling;
  const Layout lc = make_layout(1, tc.L, tc.Pt, p.shape.N, op_bytes(p.shape.dtype));
  const Layout lr = make_layout(2, tr.L, tr.Pt, p.shape.N, op_bytes(p.shape.dtype));
  if (p.shape.dtype == ScanDtype::kBFloat16) {
    if (int e = launch(scan_bwd_c_kernel<__nv_bfloat16, __nv_bfloat16>, p, lc, stream)) return e;
    return launch(scan_bwd_rev_kernel<__nv_bfloat16, __nv_bfloat16>, p, lr, stream);
  }
  if (int e = launch(scan_bwd_c_kernel<float, float>, p, lc, stream)) return e;
  return launch(scan_bwd_rev_kernel<float, float>, p, lr, stream);
}

const char* scan_error_string(int code) {
  if (code == kNoTiling) return "no tiling of the fused scan fits this GPU's shared memory for this state size N";
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

}  // namespace hedgelab::cuda
