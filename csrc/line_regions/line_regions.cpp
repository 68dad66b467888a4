// Op schema of the compiled line_regions kernels. Device implementations live in cpu/ and cuda/;
// validation, backend choice and the exact rule live in refcolor/ops/line_regions.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(refcolor, m) {
  // sketch (B, 1, H, W) float, any layout -> int64 labels (B, H, W), 0..R-1 per sample in raster order.
  // `threshold` is rounded to the sketch's dtype, as torch rounds a Python scalar in `sketch < threshold`.
  m.def("line_regions_kernel(Tensor sketch, float threshold, int gap, int min_area) -> Tensor");
  // Test-only: the CUDA kernels' per-thread logic run on the host (cpu/line_regions_cuda_emulation.cpp).
  m.def("line_regions_cuda_emulation(Tensor sketch, float threshold, int gap, int min_area) -> Tensor");
}
