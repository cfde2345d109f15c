// The fused cosine alignment, forward and backward (cosine_params.h has the maths and the contract). One warp
// a row: the forward reads s and t once and reduces s·t, ‖s‖² and ‖t‖² together in float32; the backward
// reads them once more and writes ∂s (and ∂t) with the row's three stored numbers. Rows whose length is a
// multiple of 8 move 8 values a lane a load (16 or 32 bytes). Plain CUDA C++: no LibTorch type is seen here.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cosine_params.h"
#include "cuda/dtype_pair.cuh"
#include "cuda/vector_io.cuh"

namespace hedgelab::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // warps a block
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2)
    v += __shfl_xor_sync(kFull, v, o);
  return v;
}

template <typename TS, typename TT, bool kVector>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock)
    cosine_fwd_kernel(const TS* __restrict__ s, const TT* __restrict__ t, float* __restrict__ cos,
                      float* __restrict__ stats, int64_t rows, int64_t d, float eps) {
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;  // a whole warp leaves together
  const TS* sr = s + row * d;
  const TT* tr = t + row * d;
  float st = 0.f, ss = 0.f, tt = 0.f;
  if (kVector) {
    for (int64_t j = int64_t(lane) * kVec; j < d; j += kWarp * kVec) {
      float a[kVec], b[kVec];
      load8(sr + j, a);
      load8(tr + j, b);
#pragma unroll
      for (int i = 0; i < kVec; ++i) {
        st = fmaf(a[i], b[i], st);
        ss = fmaf(a[i], a[i], ss);
        tt = fmaf(b[i], b[i], tt);
      }
    }
  } else {
    for (int64_t j = lane; j < d; j += kWarp) {
      const float a = load1(sr + j), b = load1(tr + j);
      st = fmaf(a, b, st);
      ss = fmaf(a, a, ss);
      tt = fmaf(b, b, tt);
    }
  }
  st = warp_sum(st);
  ss = warp_sum(ss);
  tt = warp_sum(tt);
  if (lane == 0) {
    const float ns = fmaxf(sqrtf(ss), eps), nt = fmaxf(sqrtf(tt), eps);
    const float c = st / (ns * nt);
    cos[row] = c;
    stats[3 * row] = ns;
    stats[3 * row + 1] = nt;
    stats[3 * row + 2] = c;
  }
}

// ∂x = g (y / (n_x n_y) − [‖x‖ > ε] cos x / ‖x‖²) for x = s (into ds) and x = t (into dt), either skipped
// when null.
template <typename TS, typename TT, bool kVector>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock)
    cosine_bwd_kernel(const TS* __restrict__ s, const TT* __restrict__ t, const float* __restrict__ stats,
                      const float* __restrict__ dcos, TS* __restrict__ ds, TT* __restrict__ dt, int64_t rows,
                      int64_t d, float eps) {
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float ns = stats[3 * row], nt = stats[3 * row + 1], c = stats[3 * row + 2], g = dcos[row];
  const float cross = g / (ns * nt);
  // n_x = ‖x‖ exactly when the norm was not clamped; a clamped norm contributes no gradient.
  const float self_s = ns > eps ? g * c / (ns * ns) : 0.f, self_t = nt > eps ? g * c / (nt * nt) : 0.f;
  const TS* sr = s + row * d;
  const TT* tr = t + row * d;
  TS* dsr = ds ? ds + row * d : nullptr;
  TT* dtr = dt ? dt + row * d : nullptr;
  if (kVector) {
    for (int64_t j = int64_t(lane) * kVec; j < d; j += kWarp * kVec) {
      float a[kVec], b[kVec], o[kVec];
      load8(sr + j, a);
      load8(tr + j, b);
      if (dsr) {
#pragma unroll
        for (int i = 0; i < kVec; ++i)
          o[i] = cross * b[i] - self_s * a[i];
        store8(dsr + j, o);
      }
      if (dtr) {
#pragma unroll
        for (int i = 0; i < kVec; ++i)
          o[i] = cross * a[i] - self_t * b[i];
        store8(dtr + j, o);
      }
    }
  } else {
    for (int64_t j = lane; j < d; j += kWarp) {
      const float a = load1(sr + j), b = load1(tr + j);
      if (dsr) store1(dsr + j, cross * b - self_s * a);
      if (dtr) store1(dtr + j, cross * a - self_t * b);
    }
  }
}

