#pragma once
// Device-side dtype handling shared by the CUDA kernels: the accumulator type of each storage type,
// and widening loads / rounding stores for the 16-bit types (torch's nvcc flags switch off their
// implicit conversions), and the same as functors. No torch headers.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

// The minimum architecture, declared (setup.py's cuda_arch.MIN_ARCH checks TORCH_CUDA_ARCH_LIST):
// atomicAdd on double (tps_warp's backward) exists from sm_60 on.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 600
#error "refcolor's CUDA kernels need compute capability 6.0 or newer (atomicAdd on double)"
#endif

namespace refcolor {
namespace cuda {

template <typename T>
struct Acc {
  using type = float;  // float32 math for float16 / bfloat16 / float32
};
template <>
struct Acc<double> {
  using type = double;
};

__device__ __forceinline__ float load(const float* p) {
  return *p;
}
__device__ __forceinline__ double load(const double* p) {
  return *p;
}
__device__ __forceinline__ float load(const __half* p) {
  return __half2float(*p);
}
__device__ __forceinline__ float load(const __nv_bfloat16* p) {
  return __bfloat162float(*p);
}

__device__ __forceinline__ void store(float* p, float v) {
  *p = v;
}
__device__ __forceinline__ void store(double* p, double v) {
  *p = v;
}
__device__ __forceinline__ void store(__half* p, float v) {
  *p = __float2half_rn(v);
}
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16_rn(v);
}

// load / store as functors, for the kernels' helpers shared with the host emulations
// (*_math.h take the memory access as a parameter).
struct DeviceLoad {
  template <typename T>
  __device__ __forceinline__ auto operator()(const T* p) const {
    return load(p);
  }
};
struct DeviceStore {
  template <typename T, typename acc_t>
  __device__ __forceinline__ void operator()(T* p, acc_t v) const {
    store(p, v);
  }
};

}  // namespace cuda
}  // namespace refcolor
