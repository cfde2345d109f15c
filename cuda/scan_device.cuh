// Device-side pieces shared by the scan kernels (scan_state_kernels.cuh, scan_chunk_kernels.cuh): operand
// traits for the tensor cores, 64 × 64 tiles between global and shared memory, one warp's 16 × 64 slice of
// WMMA products, and the staged write-back of accumulators. Plain CUDA: no LibTorch type.
//
// Every kernel runs kThreads = 128 threads (4 warps) on 64 × 64 tiles; warp w owns rows 16w … 16w+15 of
// every output tile (4 accumulator fragments of 16 × 16 across the 64 columns).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>
#include <type_traits>

#include "cuda/scan_params.h"

namespace hedgelab::cuda::detail {

using namespace nvcuda;

constexpr int kL = kScanChunk;  // tokens a chunk
constexpr int kTile = 64;       // N and P columns a tile
constexpr int kThreads = 128;
constexpr int kLdF = kTile + 4;  // float staging rows (16-byte multiple, off the bank period)
static_assert(kL == 64 && kTile == 64, "the warp layout assumes 64 × 64 tiles and 64-token chunks");

// ---- operand types ---------------------------------------------------------------------------------------
template <typename Op>
struct Mma;

template <>
struct Mma<__nv_bfloat16> {
  static constexpr int K = 16;
  static constexpr int kLd = kTile + 8;  // row stride of a shared tile, in elements
  using Prec = __nv_bfloat16;
  __device__ static __nv_bfloat16 from_float(float v) { return __float2bfloat16(v); }
  __device__ static float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  template <typename Frag>
  __device__ static void fix(Frag&) {}
};

template <>
struct Mma<float> {
  static constexpr int K = 8;
  static constexpr int kLd = kTile + 4;
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

template <typename Op>
__host__ __device__ constexpr int tile_bytes() {
  return kTile * Mma<Op>::kLd * (int)sizeof(Op);
}
constexpr int kStageBytes = kTile * kLdF * 4;

template <typename Op>
using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, Mma<Op>::K, float>;

__host__ __device__ inline int64_t align128(int64_t v) {
  return (v + 127) / 128 * 128;
}

__device__ inline bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// ---- tiles: global ⇄ registers ⇄ shared
// ---------------------------------------------------------------------- Rows row0 … row0+63 and columns col0
// … col0+63 of a row-major [nrows × width] matrix, zero outside. A thread holds kCount 16-byte groups (kVec
// elements each); `vec` (width a multiple of kVec, 16-byte aligned base) loads them whole, otherwise element
// by element.
template <typename Op>
struct TileRegs {
  static constexpr int kVec = 16 / (int)sizeof(Op);
  static constexpr int kGroups = kTile / kVec;  // groups a row
  static constexpr int kCount = kTile * kGroups / kThreads;
  uint4 v[kCount];

  // A thread's groups share one column and stand kStep rows apart: one pointer, advanced by kStep rows.
  static_assert(kThreads % kGroups == 0, "a thread's groups in one column");
  static constexpr int kStep = kThreads / kGroups;

  __device__ void fetch(const Op* src, int64_t nrows, int64_t width, int64_t row0, int64_t col0, bool vec) {
    const int64_t col = col0 + (threadIdx.x % kGroups) * kVec, first = row0 + threadIdx.x / kGroups;
    const bool col_in = col < width;
    const Op* p = src + first * width + col;
#pragma unroll
    for (int k = 0; k < kCount; ++k) {
      v[k] = make_uint4(0u, 0u, 0u, 0u);
      if (!col_in || first + k * kStep >= nrows) continue;
      const Op* pk = p + k * kStep * width;
      if (vec) {
        v[k] = __ldg(reinterpret_cast<const uint4*>(pk));
      } else {
        Op* e = reinterpret_cast<Op*>(&v[k]);
        for (int i = 0; i < kVec && col + i < width; ++i)
          e[i] = pk[i];
      }
    }
  }

  // The tile row that group k of this thread belongs to.
  __device__ static int row_of(int k) {
    return (threadIdx.x + k * kThreads) / kGroups;
  }