dim3 grid_of(const CosineShape& s) {
  return dim3(static_cast<unsigned>((s.rows + kRowsPerBlock - 1) / kRowsPerBlock));
}

// The vector path needs every row to start on a 16-byte boundary of both inputs (and outputs): d a multiple
// of 8 and 16-byte aligned bases.
bool vector_ok(const CosineShape& s, const void* a, const void* b, const void* c, const void* e) {
  auto aligned = [](const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return s.d % kVec == 0 && aligned(a) && aligned(b) && aligned(c) && aligned(e);
}

template <typename TS, typename TT>
int forward_typed(const CosineFwdParams& p, cudaStream_t st) {
  const CosineShape& s = p.shape;
  const auto* sp = static_cast<const TS*>(p.s);
  const auto* tp = static_cast<const TT*>(p.t);
  if (vector_ok(s, p.s, p.t, nullptr, nullptr))
    cosine_fwd_kernel<TS, TT, true>
        <<<grid_of(s), kWarp * kRowsPerBlock, 0, st>>>(sp, tp, p.cos, p.stats, s.rows, s.d, s.eps);
  else
    cosine_fwd_kernel<TS, TT, false>
        <<<grid_of(s), kWarp * kRowsPerBlock, 0, st>>>(sp, tp, p.cos, p.stats, s.rows, s.d, s.eps);
  return static_cast<int>(cudaGetLastError());
}

template <typename TS, typename TT>
int backward_typed(const CosineBwdParams& p, cudaStream_t st) {
  const CosineShape& s = p.shape;
  const auto* sp = static_cast<const TS*>(p.s);
  const auto* tp = static_cast<const TT*>(p.t);
  auto* dsp = static_cast<TS*>(p.ds);
  auto* dtp = static_cast<TT*>(p.dt);
  if (vector_ok(s, p.s, p.t, p.ds, p.dt))
    cosine_bwd_kernel<TS, TT, true>
        <<<grid_of(s), kWarp * kRowsPerBlock, 0, st>>>(sp, tp, p.stats, p.dcos, dsp, dtp, s.rows, s.d, s.eps);
  else
    cosine_bwd_kernel<TS, TT, false>
        <<<grid_of(s), kWarp * kRowsPerBlock, 0, st>>>(sp, tp, p.stats, p.dcos, dsp, dtp, s.rows, s.d, s.eps);
  return static_cast<int>(cudaGetLastError());
}

// The instance for the shape's pair of dtypes (dtype_pair.cuh).
template <typename Params, typename... Fs>
int by_dtypes(const Params& p, cudaStream_t st, Fs... fs) {
  return detail::by_dtype_pair(p.shape.s_dtype == ScanDtype::kBFloat16,
                               p.shape.t_dtype == ScanDtype::kBFloat16, p, st, fs...);
}

}  // namespace

int cosine_forward(const CosineFwdParams& p, void* stream) {
  if (p.shape.rows == 0) return 0;
  return by_dtypes(p, static_cast<cudaStream_t>(stream), forward_typed<float, float>,
                   forward_typed<float, __nv_bfloat16>, forward_typed<__nv_bfloat16, float>,
                   forward_typed<__nv_bfloat16, __nv_bfloat16>);
}

int cosine_backward(const CosineBwdParams& p, void* stream) {
  if (p.shape.rows == 0 || (p.ds == nullptr && p.dt == nullptr)) return 0;
  return by_dtypes(p, static_cast<cudaStream_t>(stream), backward_typed<float, float>,
                   backward_typed<float, __nv_bfloat16>, backward_typed<__nv_bfloat16, float>,
                   backward_typed<__nv_bfloat16, __nv_bfloat16>);
}

}  // namespace hedgelab::cuda
