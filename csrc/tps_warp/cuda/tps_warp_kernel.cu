// CUDA kernels of tps_warp: one thread per output pixel evaluates the spline (K radial terms; the
// control points are read by every thread of a warp at once, a broadcast) and samples every
// channel, so the (B, H, W, 2) grid never exists. The backward recomputes the spline and scatters
// into the 4 bilinear taps with atomics (taps of neighbouring pixels overlap). No torch headers.
#include "cuda_scalar.cuh"
#include "tps_warp/cuda/tps_warp_kernel.h"
#include "tps_warp/tps_warp_math.h"

namespace refcolor {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// The taps of output pixel p of sample b: the spline at the pixel, then grid_sample's bilinear rule.
template <typename acc_t>
__device__ __forceinline__ BilinearTaps<acc_t> pixel_taps(const acc_t* params, const acc_t* ctrl, int64_t b, int64_t p,
                                                          int64_t H, int64_t W, int64_t K, int padding) {
  acc_t tx, ty;
  tps_transform(params + b * (K + 3) * 2, ctrl + b * K * 2, K, pixel_coordinate<acc_t>(p % W, W),
                pixel_coordinate<acc_t>(p / W, H), &tx, &ty);
  return bilinear_taps(tx, ty, H, W, padding);
}

template <typename T, typename acc_t>
__global__ void tps_warp_forward_kernel(const T* __restrict__ image, const acc_t* __restrict__ params,
                                        const acc_t* __restrict__ ctrl, T* __restrict__ out, int64_t C, int64_t H,
                                        int64_t W, int64_t K, int padding) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x, b = blockIdx.y, HW = H * W;
  if (p >= HW) return;
  const BilinearTaps<acc_t> taps = pixel_taps(params, ctrl, b, p, H, W, K, padding);
  for (int64_t c = 0; c < C; ++c) {
    const T* plane = image + (b * C + c) * HW;
    acc_t v = 0;
#pragma unroll
    for (int t = 0; t < 4; ++t) v += taps.weight[t] * load(plane + taps.index[t]);  // outside: weight 0
    store(out + (b * C + c) * HW + p, v);
  }
}

template <typename T, typename acc_t>
__global__ void tps_warp_backward_kernel(const T* __restrict__ grad_out, const acc_t* __restrict__ params,
                                         const acc_t* __restrict__ ctrl, acc_t* __restrict__ grad_image, int64_t C,
                                         int64_t H, int64_t W, int64_t K, int padding) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x, b = blockIdx.y, HW = H * W;
  if (p >= HW) return;
  const BilinearTaps<acc_t> taps = pixel_taps(params, ctrl, b, p, H, W, K, padding);
  for (int64_t c = 0; c < C; ++c) {
    const acc_t g = load(grad_out + (b * C + c) * HW + p);
    acc_t* plane = grad_image + (b * C + c) * HW;
#pragma unroll
    for (int t = 0; t < 4; ++t)
      if (taps.weight[t] != acc_t(0)) atomicAdd(plane + taps.index[t], taps.weight[t] * g);  // skip outside taps
  }
}

dim3 pixel_grid(const TpsWarpShape& z) {
  return dim3(static_cast<unsigned>((z.height * z.width + kThreads - 1) / kThreads), static_cast<unsigned>(z.batch));
}

template <typename T>
cudaError_t forward(const TpsWarpShape& z, const void* image, const void* params, const void* ctrl, void* out,
                    int padding, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  tps_warp_forward_kernel<T, acc_t><<<pixel_grid(z), kThreads, 0, stream>>>(
      static_cast<const T*>(image), static_cast<const acc_t*>(params), static_cast<const acc_t*>(ctrl),
      static_cast<T*>(out), z.channels, z.height, z.width, z.points, padding);
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward(const TpsWarpShape& z, const void* grad_out, const void* params, const void* ctrl,
                     void* grad_image, int padding, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  tps_warp_backward_kernel<T, acc_t><<<pixel_grid(z), kThreads, 0, stream>>>(
      static_cast<const T*>(grad_out), static_cast<const acc_t*>(params), static_cast<const acc_t*>(ctrl),
      static_cast<acc_t*>(grad_image), z.channels, z.height, z.width, z.points, padding);
  return cudaGetLastError();
}

}  // namespace

cudaError_t tps_warp_forward(TpsDType dtype, TpsWarpShape shape, const void* image, const void* params,
                             const void* ctrl, void* out, int padding, cudaStream_t stream) {
  switch (dtype) {
    case TpsDType::Float32: return forward<float>(shape, image, params, ctrl, out, padding, stream);
    case TpsDType::Float64: return forward<double>(shape, image, params, ctrl, out, padding, stream);
    case TpsDType::Float16: return forward<__half>(shape, image, params, ctrl, out, padding, stream);
    case TpsDType::BFloat16: return forward<__nv_bfloat16>(shape, image, params, ctrl, out, padding, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t tps_warp_backward(TpsDType dtype, TpsWarpShape shape, const void* grad_out, const void* params,
                              const void* ctrl, void* grad_image_acc, int padding, cudaStream_t stream) {
  switch (dtype) {
    case TpsDType::Float32: return backward<float>(shape, grad_out, params, ctrl, grad_image_acc, padding, stream);
    case TpsDType::Float64: return backward<double>(shape, grad_out, params, ctrl, grad_image_acc, padding, stream);
    case TpsDType::Float16: return backward<__half>(shape, grad_out, params, ctrl, grad_image_acc, padding, stream);
    case TpsDType::BFloat16:
      return backward<__nv_bfloat16>(shape, grad_out, params, ctrl, grad_image_acc, padding, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace refcolor
