// Loads and stores between global memory and float registers for the kernels' two element types (float32
// and bf16): one value (load1/store1) or eight adjacent values (load8/store8: 32 bytes of float32 or 16 of
// bf16 a call, so the pointer must be aligned to that); load_vec/store_vec<VEC> pick one of the two at
// compile time (VEC = kVec or 1). Device code only; no LibTorch type.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace hedgelab::cuda {

constexpr int kVec = 8;  // values a load8/store8

// Host side: whether p (null counts as aligned: an absent operand) is aligned to `bytes`, for picking VEC.
inline bool aligned_to(const void* p, int64_t bytes) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

__device__ __forceinline__ float load1(const float* p) {
  return *p;
}
__device__ __forceinline__ float load1(const __nv_bfloat16* p) {
  return __bfloat162float(*p);
}
__device__ __forceinline__ void store1(float* p, float v) {
  *p = v;
}
__device__ __forceinline__ void store1(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16(v);
}

__device__ __forceinline__ void load8(const float* p, float (&v)[kVec]) {
  const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void load8(const __nv_bfloat16* p, float (&v)[kVec]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    v[2 * i] = f.x, v[2 * i + 1] = f.y;
  }
}
__device__ __forceinline__ void store8(float* p, const float (&v)[kVec]) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  *reinterpret_cast<float4*>(p + 4) = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void store8(__nv_bfloat16* p, const float (&v)[kVec]) {
  uint4 u;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i)
    h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = u;
}

// VEC adjacent values: one load8/store8 when VEC == kVec, else VEC scalar accesses.
template <int VEC, typename T>
__device__ __forceinline__ void load_vec(const T* p, float (&v)[VEC]) {
  if constexpr (VEC == kVec) {
    load8(p, v);
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i)
      v[i] = load1(p + i);
  }
}
template <int VEC, typename T>
__device__ __forceinline__ void store_vec(T* p, const float (&v)[VEC]) {
  if constexpr (VEC == kVec) {
    store8(p, v);
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i)
      store1(p + i, v[i]);
  }
}

}  // namespace hedgelab::cuda
