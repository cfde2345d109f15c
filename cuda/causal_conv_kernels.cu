// The fused short causal convolution, forward and backward (causal_conv_params.h has the maths and the
// contract). Each thread owns VEC adjacent channels (8, or 1 where C is not a multiple of 8 or a pointer is
// not aligned for it) and walks kCausalConvTile tokens, with the taps indexed by lag (lag = W−1−j) so that
// the register window shifts by one a token and every index is known at compile time:
//   forward   hist[lag] = x[t − lag],       out[t] = bias + Σ_lag wl[lag] · hist[lag]
//   backward  fut[lead] = dout[s + lead],   dx[s] = Σ_lead wl[lead] · fut[lead],
//             dwl[lead] += x[s] · fut[lead],  db += fut[0]        (walking s downwards)
// with wl[lag] = w[W−1−lag]; K, the register window, is 4 or 8 ≥ W, and lags from W on are skipped (not
// multiplied by zero, so an inf outside the window does not turn into a NaN). The backward reduces its
// partial sums over the block's threads along time in shared memory and writes one per (b, block).
// Plain CUDA C++: no LibTorch type is seen here.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/causal_conv_params.h"
#include "cuda/vector_io.cuh"

namespace hedgelab::cuda {
namespace {

constexpr int kThreadsX = 32;  // channel groups a block
constexpr int kThreadsY = kCausalConvTilesPerBlock;

// wl[lag][v] = w[c0+v, W−1−lag] for lag < W, else 0.
template <int VEC, int K>
__device__ __forceinline__ void load_taps(const float* __restrict__ w, int64_t c0, int W,
                                          float (&wl)[K][VEC]) {
#pragma unroll
  for (int lag = 0; lag < K; ++lag)
#pragma unroll
    for (int v = 0; v < VEC; ++v)
      wl[lag][v] = lag < W ? w[(c0 + v) * W + (W - 1 - lag)] : 0.f;
}

template <typename T, int VEC, int K>
__global__ void __launch_bounds__(kThreadsX* kThreadsY)
    causal_conv_fwd_kernel(const T* __restrict__ x, const float* __restrict__ w,
                           const float* __restrict__ bias, T* __restrict__ out, int64_t T_, int64_t C,
                           int W) {
  const int64_t c0 = (int64_t(blockIdx.x) * kThreadsX + threadIdx.x) * VEC;
  const int64_t t0 = (int64_t(blockIdx.y) * kThreadsY + threadIdx.y) * kCausalConvTile;
  if (c0 >= C || t0 >= T_) return;
  const int64_t t1 = t0 + kCausalConvTile < T_ ? t0 + kCausalConvTile : T_;
  const int64_t base = int64_t(blockIdx.z) * T_ * C + c0;
  float wl[K][VEC], b[VEC], hist[K][VEC];
  load_taps<VEC, K>(w, c0, W, wl);
#pragma unroll
  for (int v = 0; v < VEC; ++v)
    b[v] = bias[c0 + v];
    // hist[i] = x[t0−1−i] (zeros before t = 0 and past the window), so that the first shift leaves them at
    // lags 1..K−1.
#pragma unroll
  for (int i = 0; i < K; ++i) {
    if (i + 1 < W && t0 - 1 - i >= 0) {
      load_vec<VEC>(x + base + (t0 - 1 - i) * C, hist[i]);
    } else {
#pragma unroll
      for (int v = 0; v < VEC; ++v)
        hist[i][v] = 0.f;
    }
  }
  for (int64_t t = t0; t < t1; ++t) {
#pragma unroll
    for (int lag = K - 1; lag > 0; --lag)
#pragma unroll
      for (int v = 0; v < VEC; ++v)
        hist[lag][v] = hist[lag - 1][v];
    load_vec<VEC>(x + base + t * C, hist[0]);
    float o[VEC];
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      o[v] = b[v];
#pragma unroll
      for (int lag = 0; lag < K; ++lag)
        if (lag < W) o[v] = fmaf(wl[lag][v], hist[lag][v], o[v]);
    }
    store_vec<VEC>(out + base + t * C, o);
  }
}

template <typename T, int VEC, int K>
__global__ void __launch_bounds__(kThreadsX* kThreadsY)
    causal_conv_bwd_kernel(const T* __restrict__ x, const float* __restrict__ w, const T* __restrict__ dout,
                           T* __restrict__ dx, float* __restrict__ dw_part, float* __restrict__ db_part,
                           int64_t T_, int64_t C, int W) {
  const int64_t c0 = (int64_t(blockIdx.x) * kThreadsX + threadIdx.x) * VEC;
  const int64_t t0 = (int64_t(blockIdx.y) * kThreadsY + threadIdx.y) * kCausalConvTile;
  const bool active = c0 < C && t0 < T_;
  float dwl[K][VEC], db[VEC];
#pragma unroll
  for (int v = 0; v < VEC; ++v) {
    db[v] = 0.f;
#pragma unroll
    for (int lead = 0; lead < K; ++lead)
      dwl[lead][v] = 0.f;
  }
  if (active) {
    const int64_t t1 = t0 + kCausalConvTile < T_ ? t0 + kCausalConvTile : T_;
    const int64_t base = int64_t(blockIdx.z) * T_ * C + c0;
    float wl[K][VEC], fut[K][VEC];
    load_taps<VEC, K>(w, c0, W, wl);
    // fut[i] = dout[t1+i] (zeros past T and past the window), so that the first shift leaves them at
    // leads 1..K−1.
#pragma unroll
    for (int lead = 0; lead < K; ++lead) {
      if (lead + 1 < W && t1 + lead < T_) {
        load_vec<VEC>(dout + base + (t1 + lead) * C, fut[lead]);
      } else {
#pragma unroll
        for (int v = 0; v < VEC; ++v)
          fut[lead][v] = 0.f;
      }
    }
    for (int64_t s = t1 - 1; s >= t0; --s) {
#pragma unroll
      for (int lead = K - 1; lead > 0; --lead)
#pragma unroll
        for (int v = 0; v < VEC; ++v)
          fut[lead][v] = fut[lead - 1][v];
      load_vec<VEC>(dout + base + s * C, fut[0]);
      float xs[VEC];
      load_vec<VEC>(x + base + s * C, xs);
      if (dx != nullptr) {
        float g[VEC];
#pragma unroll
        for (int v = 0; v < VEC; ++v) {
          g[v] = 0.f;
#pragma unroll
          for (int lead = 0; lead < K; ++lead)
            if (lead < W) g[v] = fmaf(wl[lead][v], fut[lead][v], g[v]);
        }
        store_vec<VEC>(dx + base + s * C, g);
      }
#pragma unroll
      for (int v = 0; v < VEC; ++v) {
        db[v] += fut[0][v];
#pragma unroll
        for (int lead = 0; lead < K; ++lead)
          if (lead < W) dwl[lead][v] = fmaf(xs[v], fut[lead][v], dwl[lead][v]);
      }
    }
  }
  // Sum the partials of the block's threads along time, one tap (then the bias) at a time.
  __shared__ float red[kThreadsY][kThreadsX][VEC];
  const int64_t group = int64_t(blockIdx.z) * gridDim.y + blockIdx.y;
#pragma unroll
  for (int slot = 0; slot <= K; ++slot) {
#pragma unroll
    for (int v = 0; v < VEC; ++v)
      red[threadIdx.y][threadIdx.x][v] = slot < K ? dwl[slot][v] : db[v];
    __syncthreads();
    if (threadIdx.y == 0 && c0 < C && (slot == K || slot < W)) {
#pragma unroll
      for (int v = 0; v < VEC; ++v) {
        float sum = 0.f;
#pragma unroll
        for (int y = 0; y < kThreadsY; ++y)
          sum += red[y][threadIdx.x][v];
        if (slot < K)
          dw_part[(group * C + c0 + v) * W + (W - 1 - slot)] = sum;
        else
          db_part[group * C + c0 + v] = sum;
      }
    }
    __syncthreads();
  }
}

dim3 grid_of(const CausalConvShape& s, int vec) {
  const int64_t groups = (s.C + vec - 1) / vec;
  return dim3(static_cast<unsigned>((groups + kThreadsX - 1) / kThreadsX),
              static_cast<unsigned>((s.T + kCausalConvSpan - 1) / kCausalConvSpan),
              static_cast<unsigned>(s.B));
}

// The two launches as functors, so that one dispatch picks the dtype, the vector width and the window.
struct FwdLaunch {
  const CausalConvFwdParams& p;
  cudaStream_t stream;
  template <typename T, int VEC, int K>
  int run() const {
    const CausalConvShape& s = p.shape;
    causal_conv_fwd_kernel<T, VEC, K><<<grid_of(s, VEC), dim3(kThreadsX, kThreadsY), 0, stream>>>(
        static_cast<const T*>(p.x), p.weight, p.bias, static_cast<T*>(p.out), s.T, s.C,
        static_cast<int>(s.W));
    return static_cast<int>(cudaGetLastError());
  }
};

struct BwdLaunch {
  const CausalConvBwdParams& p;
  cudaStream_t stream;
  template <typename T, int VEC, int K>
  int run() const {
    const CausalConvShape& s = p.shape;
    causal_conv_bwd_kernel<T, VEC, K><<<grid_of(s, VEC), dim3(kThreadsX, kThreadsY), 0, stream>>>(
        static_cast<const T*>(p.x), p.weight, static_cast<const T*>(p.dout), static_cast<T*>(p.dx), p.dweight,
        p.dbias, s.T, s.C, static_cast<int>(s.W));
    return static_cast<int>(cudaGetLastError());
  }
};

// Runs f.run<T, VEC, K>() for the shape's dtype, its vector width and its window.
template <typename T, typename F>
int dispatch_width(const CausalConvShape& s, bool vec, const F& f) {
  const bool small = s.W <= 4;
  if (vec) return small ? f.template run<T, kVec, 4>() : f.template run<T, kVec, 8>();
  return small ? f.template run<T, 1, 4>() : f.template run<T, 1, 8>();
}

template <typename F>
int dispatch(const CausalConvShape& s, bool vector_ok, const F& f) {
  if (s.W < 1 || s.W > kCausalConvMaxW) return static_cast<int>(cudaErrorInvalidValue);
  const bool vec = vector_ok && s.C % kVec == 0;
  if (s.dtype == ScanDtype::kBFloat16) return dispatch_width<__nv_bfloat16>(s, vec, f);
  return dispatch_width<float>(s, vec, f);
}

int64_t vector_bytes(const CausalConvShape& s) {
  return kVec * (s.dtype == ScanDtype::kBFloat16 ? 2 : 4);
}

}  // namespace

int causal_conv_forward(const CausalConvFwdParams& p, void* stream) {
  const CausalConvShape& s = p.shape;
  if (s.B == 0 || s.T == 0 || s.C == 0) return 0;
  const int64_t vb = vector_bytes(s);
  return dispatch(s, aligned_to(p.x, vb) && aligned_to(p.out, vb),
                  FwdLaunch{p, static_cast<cudaStream_t>(stream)});
}

int causal_conv_backward(const CausalConvBwdParams& p, void* stream) {
  const CausalConvShape& s = p.shape;
  if (s.B == 0 || s.T == 0 || s.C == 0) return 0;
  const int64_t vb = vector_bytes(s);
  return dispatch(s, aligned_to(p.x, vb) && aligned_to(p.dout, vb) && aligned_to(p.dx, vb),
                  BwdLaunch{p, static_cast<cudaStream_t>(stream)});
}

}  // namespace hedgelab::cuda
