#pragma once
// Launcher of the line_regions CUDA kernels. Plain C++/CUDA types only, so that the .cu file builds
// with nvcc alone (no torch headers); the torch glue is line_regions_cuda.cpp.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace refcolor {
namespace cuda {

enum class LineDType { Float32, Float64, Float16, BFloat16 };

// One sample: `sketch` points at element (b, 0, 0, 0), read through the row / column strides (in
// elements). `threshold` is already rounded to the sketch's dtype. Writes int64 labels (H, W),
// contiguous, into `out`. Works on `stream`, and waits on it where the host needs a count (component
// numbers, growth rounds, the region graph), so it returns with the labels complete. Scratch memory
// comes from cudaMallocAsync on the stream. gap is the effective one (line_regions_effective_gap).
cudaError_t line_regions_sample(LineDType dtype, const void* sketch, int64_t row_stride, int64_t col_stride,
                                int64_t height, int64_t width, double threshold, int64_t gap, int64_t min_area,
                                int64_t* out, cudaStream_t stream);

}  // namespace cuda
}  // namespace refcolor
