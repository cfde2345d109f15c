// Stage 2's fused logit losses, forward and backward (logit_losses_params.h has the maths and the contract).
// One block a row of V logits. The forward reads zs and zt once: every thread keeps running log-sum-exp
// partials (a max and its rescaled sums) for zs, zs/τ and zt/τ plus the p-weighted sum of zt/τ − zs/τ;
// warps and then the block merge them. The backward reads zs and zt once more and writes ∂zs. Rows whose
// length is a multiple of 8 move 8 values a thread a load. Plain CUDA C++: no LibTorch type is seen here.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "cuda/dtype_pair.cuh"
#include "cuda/logit_losses_params.h"
#include "cuda/vector_io.cuh"

namespace hedgelab::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;  // a block, one row
constexpr int kWarps = kThreads / kWarp;
constexpr unsigned kFull = 0xffffffffu;

// e^{from − to} for a running max `from` overtaken by `to` (from ≤ to); 0 while nothing was seen.
__device__ __forceinline__ float rescale(float from, float to, float inv_tau = 1.f) {
  return from == -INFINITY ? 0.f : expf((from - to) * inv_tau);
}

// A thread's (then a warp's, then the block's) partial sums over part of a row.
struct Partial {
  float mz = -INFINITY;  // max zs
  float s1 = 0.f;        // Σ e^{zs − mz}
  float sb = 0.f;        // Σ e^{(zs − mz)/τ}
  float ma = -INFINITY;  // max a, a = zt/τ
  float sa = 0.f;        // Σ e^{a − ma}
  float wa = 0.f;        // Σ e^{a − ma} (a − b), b = zs/τ
};

__device__ __forceinline__ Partial merge(const Partial& x, const Partial& y, float inv_tau) {
  Partial o;
  o.mz = fmaxf(x.mz, y.mz);
  if (o.mz != -INFINITY) {
    const float fx = rescale(x.mz, o.mz), fy = rescale(y.mz, o.mz);
    const float gx = rescale(x.mz, o.mz, inv_tau), gy = rescale(y.mz, o.mz, inv_tau);
    o.s1 = x.s1 * fx + y.s1 * fy;
    o.sb = x.sb * gx + y.sb * gy;
  }
  o.ma = fmaxf(x.ma, y.ma);
  if (o.ma != -INFINITY) {
    const float fx = rescale(x.ma, o.ma), fy = rescale(y.ma, o.ma);
    o.sa = x.sa * fx + y.sa * fy;
    o.wa = x.wa * fx + y.wa * fy;
  }
  return o;
}

// Adds VEC adjacent values of zs and zt to the thread's partial: one rescale per VEC values at most.
template <int VEC>
__device__ __forceinline__ void accumulate(Partial& acc, const float (&zs)[VEC], const float (&zt)[VEC],
                                           float tau, float inv_tau) {
  float mz = acc.mz, ma = acc.ma;
  float a[VEC];
#pragma unroll
  for (int i = 0; i < VEC; ++i) {
    a[i] = zt[i] / tau;
    mz = fmaxf(mz, zs[i]);
    ma = fmaxf(ma, a[i]);
  }
  if (mz != acc.mz) {
    acc.s1 *= rescale(acc.mz, mz);
    acc.sb *= rescale(acc.mz, mz, inv_tau);
    acc.mz = mz;
  }
  if (ma != acc.ma) {
    const float f = rescale(acc.ma, ma);
    acc.sa *= f;
    acc.wa *= f;
    acc.ma = ma;
  }
#pragma unroll
  for (int i = 0; i < VEC; ++i) {
    acc.s1 += expf(zs[i] - mz);
    acc.sb += expf((zs[i] - mz) / tau);
    const float e = expf(a[i] - ma);
    acc.sa += e;
    acc.wa += e * (a[i] - zs[i] / tau);
  }
}

__device__ __forceinline__ Partial shuffle_down(const Partial& x, int o) {
  Partial y;
  y.mz = __shfl_down_sync(kFull, x.mz, o);
  y.s1 = __shfl_down_sync(kFull, x.s1, o);
  y.sb = __shfl_down_sync(kFull, x.sb, o);
  y.ma = __shfl_down_sync(kFull, x.ma, o);
  y.sa = __shfl_down_sync(kFull, x.sa, o);
  y.wa = __shfl_down_sync(kFull, x.wa, o);
  return y;
}

template <typename TS, typename TT, int VEC>
__global__ void __launch_bounds__(kThreads)
    logit_losses_fwd_kernel(const TS* __restrict__ zs, const TT* __restrict__ zt,
                            const int64_t* __restrict__ targets, float* __restrict__ ce,
                            float* __restrict__ kl, float* __restrict__ stats, int64_t V, float tau) {
  const int64_t row = blockIdx.x;
  const TS* zr = zs + row * V;
  const TT* tr = zt + row * V;
  const float inv_tau = 1.f / tau;
  Partial acc;
  for (int64_t j = int64_t(threadIdx.x) * VEC; j < V; j += int64_t(kThreads) * VEC) {
    float a[VEC], b[VEC];
    load_vec<VEC>(zr + j, a);
    load_vec<VEC>(tr + j, b);
    accumulate<VEC>(acc, a, b, tau, inv_tau);
  }
  for (int o = kWarp / 2; o > 0; o /= 2)
    acc = merge(acc, shuffle_down(acc, o), inv_tau);
  __shared__ Partial warps[kWarps];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) warps[warp] = acc;
  __syncthreads();
  if (threadIdx.x != 0) return;
  Partial total = warps[0];
  for (int w = 1; w < kWarps; ++w)
    total = merge(total, warps[w], inv_tau);
  const float lse1 = total.mz + logf(total.s1);
  const float lse_b = total.mz / tau + logf(total.sb);
  const float lse_a = total.ma + logf(total.sa);
  const int64_t y = targets[row];
  ce[row] = (y >= 0 && y < V) ? lse1 - load1(zr + y) : NAN;
  kl[row] = total.wa / total.sa - lse_a + lse_b;
  stats[3 * row] = lse1;
  stats[3 * row + 1] = lse_b;
  stats[3 * row + 2] = lse_a;
}

