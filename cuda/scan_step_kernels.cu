// The fused decoding step of the HedgeMamba scan (scan_step_params.h has the maths). Plain CUDA C++: no
// LibTorch type is seen here.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "cuda/scan_step_params.h"
#include "cuda/vector_io.cuh"

namespace hedgelab::cuda {
namespace {

constexpr int kLanes = 64;                          // value columns a pass
constexpr int kGroups = kScanStepThreads / kLanes;  // state rows read side by side

// One block a (b, h). Shared: w = Δ B and C (float32, N each), then the groups' partial sums of num.
// Thread (group g, lane l) walks rows n ≡ g (mod kGroups) of the value columns p0 + l; the vector state and
// den are spread over all threads and reduced through the warps.
template <typename T>
__global__ void __launch_bounds__(kScanStepThreads) scan_step_kernel(ScanStepParams p) {
  extern __shared__ float sm[];
  const int64_t N = p.N, P = p.P, bh = blockIdx.x, h = bh % p.H;
  float* w = sm;                              // [N]
  float* c = w + N;                           // [N]
  float* part = c + N;                        // [kGroups × kLanes]
  float* warp_den = part + kGroups * kLanes;  // [kScanStepThreads / 32]
  const int tid = threadIdx.x, lane = tid % kLanes, group = tid / kLanes;

  const float dt = load1(static_cast<const T*>(p.dt) + bh);
  const float alpha = __expf(dt * load1(static_cast<const T*>(p.A) + h));
  const T* Bm = static_cast<const T*>(p.Bm) + bh * N;
  const T* Cm = static_cast<const T*>(p.Cm) + bh * N;
  for (int64_t i = tid; i < N; i += kScanStepThreads) {
    w[i] = dt * load1(Bm + i);
    c[i] = load1(Cm + i);
  }
  __syncthreads();

  // n' and den.
  const T* n_in = p.n ? static_cast<const T*>(p.n) + bh * N : nullptr;
  T* n_out = static_cast<T*>(p.n_out) + bh * N;
  float d = 0.f;
  for (int64_t i = tid; i < N; i += kScanStepThreads) {
    const float v = (n_in ? alpha * load1(n_in + i) : 0.f) + w[i];
    store1(n_out + i, v);
    d += c[i] * v;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    d += __shfl_xor_sync(0xffffffffu, d, o);
  if (tid % 32 == 0) warp_den[tid / 32] = d;

  // S' and num, kLanes columns at a time.
  const T* S_in = p.S ? static_cast<const T*>(p.S) + bh * N * P : nullptr;
  T* S_out = static_cast<T*>(p.S_out) + bh * N * P;
  const T* x = static_cast<const T*>(p.x) + bh * P;
  T* num = static_cast<T*>(p.num) + bh * P;
  for (int64_t p0 = 0; p0 < P; p0 += kLanes) {
    const int64_t col = p0 + lane;
    float acc = 0.f;
    if (col < P) {
      const float xv = load1(x + col);
#pragma unroll 4
      for (int64_t i = group; i < N; i += kGroups) {
        const float s = (S_in ? alpha * load1(S_in + i * P + col) : 0.f) + w[i] * xv;
        store1(S_out + i * P + col, s);
        acc += c[i] * s;
      }
    }
    part[group * kLanes + lane] = acc;
    __syncthreads();
    if (group == 0 && col < P) {
      float s = 0.f;
#pragma unroll
      for (int g = 0; g < kGroups; ++g)
        s += part[g * kLanes + lane];
      store1(num + col, s);
    }
    __syncthreads();
  }
  __syncthreads();  // warp_den is complete (also when P is 0)
  if (tid == 0) {
    float s = 0.f;
    for (int i = 0; i < kScanStepThreads / 32; ++i)
      s += warp_den[i];
    store1(static_cast<T*>(p.den) + bh, s);
  }
}

// Shared memory past the 48 KB default (N above about 6000) needs the kernel's opt-in first.
template <typename T>
int launch(const ScanStepParams& p, size_t smem, cudaStream_t stream) {
  if (smem > 48 * 1024) {
    const cudaError_t e =
        cudaFuncSetAttribute(scan_step_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return (int)e;
  }
  scan_step_kernel<T><<<dim3((unsigned)(p.B * p.H)), kScanStepThreads, smem, stream>>>(p);
  return (int)cudaGetLastError();
}

}  // namespace

int scan_step(const ScanStepParams& p, void* stream) {
  if (p.B == 0 || p.H == 0) return 0;
  const auto st = static_cast<cudaStream_t>(stream);
  const size_t smem = (2 * p.N + kGroups * kLanes + kScanStepThreads / 32) * sizeof(float);
  return p.dtype == ScanDtype::kBFloat16 ? launch<__nv_bfloat16>(p, smem, st) : launch<float>(p, smem, st);
}

}  // namespace hedgelab::cuda
