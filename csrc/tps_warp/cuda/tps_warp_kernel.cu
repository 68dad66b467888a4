// CUDA kernels of tps_warp: one thread per output pixel evaluates the spline (K radial terms; the
// control points are read by every thread of a warp at once, a broadcast) and samples every
// channel, so the (B, H, W, 2) grid never exists. The backward recomputes the spline and scatters
// into the 4 bilinear taps with atomics (taps of neighbouring pixels overlap). Tensors of any
// strides. The per-thread work (pixel index, tail guard, taps, strided and atomic target offsets)
// is in tps_warp_math.h, which a host emulation shares (tests/test_tps_warp.py). No torch headers.
#include "cuda_scalar.cuh"
#include "tps_warp/cuda/tps_warp_kernel.h"
#include "tps_warp/tps_warp_math.h"

namespace refcolor {
namespace cuda {
namespace {

struct DeviceAtomicAdd {
  template <typename acc_t>
  __device__ __forceinline__ void operator()(acc_t* p, acc_t v) const {
    atomicAdd(p, v);
  }
};

template <typename T, typename acc_t>
__global__ void __launch_bounds__(kTpsThreads)
    tps_warp_forward_kernel(const T* __restrict__ image, TpsStrides is, const acc_t* __restrict__ params,
                            const acc_t* __restrict__ ctrl, T* __restrict__ out, TpsStrides os, int64_t C, int64_t H,
                            int64_t W, int64_t K, int padding) {
  int64_t p;
  if (!tps_thread_pixel(blockIdx.x, threadIdx.x, H * W, &p)) return;
  const int64_t b = blockIdx.y;
  tps_forward_pixel(image, is, params, ctrl, out, os, b, p, C, H, W, K, padding, DeviceLoad(), DeviceStore());
}

template <typename T, typename acc_t>
__global__ void __launch_bounds__(kTpsThreads)
    tps_warp_backward_kernel(const T* __restrict__ grad_out, TpsStrides os, const acc_t* __restrict__ params,
                             const acc_t* __restrict__ ctrl, acc_t* __restrict__ grad_image, TpsStrides gs, int64_t C,
                             int64_t H, int64_t W, int64_t K, int padding) {
  int64_t p;
  if (!tps_thread_pixel(blockIdx.x, threadIdx.x, H * W, &p)) return;
  const int64_t b = blockIdx.y;
  tps_backward_pixel(grad_out, os, params, ctrl, grad_image, gs, b, p, C, H, W, K, padding, DeviceLoad(),
                     DeviceAtomicAdd());
}

dim3 pixel_grid(const TpsWarpShape& z) {
  return dim3(static_cast<unsigned>(tps_block_count(z.height * z.width)), static_cast<unsigned>(z.batch));
}

template <typename T>
cudaError_t forward(const TpsWarpShape& z, const void* image, TpsStrides is, const void* params, const void* ctrl,
                    void* out, TpsStrides os, int padding, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  tps_warp_forward_kernel<T, acc_t><<<pixel_grid(z), kTpsThreads, 0, stream>>>(
      static_cast<const T*>(image), is, static_cast<const acc_t*>(params), static_cast<const acc_t*>(ctrl),
      static_cast<T*>(out), os, z.channels, z.height, z.width, z.points, padding);
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward(const TpsWarpShape& z, const void* grad_out, TpsStrides os, const void* params, const void* ctrl,
                     void* grad_image, TpsStrides gs, int padding, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  tps_warp_backward_kernel<T, acc_t><<<pixel_grid(z), kTpsThreads, 0, stream>>>(
      static_cast<const T*>(grad_out), os, static_cast<const acc_t*>(params), static_cast<const acc_t*>(ctrl),
      static_cast<acc_t*>(grad_image), gs, z.channels, z.height, z.width, z.points, padding);
  return cudaGetLastError();
}

}  // namespace

cudaError_t tps_warp_forward(TpsDType dtype, TpsWarpShape shape, const void* image, TpsStrides image_strides,
                             const void* params, const void* ctrl, void* out, TpsStrides out_strides, int padding,
                             cudaStream_t stream) {
#define REFCOLOR_FORWARD(T) forward<T>(shape, image, image_strides, params, ctrl, out, out_strides, padding, stream)
  switch (dtype) {
    case TpsDType::Float32:
      return REFCOLOR_FORWARD(float);
    case TpsDType::Float64:
      return REFCOLOR_FORWARD(double);
    case TpsDType::Float16:
      return REFCOLOR_FORWARD(__half);
    case TpsDType::BFloat16:
      return REFCOLOR_FORWARD(__nv_bfloat16);
  }
#undef REFCOLOR_FORWARD
  return cudaErrorInvalidValue;
}

cudaError_t tps_warp_backward(TpsDType dtype, TpsWarpShape shape, const void* grad_out, TpsStrides grad_out_strides,
                              const void* params, const void* ctrl, void* grad_image_acc, TpsStrides grad_strides,
                              int padding, cudaStream_t stream) {
#define REFCOLOR_BACKWARD(T) \
  backward<T>(shape, grad_out, grad_out_strides, params, ctrl, grad_image_acc, grad_strides, padding, stream)
  switch (dtype) {
    case TpsDType::Float32:
      return REFCOLOR_BACKWARD(float);
    case TpsDType::Float64:
      return REFCOLOR_BACKWARD(double);
    case TpsDType::Float16:
      return REFCOLOR_BACKWARD(__half);
    case TpsDType::BFloat16:
      return REFCOLOR_BACKWARD(__nv_bfloat16);
  }
#undef REFCOLOR_BACKWARD
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace refcolor