  // Into a shared tile (row stride Mma<Op>::kLd); group k's elements times scale[k] when given (the row's
  // factor, gathered by the caller along with the fetch so that no load waits here).
  __device__ void put(Op* dst, const float* scale = nullptr) const {
#pragma unroll
    for (int k = 0; k < kCount; ++k) {
      const int idx = threadIdx.x + k * kThreads;
      const int r = idx / kGroups, c = (idx % kGroups) * kVec;
      uint4 w = v[k];
      if (scale) {
        Op* e = reinterpret_cast<Op*>(&w);
#pragma unroll
        for (int i = 0; i < kVec; ++i)
          e[i] = Mma<Op>::from_float(Mma<Op>::to_float(e[i]) * scale[k]);
      }
      *reinterpret_cast<uint4*>(dst + r * Mma<Op>::kLd + c) = w;
    }
  }
};

template <typename Op>
__device__ inline bool vec_ok(const Op* base, int64_t width) {
  return width % TileRegs<Op>::kVec == 0 && aligned16(base);
}

// Fetch and put at once (when nothing is worth overlapping with the load).
template <typename Op>
__device__ inline void load_tile(Op* dst, const Op* src, int64_t nrows, int64_t width, int64_t row0,
                                 int64_t col0, bool vec) {
  TileRegs<Op> r;
  r.fetch(src, nrows, width, row0, col0, vec);
  r.put(dst);
}

// ---- tiles: global → shared, asynchronously
// ----------------------------------------------------------------- The same tile as TileRegs, copied by
// cp.async straight into a shared tile (row stride Mma<Op>::kLd) with no registers in between; rows or
// columns outside are zero-filled. Each thread copies TileRegs' groups of its own, so after async_wait it may
// read and rewrite them without a block barrier. Without `vec` the elements are loaded synchronously instead.
template <typename Op>
__device__ inline void tile_async(Op* dst, const Op* src, int64_t nrows, int64_t width, int64_t row0,
                                  int64_t col0, bool vec) {
  using R = TileRegs<Op>;
  // TileRegs' order: a thread's groups in one column, R::kStep rows apart.
  constexpr int kStep = R::kStep;
  const int r = threadIdx.x / R::kGroups, c = (threadIdx.x % R::kGroups) * R::kVec;
  const int64_t col = col0 + c, first = row0 + r;
  const bool col_in = col < width;
  const Op* p = src + first * width + col;
  Op* d = dst + r * Mma<Op>::kLd + c;
#pragma unroll
  for (int k = 0; k < R::kCount; ++k) {
    const bool in = col_in && first + k * kStep < nrows;
    Op* dk = d + k * kStep * Mma<Op>::kLd;
    if (vec) {
      const unsigned saddr = static_cast<unsigned>(__cvta_generic_to_shared(dk));
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(saddr),
                   "l"(in ? p + k * kStep * width : src), "r"(in ? 16 : 0)
                   : "memory");
    } else {
      for (int i = 0; i < R::kVec; ++i)
        dk[i] = (in && col + i < width) ? p[k * kStep * width + i] : Mma<Op>::from_float(0.f);
    }
  }
}
__device__ inline void async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
__device__ inline void async_wait_all() {
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// Scales, in place, the groups of a shared tile that this thread copied (tile_async): group k by scale[k].
template <typename Op>
__device__ inline void scale_own_groups(Op* tile, const float* scale) {
  using R = TileRegs<Op>;
#pragma unroll
  for (int k = 0; k < R::kCount; ++k) {
    const int idx = threadIdx.x + k * kThreads;
    uint4* q =
        reinterpret_cast<uint4*>(tile + (idx / R::kGroups) * Mma<Op>::kLd + (idx % R::kGroups) * R::kVec);
    uint4 v = *q;
    Op* e = reinterpret_cast<Op*>(&v);
#pragma unroll
    for (int i = 0; i < R::kVec; ++i)
      e[i] = Mma<Op>::from_float(Mma<Op>::to_float(e[i]) * scale[k]);
    *q = v;
  }
}

// ---- one warp's products
// --------------------------------------------------------------------------------------- acc[j] += A(16
// rows, k) · B(k, columns 16j … 16j+15) for k over 0 … 63 and j = 0 … 3. `a` points at the warp's first row:
// A(m, k) = a[m·lda + k] (row major) or a[k·lda + m] (column major); B(k, n) = b[k·ldb + n] (row major) or
// b[n·ldb + k] (column major).
template <typename Op, typename LA, typename LB>
__device__ inline void warp_mma(FragAcc<Op> (&acc)[4], const Op* a, int lda, const Op* b, int ldb) {
  using M = Mma<Op>;
  constexpr bool a_row = std::is_same<LA, wmma::row_major>::value;
  constexpr bool b_row = std::is_same<LB, wmma::row_major>::value;
#pragma unroll
  for (int k = 0; k < kL; k += M::K) {
    wmma::fragment<wmma::matrix_a, 16, 16, M::K, typename M::Prec, LA> fa;
    wmma::load_matrix_sync(fa, a_row ? a + k : a + (size_t)k * lda, lda);
    M::fix(fa);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      wmma::fragment<wmma::matrix_b, 16, 16, M::K, typename M::Prec, LB> fb;
      wmma::load_matrix_sync(fb, b_row ? b + (size_t)k * ldb + 16 * j : b + (size_t)16 * j * ldb + k, ldb);
      M::fix(fb);
      wmma::mma_sync(acc[j], fa, fb, acc[j]);
    }
  }
}

template <typename Op>
__device__ inline void zero(FragAcc<Op> (&acc)[4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j)
    wmma::fill_fragment(acc[j], 0.f);
}

// The warp's four fragments into its 16 rows of a float staging tile [64 × kLdF] (rows 16w …), and back.
template <typename Op>
__device__ inline void stage_store(float* stage, const FragAcc<Op> (&acc)[4]) {
  const int w = threadIdx.x / 32;
#pragma unroll
  for (int j = 0; j < 4; ++j)
    wmma::store_matrix_sync(stage + (size_t)16 * w * kLdF + 16 * j, acc[j], kLdF, wmma::mem_row_major);
  __syncwarp();
}
template <typename Op>
__device__ inline void stage_load(FragAcc<Op> (&acc)[4], const float* stage) {
  __syncwarp();
  const int w = threadIdx.x / 32;
#pragma unroll
  for (int j = 0; j < 4; ++j)
    wmma::load_matrix_sync(acc[j], stage + (size_t)16 * w * kLdF + 16 * j, kLdF, wmma::mem_row_major);
}

// stage[i][c] = f(i, c, stage[i][c]) over the warp's 16 rows (i is the row within the 64-row tile).
template <typename F>
__device__ inline void stage_map(float* stage, F f) {
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int idx = lane; idx < 16 * kTile; idx += 32) {
    const int i = 16 * w + idx / kTile, c = idx % kTile;
    stage[i * kLdF + c] = f(i, c, stage[i * kLdF + c]);
  }
  __syncwarp();
}

// The warp's 16 staged rows to rows row0+i, columns col0+c of a row-major [nrows × width] matrix of Out,
// value f(i, v); what falls outside is skipped.
template <typename Out, typename F>
__device__ inline void warp_store_rows(const float* stage, Out* dst, int64_t nrows, int64_t width,
                                       int64_t row0, int64_t col0, F f) {
  constexpr int V = 16 / (int)sizeof(Out);
  constexpr int G = kTile / V;
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool vec = width % V == 0 && aligned16(dst);
  for (int idx = lane; idx < 16 * G; idx += 32) {
    const int i = 16 * w + idx / G, c = (idx % G) * V;
    const int64_t row = row0 + i, col = col0 + c;
    if (row >= nrows || col >= width) continue;
    alignas(16) Out vals[V];
#pragma unroll
    for (int e = 0; e < V; ++e)
      vals[e] = Mma<Out>::from_float(f(i, stage[i * kLdF + c + e]));
    Out* p = dst + row * width + col;
    if (vec) {
      *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(vals);
    } else {
      for (int e = 0; e < V && col + e < width; ++e)
        p[e] = vals[e];
    }
  }
  __syncwarp();
}

__device__ inline float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

}  // namespace hedgelab::cuda::detail
