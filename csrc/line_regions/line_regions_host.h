#pragma once
// Host-side helpers of line_regions shared by the CUDA glue and its host emulation (torch headers
// allowed here, never in .cu).
#include <ATen/ATen.h>

namespace refcolor {

// The threshold as the sketch's dtype holds it: torch rounds a Python scalar to the tensor's dtype
// in `sketch < threshold` (through float for the 16-bit types, as c10's conversions do), so the
// CUDA kernels compare widened values against this, exact in double.
inline double line_regions_rounded_threshold(at::ScalarType t, double threshold) {
  switch (t) {
    case at::kFloat:
      return static_cast<float>(threshold);
    case at::kDouble:
      return threshold;
    case at::kHalf:
      return static_cast<float>(static_cast<at::Half>(threshold));
    case at::kBFloat16:
      return static_cast<float>(static_cast<at::BFloat16>(threshold));
    default:
      TORCH_CHECK(false, "line_regions takes float16/bfloat16/float32/float64 sketches, got ", t);
  }
}

}  // namespace refcolor
