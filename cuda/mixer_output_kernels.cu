// The fused mixer read-out, forward and backward (mixer_output_params.h has the maths and the contract). A
// warp walks a row (b, t, h) of P values, VEC adjacent ones a lane (8, or 1 where P, a stride or a pointer
// does not allow 16-byte accesses); the rows' reduction (dden) is a warp shuffle, the heads' reductions (dD,
// dgain) a block reduction written as one partial a block. Plain CUDA C++: no LibTorch type is seen here.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/mixer_output_params.h"
#include "cuda/vector_io.cuh"

namespace hedgelab::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kThreads = kMixerOutputWarps * kWarp;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// g = 2σ(z), exact at both ends (expf(−z) = inf gives 0).
__device__ __forceinline__ float gate_of(float z) {
  return 2.f / (1.f + expf(-z));
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads)
    mixer_output_fwd_kernel(MixerOutputShape s, const T* __restrict__ num, const float* __restrict__ den,
                            const T* __restrict__ x, const float* __restrict__ D, const T* __restrict__ z,
                            const float* __restrict__ gain, T* __restrict__ y) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t h = blockIdx.y;
  const float Dh = D[h], gh = gain[h];
  const int64_t rows = s.B * s.T;
  for (int i = warp; i < kMixerOutputRows; i += kMixerOutputWarps) {
    const int64_t r = int64_t(blockIdx.x) * kMixerOutputRows + i;
    if (r >= rows) break;
    const int64_t b = r / s.T, t = r % s.T;
    const int64_t bht = (b * s.H + h) * s.T + t;
    const float inv = 1.f / (den[bht] + s.eps);
    const T* nrow = num + bht * s.P;
    const T* xrow = x + b * s.x_stride_b + h * s.x_stride_h + t * s.x_stride_t;
    const int64_t orow = (r * s.H + h) * s.P;  // the row of y and z
    for (int64_t p = int64_t(lane) * VEC; p < s.P; p += kWarp * VEC) {
      float n[VEC], xv[VEC], zv[VEC], o[VEC];
      load_vec<VEC>(nrow + p, n);
      load_vec<VEC>(xrow + p, xv);
      if (z != nullptr) load_vec<VEC>(z + orow + p, zv);
#pragma unroll
      for (int v = 0; v < VEC; ++v) {
        const float sv = fmaf(n[v], inv, Dh * xv[v]);
        const float g = z != nullptr ? gate_of(zv[v]) : 1.f;
        o[v] = sv * g * gh;
      }
      store_vec<VEC>(y + orow + p, o);
    }
  }
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads)
    mixer_output_bwd_kernel(MixerOutputShape s, const T* __restrict__ num, const float* __restrict__ den,
                            const T* __restrict__ x, const float* __restrict__ D, const T* __restrict__ z,
                            const float* __restrict__ gain, const T* __restrict__ dy, T* __restrict__ dnum,
                            float* __restrict__ dden, T* __restrict__ dx, T* __restrict__ dz,
                            float* __restrict__ dD_part, float* __restrict__ dgain_part) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t h = blockIdx.y;
  const float Dh = D[h], gh = gain[h];
  const int64_t rows = s.B * s.T;
  float accD = 0.f, accG = 0.f;
  for (int i = warp; i < kMixerOutputRows; i += kMixerOutputWarps) {
    const int64_t r = int64_t(blockIdx.x) * kMixerOutputRows + i;
    if (r >= rows) break;
    const int64_t b = r / s.T, t = r % s.T;
    const int64_t bht = (b * s.H + h) * s.T + t;
    const float inv = 1.f / (den[bht] + s.eps);
    const int64_t nrow = bht * s.P;
    const int64_t xrow = b * s.x_stride_b + h * s.x_stride_h + t * s.x_stride_t;
    const int64_t orow = (r * s.H + h) * s.P;
    float accden = 0.f;
    for (int64_t p = int64_t(lane) * VEC; p < s.P; p += kWarp * VEC) {
      float n[VEC], xv[VEC], zv[VEC], g[VEC];
      load_vec<VEC>(num + nrow + p, n);
      load_vec<VEC>(x + xrow + p, xv);
      load_vec<VEC>(dy + orow + p, g);  // dy, turned into the gradients below
      if (z != nullptr) load_vec<VEC>(z + orow + p, zv);
      float dn[VEC], dxv[VEC];
#pragma unroll
      for (int v = 0; v < VEC; ++v) {
        const float dyv = g[v];
        const float sv = fmaf(n[v], inv, Dh * xv[v]);
        const float gate = z != nullptr ? gate_of(zv[v]) : 1.f;
        const float a = dyv * gate * gh;
        dn[v] = a * inv;
        dxv[v] = a * Dh;
        accD = fmaf(a, xv[v], accD);
        accden = fmaf(a, n[v], accden);
        accG = fmaf(dyv * sv, gate, accG);
        g[v] = dyv * gh * sv * gate * (1.f - 0.5f * gate);  // dz
      }
      store_vec<VEC>(dnum + nrow + p, dn);
      store_vec<VEC>(dx + xrow + p, dxv);
      if (dz != nullptr) store_vec<VEC>(dz + orow + p, g);
    }
    accden = warp_sum(accden);
    if (lane == 0) dden[bht] = -accden * inv * inv;
  }
  // The block's partial sums of dD and dgain.
  __shared__ float red[2][kMixerOutputWarps];
  accD = warp_sum(accD);
  accG = warp_sum(accG);
  if (lane == 0) red[0][warp] = accD, red[1][warp] = accG;
  __syncthreads();
  if (threadIdx.x == 0) {
    float sd = 0.f, sg = 0.f;
#pragma unroll
    for (int w = 0; w < kMixerOutputWarps; ++w)
      sd += red[0][w], sg += red[1][w];
    dD_part[int64_t(blockIdx.x) * s.H + h] = sd;
    dgain_part[int64_t(blockIdx.x) * s.H + h] = sg;
  }
}

