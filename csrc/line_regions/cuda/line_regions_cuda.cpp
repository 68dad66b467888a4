// Torch glue of the line_regions CUDA kernels: checks, the threshold rounded to the sketch's dtype
// (line_regions_host.h), allocation, stream. The kernels are in line_regions_kernel.cu, which includes no torch
// headers.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <climits>

#include "line_regions/cuda/line_regions_kernel.h"
#include "line_regions/line_regions_graph.h"
#include "line_regions/line_regions_host.h"

namespace refcolor {
namespace {

cuda::LineDType kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return cuda::LineDType::Float32;
    case at::kDouble:
      return cuda::LineDType::Float64;
    case at::kHalf:
      return cuda::LineDType::Float16;
    case at::kBFloat16:
      return cuda::LineDType::BFloat16;
    default:
      TORCH_CHECK(false, "the CUDA kernel of line_regions takes float16/bfloat16/float32/float64, got ", t);
  }
}

at::Tensor line_regions_cuda(const at::Tensor& sketch, double threshold, int64_t gap, int64_t min_area) {
  TORCH_CHECK(sketch.dim() == 4 && sketch.size(1) == 1, "line_regions: sketch must be (B, 1, H, W), got ",
              sketch.sizes());
  TORCH_CHECK(gap >= 0 && min_area >= 0, "line_regions: gap and min_area must be >= 0, got ", gap, " and ", min_area);
  const int64_t B = sketch.size(0), H = sketch.size(2), W = sketch.size(3);
  TORCH_CHECK(H * W < INT32_MAX / 2, "line_regions: the CUDA kernel takes images of fewer than 2^30 pixels, got ", H,
              " x ", W);
  const c10::cuda::CUDAGuard guard(sketch.device());
  at::Tensor out = at::empty({B, H, W}, sketch.options().dtype(at::kLong));
  if (B * H * W == 0) return out;
  const cuda::LineDType dtype = kernel_dtype(sketch.scalar_type());
  const double thr = line_regions_rounded_threshold(sketch.scalar_type(), threshold);
  const int64_t element = sketch.element_size();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  for (int64_t b = 0; b < B; ++b) {
    const void* base = static_cast<const char*>(sketch.data_ptr()) + b * sketch.stride(0) * element;
    const cudaError_t err = cuda::line_regions_sample(dtype, base, sketch.stride(2), sketch.stride(3), H, W, thr,
                                                      line_regions_effective_gap(gap, H, W), min_area,
                                                      out.data_ptr<int64_t>() + b * H * W, stream);
    TORCH_CHECK(err == cudaSuccess, "line_regions CUDA kernel failed: ", cudaGetErrorString(err));
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(refcolor, CUDA, m) {
  m.impl("line_regions_kernel", &line_regions_cuda);
}

}  // namespace refcolor
