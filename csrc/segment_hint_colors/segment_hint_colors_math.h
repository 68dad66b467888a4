#pragma once
// Per-element math of segment_hint_colors (GuidingPainter, Cho et al. 2022, Eq. 4-8), shared by
// the C++ CPU and the CUDA kernels so that the CPU tests exercise what the GPU runs.
//
// For one sample, with S_i the i-th segment map, Y the image, Nh the number of hints:
//   count_i   = sum_p S_i(p)                      sum_ic = sum_p S_i(p) Y_c(p)
//   color_ic  = sum_ic / count_i if i < Nh and count_i >= 1, else 0
//   hints_c(p) = sum_{i<Nh} color_ic S_i(p)       mask(p) = sum_{i<Nh} S_i(p)
// Backward, with gH = dL/dhints, gM = dL/dmask, gcolor_ic = sum_p gH_c(p) S_i(p):
//   gsum_ic   = gcolor_ic / count_i               gcount_i = -sum_c gcolor_ic color_ic / count_i
//   dS_i(p)   = sum_c (color_ic gH_c(p) + gsum_ic Y_c(p)) + gM(p) + gcount_i     (i < Nh, else 0)
//   dY_c(p)   = sum_{i<Nh} gsum_ic S_i(p)
// The threshold count_i >= 1 is a step: it has no gradient, so empty segments pass none.
#include <cstdint>

#include "macros.h"

namespace refcolor {

// Widening load into the accumulator type. The CUDA build specialises it for __half and
// __nv_bfloat16, whose implicit conversions torch's nvcc flags switch off.
template <typename acc_t, typename scalar_t>
REFCOLOR_HOST_DEVICE inline acc_t load_as(const scalar_t& x) {
  return static_cast<acc_t>(x);
}

template <typename acc_t>
REFCOLOR_HOST_DEVICE inline bool segment_is_filled(acc_t count) {
  return count >= acc_t(1);
}

// Mean colour of a segment from its weighted colour sum and its pixel count (Eq. 6).
template <typename acc_t>
REFCOLOR_HOST_DEVICE inline acc_t segment_mean(acc_t sum, acc_t count) {
  return segment_is_filled(count) ? sum / count : acc_t(0);
}

// d mean / d sum, applied to the incoming gradient of the mean.
template <typename acc_t>
REFCOLOR_HOST_DEVICE inline acc_t segment_mean_grad_sum(acc_t grad_color, acc_t count) {
  return segment_is_filled(count) ? grad_color / count : acc_t(0);
}

// One channel's share of d mean / d count; the caller sums it over channels.
template <typename acc_t>
REFCOLOR_HOST_DEVICE inline acc_t segment_mean_grad_count(acc_t grad_color, acc_t color, acc_t count) {
  return segment_is_filled(count) ? -grad_color * color / count : acc_t(0);
}

// dL/dS_i at one pixel for an active segment i. `grad_hints` and `image` point at the pixel's
// first channel; consecutive channels are `channel_stride` elements apart. kChannels > 0 fixes the
// channel count at compile time (unrolled), 0 uses `channels`.
template <int kChannels, typename acc_t, typename scalar_t>
REFCOLOR_HOST_DEVICE inline acc_t segment_grad_at_pixel(
    const acc_t* color_i, const acc_t* grad_sum_i, acc_t grad_count_i, acc_t grad_mask,
    const scalar_t* grad_hints, const scalar_t* image, int64_t channels, int64_t channel_stride) {
  const int64_t C = kChannels > 0 ? kChannels : channels;
  acc_t g = grad_mask + grad_count_i;
  for (int64_t c = 0; c < C; ++c) {
    g += color_i[c] * load_as<acc_t>(grad_hints[c * channel_stride]) +
         grad_sum_i[c] * load_as<acc_t>(image[c * channel_stride]);
  }
  return g;
}

// Clamp a user-supplied hint count to [0, num_segments]; Python validates, kernels stay safe.
REFCOLOR_HOST_DEVICE inline int64_t clamp_num_hints(int64_t nh, int64_t num_segments) {
  return nh < 0 ? 0 : (nh > num_segments ? num_segments : nh);
}

}  // namespace refcolor