// Whether the shape allows VEC = kVec: P and x's strides multiples of kVec (the pointers are checked apart).
bool vector_shape(const MixerOutputShape& s) {
  return s.P % kVec == 0 && s.x_stride_b % kVec == 0 && s.x_stride_h % kVec == 0 && s.x_stride_t % kVec == 0;
}

int64_t vector_bytes(const MixerOutputShape& s) {
  return kVec * (s.dtype == ScanDtype::kBFloat16 ? 2 : 4);
}

dim3 grid_of(const MixerOutputShape& s) {
  return dim3(static_cast<unsigned>(mixer_output_groups(s)), static_cast<unsigned>(s.H));
}

struct FwdLaunch {
  const MixerOutputFwdParams& p;
  cudaStream_t stream;
  template <typename T, int VEC>
  int run() const {
    mixer_output_fwd_kernel<T, VEC><<<grid_of(p.shape), kThreads, 0, stream>>>(
        p.shape, static_cast<const T*>(p.num), p.den, static_cast<const T*>(p.x), p.D,
        static_cast<const T*>(p.z), p.gain, static_cast<T*>(p.y));
    return static_cast<int>(cudaGetLastError());
  }
};

struct BwdLaunch {
  const MixerOutputBwdParams& p;
  cudaStream_t stream;
  template <typename T, int VEC>
  int run() const {
    mixer_output_bwd_kernel<T, VEC><<<grid_of(p.shape), kThreads, 0, stream>>>(
        p.shape, static_cast<const T*>(p.num), p.den, static_cast<const T*>(p.x), p.D,
        static_cast<const T*>(p.z), p.gain, static_cast<const T*>(p.dy), static_cast<T*>(p.dnum), p.dden,
        static_cast<T*>(p.dx), static_cast<T*>(p.dz), p.dD, p.dgain);
    return static_cast<int>(cudaGetLastError());
  }
};

template <typename F>
int dispatch(const MixerOutputShape& s, bool vec, const F& f) {
  if (s.H > 65535) return static_cast<int>(cudaErrorInvalidValue);  // grid.y
  if (s.dtype == ScanDtype::kBFloat16)
    return vec ? f.template run<__nv_bfloat16, kVec>() : f.template run<__nv_bfloat16, 1>();
  return vec ? f.template run<float, kVec>() : f.template run<float, 1>();
}

}  // namespace

int mixer_output_forward(const MixerOutputFwdParams& p, void* stream) {
  const MixerOutputShape& s = p.shape;
  if (s.B == 0 || s.H == 0 || s.T == 0 || s.P == 0) return 0;
  const int64_t vb = vector_bytes(s);
  const bool vec = vector_shape(s) && aligned_to(p.num, vb) && aligned_to(p.x, vb) && aligned_to(p.z, vb) &&
                   aligned_to(p.y, vb);
  return dispatch(s, vec, FwdLaunch{p, static_cast<cudaStream_t>(stream)});
}

int mixer_output_backward(const MixerOutputBwdParams& p, void* stream) {
  const MixerOutputShape& s = p.shape;
  if (s.B == 0 || s.H == 0 || s.T == 0 || s.P == 0) return 0;
  const int64_t vb = vector_bytes(s);
  const bool vec = vector_shape(s) && aligned_to(p.num, vb) && aligned_to(p.x, vb) && aligned_to(p.z, vb) &&
                   aligned_to(p.dy, vb) && aligned_to(p.dnum, vb) && aligned_to(p.dx, vb) &&
                   aligned_to(p.dz, vb);
  return dispatch(s, vec, BwdLaunch{p, static_cast<cudaStream_t>(stream)});
}

}  // namespace hedgelab::cuda
