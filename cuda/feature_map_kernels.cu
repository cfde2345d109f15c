// The fused Hedgehog feature map, forward and backward (feature_map_params.h has the maths and the contract).
// One warp a row (one token of one head): the bias add, both halves' max/min and sums, and the write of φ in
// one kernel, where the ATen form makes six passes over float32 [rows, m] / [rows, 2m] tensors (bias add,
// negation, two softmaxes, the concatenation, the cast to the products' dtype). The row is read from global
// memory once per pass; its m values stay in L1 between passes. Plain CUDA C++: no LibTorch type is seen
// here.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/feature_map_params.h"

namespace hedgelab::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // warps a block
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float load(const float* p) {
  return *p;
}
__device__ __forceinline__ float load(const __nv_bfloat16* p) {
  return __bfloat162float(*p);
}
__device__ __forceinline__ void store(float* p, float v) {
  *p = v;
}
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16(v);
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2)
    v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
__device__ __forceinline__ float warp_min(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2)
    v = fminf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2)
    v += __shfl_xor_sync(kFull, v, o);
  return v;
}

// The row's statistics: max z, min z and the two softmax denominators' reciprocals.
struct RowStats {
  float hi, lo, inv_pos, inv_neg;
};

template <typename T>
__device__ __forceinline__ RowStats row_stats(const T* z, const float* b, int64_t m, int lane) {
  float hi = -INFINITY, lo = INFINITY;
  for (int64_t j = lane; j < m; j += kWarp) {
    const float v = load(z + j) + b[j];
    hi = fmaxf(hi, v);
    lo = fminf(lo, v);
  }
  hi = warp_max(hi);
  lo = warp_min(lo);
  float sp = 0.f, sn = 0.f;
  for (int64_t j = lane; j < m; j += kWarp) {
    const float v = load(z + j) + b[j];
    sp += expf(v - hi);
    sn += expf(lo - v);
  }
  return {hi, lo, 1.f / warp_sum(sp), 1.f / warp_sum(sn)};
}

template <typename T>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock)
    feature_map_fwd_kernel(const T* __restrict__ z, const float* __restrict__ b, T* __restrict__ phi,
                           int64_t rows, int64_t H, int64_t T_len, int64_t m) {
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;  // a whole warp leaves together
  const int64_t h = (row / T_len) % H;
  const T* zr = z + row * m;
  const float* br = b + h * m;
  const RowStats s = row_stats(zr, br, m, lane);
  T* out = phi + row * 2 * m;
  for (int64_t j = lane; j < m; j += kWarp) {
    const float v = load(zr + j) + br[j];
    store(out + j, expf(v - s.hi) * s.inv_pos);
    store(out + m + j, expf(s.lo - v) * s.inv_neg);
  }
}

template <typename T>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock)
    feature_map_bwd_kernel(const T* __restrict__ z, const float* __restrict__ b, const T* __restrict__ dphi,
                           float* __restrict__ dz, int64_t rows, int64_t H, int64_t T_len, int64_t m) {
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const int64_t h = (row / T_len) % H;
  const T* zr = z + row * m;
  const float* br = b + h * m;
  const T* gr = dphi + row * 2 * m;
  const RowStats s = row_stats(zr, br, m, lane);
  float pg = 0.f, qg = 0.f;  // Σ p g over the first half, Σ q g over the second
  for (int64_t j = lane; j < m; j += kWarp) {
    const float v = load(zr + j) + br[j];
    pg += expf(v - s.hi) * s.inv_pos * load(gr + j);
    qg += expf(s.lo - v) * s.inv_neg * load(gr + m + j);
  }
  pg = warp_sum(pg);
  qg = warp_sum(qg);
  float* out = dz + row * m;
  for (int64_t j = lane; j < m; j += kWarp) {
    const float v = load(zr + j) + br[j];
    const float p = expf(v - s.hi) * s.inv_pos, q = expf(s.lo - v) * s.inv_neg;
    out[j] = p * (load(gr + j) - pg) - q * (load(gr + m + j) - qg);
  }
}

dim3 grid_of(const FeatureMapShape& s) {
  return dim3(static_cast<unsigned>((s.rows + kRowsPerBlock - 1) / kRowsPerBlock));
}

}  // namespace

int feature_map_forward(const FeatureMapFwdParams& p, void* stream) {
  const FeatureMapShape& s = p.shape;
  if (s.rows == 0 || s.m == 0) return 0;
  const auto st = static_cast<cudaStream_t>(stream);
  if (s.dtype == ScanDtype::kBFloat16)
    feature_map_fwd_kernel<__nv_bfloat16><<<grid_of(s), kWarp * kRowsPerBlock, 0, st>>>(
        static_cast<const __nv_bfloat16*>(p.z), p.b, static_cast<__nv_bfloat16*>(p.phi), s.rows, s.H, s.T,
        s.m);
  else
    feature_map_fwd_kernel<float><<<grid_of(s), kWarp * kRowsPerBlock, 0, st>>>(
        static_cast<const float*>(p.z), p.b, static_cast<float*>(p.phi), s.rows, s.H, s.T, s.m);
  return static_cast<int>(cudaGetLastError());
}

int feature_map_backward(const FeatureMapBwdParams& p, void* stream) {
  const FeatureMapShape& s = p.shape;
  if (s.rows == 0 || s.m == 0) return 0;
  const auto st = static_cast<cudaStream_t>(stream);
  if (s.dtype == ScanDtype::kBFloat16)
    feature_map_bwd_kernel<__nv_bfloat16><<<grid_of(s), kWarp * kRowsPerBlock, 0, st>>>(
        static_cast<const __nv_bfloat16*>(p.z), p.b, static_cast<const __nv_bfloat16*>(p.dphi), p.dz, s.rows,
        s.H, s.T, s.m);
  else
    feature_map_bwd_kernel<float><<<grid_of(s), kWarp * kRowsPerBlock, 0, st>>>(
        static_cast<const float*>(p.z), p.b, static_cast<const float*>(p.dphi), p.dz, s.rows, s.H, s.T, s.m);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace hedgelab::cuda
