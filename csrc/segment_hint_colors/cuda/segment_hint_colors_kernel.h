#pragma once
// Launchers of the segment_hint_colors CUDA kernels. Plain C++/CUDA types only, so that the .cu file
// builds with nvcc alone (no torch headers); the torch glue is segment_hint_colors_cuda.cpp.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "segment_hint_colors/segment_hint_colors_math.h"

namespace refcolor {
namespace cuda {

enum class DType { Float32, Float64, Float16, BFloat16 };

struct SegmentHintShape {
  int64_t batch, segments, channels, pixels;
};

// Rows of the per-block partial-sum workspace: the caller allocates
// segment_reduce_blocks(pixels) * batch * segments * (channels + 1) accumulator elements
// (double for Float64, float otherwise).
int64_t segment_reduce_blocks(int64_t pixels);

// Tensors of any strides (layout: segments, image, hints, mask). colors (B, Nc, C) and counts
// (B, Nc) are contiguous and written in the accumulator type.
cudaError_t segment_hint_colors_forward(DType dtype, SegmentHintShape shape, const SegmentHintLayout& layout,
                                        const void* segments, const void* image, const int64_t* num_hints, void* hints,
                                        void* mask, void* colors, void* counts, void* workspace, cudaStream_t stream);

// layout: hints/mask hold grad_hints/grad_mask, plus grad_segments and grad_image. grad_sum (B, Nc, C)
// and grad_count (B, Nc) are contiguous accumulator-typed scratch buffers.
cudaError_t segment_hint_colors_backward(DType dtype, SegmentHintShape shape, const SegmentHintLayout& layout,
                                         const void* grad_hints, const void* grad_mask, const void* segments,
                                         const void* image, const int64_t* num_hints, const void* colors,
                                         const void* counts, void* grad_segments, void* grad_image, void* workspace,
                                         void* grad_sum, void* grad_count, cudaStream_t stream);

}  // namespace cuda
}  // namespace refcolor
