#pragma once
// Launchers of the region_mean CUDA kernels. Plain C++/CUDA types only, so that the .cu file builds
// with nvcc alone (no torch headers); the torch glue is region_mean_cuda.cpp.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "region_mean/region_mean_math.h"

namespace refcolor {
namespace cuda {

enum class RegionMeanDType { Float32, Float64, Float16, BFloat16 };

struct RegionMeanShape {
  int64_t batch, channels, pixels, regions;
};

// Strides of every tensor of a call (labels and weights as (B, 1, H, W)) and the pixel row width
// they share (H * W when all collapse to one pixel axis, see element_offset).
struct RegionMeanLayout {
  Strides4 image, labels, weight, out;  // forward: out = painted; backward: image = grad_painted source
  Strides4 grad_image, grad_weight;     // backward outputs
  int64_t width;
};

// Forward. weight may be null (every pixel weighs 1). table: a zeroed (B, R, C + 1) accumulator
// buffer (float, double for Float64); means (B, R, C) and totals (B, R) contiguous accumulator-typed.
cudaError_t region_mean_forward(RegionMeanDType dtype, RegionMeanShape shape, const RegionMeanLayout& layout,
                                const void* image, const int64_t* labels, const void* weight, void* painted,
                                void* table, void* means, void* totals, cudaStream_t stream);

// Backward. layout.image: the image (read for grad_weight), layout.out: grad_painted. grad_means
// may be null; grad_weight null skips the weight gradient. table: zeroed (B, R, C + 1); grad_sum
// (B, R, C) and grad_total (B, R): accumulator-typed scratch.
cudaError_t region_mean_backward(RegionMeanDType dtype, RegionMeanShape shape, const RegionMeanLayout& layout,
                                 const void* grad_painted, const void* grad_means, const void* image,
                                 const int64_t* labels, const void* weight, const void* means, const void* totals,
                                 void* grad_image, void* grad_weight, void* table, void* grad_sum, void* grad_total,
                                 cudaStream_t stream);

}  // namespace cuda
}  // namespace refcolor
