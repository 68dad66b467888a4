#pragma once
// Host-side shape handling shared by the CPU and CUDA glue (torch headers allowed here, never in .cu).
#include <ATen/ATen.h>

namespace refcolor {

struct SegmentHintSizes {
  int64_t batch, segments, channels, height, width, pixels;
};

// Safety net only: refcolor.ops validates with user-facing messages before calling the kernels.
inline SegmentHintSizes segment_hint_sizes(const at::Tensor& segments, const at::Tensor& image,
                                           const at::Tensor& num_hints) {
  TORCH_CHECK(segments.dim() == 4, "segments must be (B, Nc, H, W), got ", segments.sizes());
  TORCH_CHECK(image.dim() == 4, "image must be (B, C, H, W), got ", image.sizes());
  TORCH_CHECK(image.size(0) == segments.size(0) && image.size(2) == segments.size(2) &&
                  image.size(3) == segments.size(3),
              "image ", image.sizes(), " does not match segments ", segments.sizes());
  TORCH_CHECK(image.scalar_type() == segments.scalar_type(), "image dtype ", image.scalar_type(),
              " != segments dtype ", segments.scalar_type());
  TORCH_CHECK(num_hints.dim() == 1 && num_hints.size(0) == segments.size(0) &&
                  num_hints.scalar_type() == at::kLong,
              "num_hints must be an int64 tensor of shape (B,), got ", num_hints.sizes(), " ",
              num_hints.scalar_type());
  TORCH_CHECK(image.device() == segments.device() && num_hints.device() == segments.device(),
              "segments, image and num_hints must be on one device");
  SegmentHintSizes s;
  s.batch = segments.size(0);
  s.segments = segments.size(1);
  s.channels = image.size(1);
  s.height = segments.size(2);
  s.width = segments.size(3);
  s.pixels = s.height * s.width;
  return s;
}

inline at::ScalarType accumulate_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace refcolor
