#pragma once
// Launchers of the tps_warp CUDA kernels. Plain C++/CUDA types only, so that the .cu file builds
// with nvcc alone (no torch headers); the torch glue is tps_warp_cuda.cpp.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace refcolor {
namespace cuda {

enum class TpsDType { Float32, Float64, Float16, BFloat16 };

struct TpsWarpShape {
  int64_t batch, channels, height, width, points;
};

// image/out in `dtype`; params (B, K + 3, 2) and ctrl (B, K, 2) in double for Float64, else float.
cudaError_t tps_warp_forward(TpsDType dtype, TpsWarpShape shape, const void* image, const void* params,
                             const void* ctrl, void* out, int padding, cudaStream_t stream);

// grad_image_acc: zero-initialised accumulator (double for Float64, else float), (B, C, H, W).
cudaError_t tps_warp_backward(TpsDType dtype, TpsWarpShape shape, const void* grad_out, const void* params,
                              const void* ctrl, void* grad_image_acc, int padding, cudaStream_t stream);

}  // namespace cuda
}  // namespace refcolor