template <typename TS, typename TT, int VEC>
__global__ void __launch_bounds__(kThreads)
    logit_losses_bwd_kernel(const TS* __restrict__ zs, const TT* __restrict__ zt,
                            const int64_t* __restrict__ targets, const float* __restrict__ stats,
                            const float* __restrict__ dce, const float* __restrict__ dkl,
                            TS* __restrict__ dzs, int64_t V, float tau) {
  const int64_t row = blockIdx.x;
  const TS* zr = zs + row * V;
  const TT* tr = zt + row * V;
  TS* dr = dzs + row * V;
  const float lse1 = stats[3 * row], lse_b = stats[3 * row + 1], lse_a = stats[3 * row + 2];
  const float g_ce = dce[row], g_kl = dkl[row] / tau;
  const int64_t y = targets[row];
  for (int64_t j = int64_t(threadIdx.x) * VEC; j < V; j += int64_t(kThreads) * VEC) {
    float a[VEC], b[VEC], o[VEC];
    load_vec<VEC>(zr + j, a);
    load_vec<VEC>(tr + j, b);
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const float softmax = expf(a[i] - lse1);
      const float q = expf(a[i] / tau - lse_b), p = expf(b[i] / tau - lse_a);
      const float hit = (j + i == y) ? 1.f : 0.f;
      o[i] = g_ce * (softmax - hit) + g_kl * (q - p);
    }
    store_vec<VEC>(dr + j, o);
  }
}

template <typename TS, typename TT>
int forward_typed(const LogitLossesFwdParams& p, cudaStream_t st) {
  const LogitLossesShape& s = p.shape;
  const auto* zs = static_cast<const TS*>(p.zs);
  const auto* zt = static_cast<const TT*>(p.zt);
  const dim3 grid(static_cast<unsigned>(s.rows));
  if (s.V % kVec == 0 && aligned_to(p.zs, 16) && aligned_to(p.zt, 16))
    logit_losses_fwd_kernel<TS, TT, kVec>
        <<<grid, kThreads, 0, st>>>(zs, zt, p.targets, p.ce, p.kl, p.stats, s.V, s.temperature);
  else
    logit_losses_fwd_kernel<TS, TT, 1>
        <<<grid, kThreads, 0, st>>>(zs, zt, p.targets, p.ce, p.kl, p.stats, s.V, s.temperature);
  return static_cast<int>(cudaGetLastError());
}

template <typename TS, typename TT>
int backward_typed(const LogitLossesBwdParams& p, cudaStream_t st) {
  const LogitLossesShape& s = p.shape;
  const auto* zs = static_cast<const TS*>(p.zs);
  const auto* zt = static_cast<const TT*>(p.zt);
  auto* dzs = static_cast<TS*>(p.dzs);
  const dim3 grid(static_cast<unsigned>(s.rows));
  if (s.V % kVec == 0 && aligned_to(p.zs, 16) && aligned_to(p.zt, 16) && aligned_to(p.dzs, 16))
    logit_losses_bwd_kernel<TS, TT, kVec>
        <<<grid, kThreads, 0, st>>>(zs, zt, p.targets, p.stats, p.dce, p.dkl, dzs, s.V, s.temperature);
  else
    logit_losses_bwd_kernel<TS, TT, 1>
        <<<grid, kThreads, 0, st>>>(zs, zt, p.targets, p.stats, p.dce, p.dkl, dzs, s.V, s.temperature);
  return static_cast<int>(cudaGetLastError());
}

// The instance for the shape's pair of dtypes (dtype_pair.cuh).
template <typename Params, typename... Fs>
int by_dtypes(const Params& p, cudaStream_t st, Fs... fs) {
  return detail::by_dtype_pair(p.shape.zs_dtype == ScanDtype::kBFloat16,
                               p.shape.zt_dtype == ScanDtype::kBFloat16, p, st, fs...);
}

bool valid(const LogitLossesShape& s) {
  return s.temperature > 0.f && s.rows >= 0 && s.rows <= 0x7fffffff && s.V > 0;
}

}  // namespace

int logit_losses_forward(const LogitLossesFwdParams& p, void* stream) {
  if (p.shape.rows == 0) return 0;
  if (!valid(p.shape)) return static_cast<int>(cudaErrorInvalidValue);
  return by_dtypes(p, static_cast<cudaStream_t>(stream), forward_typed<float, float>,
                   forward_typed<float, __nv_bfloat16>, forward_typed<__nv_bfloat16, float>,
                   forward_typed<__nv_bfloat16, __nv_bfloat16>);
}

int logit_losses_backward(const LogitLossesBwdParams& p, void* stream) {
  if (p.shape.rows == 0) return 0;
  if (!valid(p.shape)) return static_cast<int>(cudaErrorInvalidValue);
  return by_dtypes(p, static_cast<cudaStream_t>(stream), backward_typed<float, float>,
                   backward_typed<float, __nv_bfloat16>, backward_typed<__nv_bfloat16, float>,
                   backward_typed<__nv_bfloat16, __nv_bfloat16>);
}

}  // namespace hedgelab::cuda
