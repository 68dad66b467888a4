#pragma once
// Launchers of the tps_warp CUDA kernels. Plain C++/CUDA types only, so that the .cu file builds
// with nvcc alone (no torch headers); the torch glue is tps_warp_cuda.cpp.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "tps_warp/tps_warp_math.h"

namespace refcolor {
namespace cuda {

enum class TpsDType { Float32, Float64, Float16, BFloat16 };

struct TpsWarpShape {
  int64_t batch, channels, height, width, points;
};

// image/out in `dtype`, any strides (image_strides, out_strides); params (B, K + 3, 2) and ctrl
// (B, K, 2) contiguous, in double for Float64, else float.
cudaError_t tps_warp_forward(TpsDType dtype, TpsWarpShape shape, const void* image, TpsStrides image_strides,
                             const void* params, const void* ctrl, void* out, TpsStrides out_strides, int padding,
                             cudaStream_t stream);

// grad_image_acc: zero-initialised accumulator (double for Float64, else float), (B, C, H, W) of
// strides grad_strides; grad_out of any strides.
cudaError_t tps_warp_backward(TpsDType dtype, TpsWarpShape shape, const void* grad_out, TpsStrides grad_out_strides,
                              const void* params, const void* ctrl, void* grad_image_acc, TpsStrides grad_strides,
                              int padding, cudaStream_t stream);

}  // namespace cuda
}  // namespace refcolor
