// The fused rotary embedding (rotary_params.h has the maths and the contract). A warp walks one row (b, h,
// t): lanes take the rotated pairs (j, j + r/2), j < r/2, one at a time with the angle's sin and cos in
// float32 (sincosf, full precision), then the channels from r on are copied, VEC adjacent ones a lane (8, or
// 1 where P − r, r, a stride or a pointer does not allow 16-byte accesses). Plain CUDA C++: no LibTorch type
// here.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/rotary_params.h"
#include "cuda/vector_io.cuh"

namespace hedgelab::cuda {
namespace {

constexpr int kWarp = 32;

template <typename T, int VEC>
__global__ void __launch_bounds__(kRotaryWarps* kWarp)
    rotary_kernel(RotaryParams p, const T* __restrict__ in, T* __restrict__ out) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kRotaryWarps + warp;  // (b·H + h)·T + t
  if (row >= p.B * p.H * p.T) return;
  const int64_t t = row % p.T, bh = row / p.T;
  const int64_t h = bh % p.H, b = bh / p.H;
  const T* src = in + b * p.in_stride_b + h * p.in_stride_h + t * p.in_stride_t;
  T* dst = out + row * p.P;
  float pos = static_cast<float>(p.offset + t);
  if (p.linear_factor != 1.f) pos = pos / p.linear_factor;
  const int64_t half = p.r / 2;
  for (int64_t j = lane; j < half; j += kWarp) {
    float s, c;
    sincosf(pos * p.inv_freq[j], &s, &c);
    s *= p.sign;
    const float x1 = load1(src + j), x2 = load1(src + j + half);
    store1(dst + j, x1 * c - x2 * s);
    store1(dst + j + half, x2 * c + x1 * s);
  }
  for (int64_t j = p.r + int64_t(lane) * VEC; j < p.P; j += kWarp * VEC) {
    float v[VEC];
    load_vec<VEC>(src + j, v);
    store_vec<VEC>(dst + j, v);
  }
}

template <typename T>
int launch(const RotaryParams& p, cudaStream_t stream) {
  const int64_t rows = p.B * p.H * p.T;
  const dim3 grid(static_cast<unsigned>((rows + kRotaryWarps - 1) / kRotaryWarps));
  const int64_t vb = kVec * static_cast<int64_t>(sizeof(T));
  const bool vec = p.r % kVec == 0 && (p.P - p.r) % kVec == 0 && p.in_stride_b % kVec == 0 &&
                   p.in_stride_h % kVec == 0 && p.in_stride_t % kVec == 0 && p.P % kVec == 0 &&
                   aligned_to(p.in, vb) && aligned_to(p.out, vb);
  const T* in = static_cast<const T*>(p.in);
  T* out = static_cast<T*>(p.out);
  if (vec)
    rotary_kernel<T, kVec><<<grid, kRotaryWarps * kWarp, 0, stream>>>(p, in, out);
  else
    rotary_kernel<T, 1><<<grid, kRotaryWarps * kWarp, 0, stream>>>(p, in, out);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int rotary_apply(const RotaryParams& p, void* stream) {
  if (p.r <= 0 || p.r % 2 != 0 || p.r > p.P) return static_cast<int>(cudaErrorInvalidValue);
  if (p.B == 0 || p.H == 0 || p.T == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  return p.dtype == ScanDtype::kBFloat16 ? launch<__nv_bfloat16>(p, s) : launch<float>(p, s);
}

}  // namespace hedgelab::cuda
