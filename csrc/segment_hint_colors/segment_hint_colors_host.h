#pragma once
// Host-side shape handling shared by the CPU and CUDA glue (torch headers allowed here, never in .cu).
#include <ATen/ATen.h>

#include "segment_hint_colors/segment_hint_colors_math.h"

namespace refcolor {

struct SegmentHintSizes {
  int64_t batch, segments, channels, height, width, pixels;
};

// Safety net only: refcolor.ops validates with user-facing messages before calling the kernels.
inline SegmentHintSizes segment_hint_sizes(const at::Tensor& segments, const at::Tensor& image,
                                           const at::Tensor& num_hints) {
  TORCH_CHECK(segments.dim() == 4, "segments must be (B, Nc, H, W), got ", segments.sizes());
  TORCH_CHECK(image.dim() == 4, "image must be (B, C, H, W), got ", image.sizes());
  TORCH_CHECK(
      image.size(0) == segments.size(0) && image.size(2) == segments.size(2) && image.size(3) == segments.size(3),
      "image ", image.sizes(), " does not match segments ", segments.sizes());
  TORCH_CHECK(image.scalar_type() == segments.scalar_type(), "image dtype ", image.scalar_type(), " != segments dtype ",
              segments.scalar_type());
  TORCH_CHECK(num_hints.dim() == 1 && num_hints.size(0) == segments.size(0) && num_hints.scalar_type() == at::kLong,
              "num_hints must be an int64 tensor of shape (B,), got ", num_hints.sizes(), " ", num_hints.scalar_type());
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

// Element strides of a (B, Ch, H, W) tensor as the kernels use them. A size-1 row or column axis
// gets the stride that makes the pixel index p = row * W + col addressable either way: torch
// leaves strides of size-1 axes arbitrary.
inline Strides4 strides_of(const at::Tensor& t) {
  Strides4 s{t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
  if (t.size(3) == 1) s.col = t.size(2) == 1 ? 1 : s.row;
  if (t.size(2) == 1) s.row = s.col * t.size(3);
  return s;
}

// True when pixel p = row * W + col sits at p * (column stride): (H, W) can be walked as one
// axis. Holds for contiguous, channels-last and column-strided tensors; not for row-sliced ones.
inline bool pixels_collapse(const at::Tensor& t) {
  const Strides4 s = strides_of(t);
  return s.row == t.size(3) * s.col;
}

// Outputs and gradients keep their input's layout (channels-last in, channels-last out), so no
// caller pays a conversion pass; inputs that are not dense (slices, broadcasts) get the
// memory format torch suggests for them.
inline at::Tensor gradient_like(const at::Tensor& t) {
  return at::empty_like(t);
}

inline void check_grad_shapes(const at::Tensor& grad_hints, const at::Tensor& grad_mask, const at::Tensor& image,
                              const SegmentHintSizes& z) {
  TORCH_CHECK(grad_hints.sizes() == image.sizes(), "grad_hints must match image ", image.sizes(), ", got ",
              grad_hints.sizes());
  TORCH_CHECK(grad_mask.dim() == 4 && grad_mask.size(0) == z.batch && grad_mask.size(1) == 1 &&
                  grad_mask.size(2) == z.height && grad_mask.size(3) == z.width,
              "grad_mask must be (B, 1, H, W), got ", grad_mask.sizes());
}

inline at::ScalarType accumulate_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace refcolor
