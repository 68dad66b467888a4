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
// first channel; consecutive channels are `grad_hints_stride` / `image_stride` elements apart. kChannels > 0 fixes the
// channel count at compile time (unrolled), 0 uses `channels`.
template <int kChannels, typename acc_t, typename scalar_t>
REFCOLOR_HOST_DEVICE inline acc_t segment_grad_at_pixel(const acc_t* color_i, const acc_t* grad_sum_i,
                                                        acc_t grad_count_i, acc_t grad_mask, const scalar_t* grad_hints,
                                                        int64_t grad_hints_stride, const scalar_t* image,
                                                        int64_t image_stride, int64_t channels) {
  const int64_t C = kChannels > 0 ? kChannels : channels;
  acc_t g = grad_mask + grad_count_i;
  for (int64_t c = 0; c < C; ++c) {
    g += color_i[c] * load_as<acc_t>(grad_hints[c * grad_hints_stride]) +
         grad_sum_i[c] * load_as<acc_t>(image[c * image_stride]);
  }
  return g;
}

// Clamp a user-supplied hint count to [0, num_segments]; Python validates, kernels stay safe.
REFCOLOR_HOST_DEVICE inline int64_t clamp_num_hints(int64_t nh, int64_t num_segments) {
  return nh < 0 ? 0 : (nh > num_segments ? num_segments : nh);
}

// ---- Layout: any strides, no copies ----------------------------------------------------------
// A 4-d tensor (batch, channel, row, column) by its element strides. Pixels are numbered
// p = row * width + column; when every tensor of a call is "collapsible" (row stride == width *
// column stride, true of contiguous, channels-last and column-sliced tensors) the glue passes one
// row of H * W pixels (width = H * W), so the division below is by a value every p is below.
struct Strides4 {
  int64_t batch, channel, row, col;
};

// Element offset of (b, ch, pixel p) in a tensor of row width `width`.
REFCOLOR_HOST_DEVICE inline int64_t element_offset(const Strides4& s, int64_t b, int64_t ch, int64_t p, int64_t width) {
  return b * s.batch + ch * s.channel + (p / width) * s.row + (p % width) * s.col;
}

// ---- CUDA block geometry, shared with the host emulation (tests/test_segment_hint_colors.py) ----
// The reduction gives each thread kReducePixelsPerThread pixels of its block, kReduceThreads apart
// (coalesced loads); every per-block partial sum lands in its own workspace slot (no atomics).
constexpr int kReduceThreads = 256;
constexpr int kReducePixelsPerThread = 4;
constexpr int kReduceBlockPixels = kReduceThreads * kReducePixelsPerThread;
constexpr int kReduceGroup = 4;  // image channels a thread keeps in registers per pass (RGB fits in one)
constexpr int kPaintThreads = 256;

// Blocks along the pixel axis of the reduction (at least one, so empty images still finalize).
REFCOLOR_HOST_DEVICE inline int64_t reduce_block_count(int64_t pixels) {
  const int64_t n = (pixels + kReduceBlockPixels - 1) / kReduceBlockPixels;
  return n > 0 ? n : 1;
}

// The k-th pixel of thread `thread` in reduction block `block`; callers skip it when >= pixels.
REFCOLOR_HOST_DEVICE inline int64_t reduce_pixel(int64_t block, int thread, int k) {
  return block * kReduceBlockPixels + thread + static_cast<int64_t>(k) * kReduceThreads;
}

// Image channels [c0, c0 + n) handled by channel group `group` of the reduction.
REFCOLOR_HOST_DEVICE inline int reduce_group_channels(int64_t group, int64_t channels) {
  const int64_t left = channels - group * kReduceGroup;
  return static_cast<int>(left < kReduceGroup ? left : kReduceGroup);
}

// Workspace slot of the partial sum of (sample b, pixel block, segment i, slot): slots 0..C-1 are
// the channel sums, slot C the pixel count.
REFCOLOR_HOST_DEVICE inline int64_t partial_slot(int64_t b, int64_t block, int64_t nblocks, int64_t i, int64_t slot,
                                                 int64_t segments, int64_t channels) {
  return ((b * nblocks + block) * segments + i) * (channels + 1) + slot;
}

// One reduction thread's share for active segment i: acc[j] = sum over its pixels of S_i X_{c0+j}
// (j < group channels), acc[kReduceGroup] = sum S_i. Pixels at or past `pixels` are the tail.
template <typename acc_t, typename T>
REFCOLOR_HOST_DEVICE inline void reduce_thread(const T* S, const Strides4& ss, const T* X, const Strides4& xs,
                                               int64_t b, int64_t i, int64_t c0, int cg, int64_t block, int thread,
                                               int64_t pixels, int64_t width, acc_t* acc) {
  for (int j = 0; j <= kReduceGroup; ++j) acc[j] = acc_t(0);
  for (int k = 0; k < kReducePixelsPerThread; ++k) {
    const int64_t p = reduce_pixel(block, thread, k);
    if (p >= pixels) continue;
    const acc_t sv = load_as<acc_t>(S[element_offset(ss, b, i, p, width)]);
    acc[kReduceGroup] += sv;
    for (int j = 0; j < kReduceGroup; ++j)
      if (j < cg) acc[j] += sv * load_as<acc_t>(X[element_offset(xs, b, c0 + j, p, width)]);
  }
}

// The paint kernels: one thread per pixel, kPaintThreads per block; threads past the last pixel
// (the tail of the last block) do nothing.
REFCOLOR_HOST_DEVICE inline int64_t paint_block_count(int64_t pixels) {
  return (pixels + kPaintThreads - 1) / kPaintThreads;
}
REFCOLOR_HOST_DEVICE inline bool paint_thread_pixel(int64_t block, int thread, int64_t pixels, int64_t* p) {
  *p = block * kPaintThreads + thread;
  return *p < pixels;
}

// Strides of every tensor of a call and the pixel row width they share (see element_offset).
struct SegmentHintLayout {
  Strides4 segments, image, hints, mask;  // forward; backward: hints = grad_hints, mask = grad_mask
  Strides4 grad_segments, grad_image;     // backward outputs
  int64_t width;
};

// Sum over pixel blocks of one partial slot (the finalize step).
template <typename acc_t>
REFCOLOR_HOST_DEVICE inline acc_t partial_total(const acc_t* partial, int64_t nblocks, int64_t b, int64_t i,
                                                int64_t slot, int64_t segments, int64_t channels) {
  acc_t t = 0;
  for (int64_t k = 0; k < nblocks; ++k) t += partial[partial_slot(b, k, nblocks, i, slot, segments, channels)];
  return t;
}

// Finalize of segment (b, i): its count and mean colours (zero when inactive).
template <typename acc_t>
REFCOLOR_HOST_DEVICE inline void finalize_forward_segment(const acc_t* partial, int64_t nblocks, int64_t b, int64_t i,
                                                          int64_t active, int64_t segments, int64_t channels,
                                                          acc_t* colors, acc_t* counts) {
  const int64_t bi = b * segments + i;
  const bool on = i < active;
  const acc_t count = on ? partial_total(partial, nblocks, b, i, channels, segments, channels) : acc_t(0);
  counts[bi] = count;
  for (int64_t c = 0; c < channels; ++c)
    colors[bi * channels + c] =
        on ? segment_mean(partial_total(partial, nblocks, b, i, c, segments, channels), count) : acc_t(0);
}

// Backward finalize of segment (b, i): d mean / d sum per channel and d mean / d count.
template <typename acc_t>
REFCOLOR_HOST_DEVICE inline void finalize_backward_segment(const acc_t* partial, int64_t nblocks, int64_t b, int64_t i,
                                                           int64_t active, int64_t segments, int64_t channels,
                                                           const acc_t* colors, const acc_t* counts, acc_t* grad_sum,
                                                           acc_t* grad_count) {
  const int64_t bi = b * segments + i;
  acc_t gcount = 0;
  for (int64_t c = 0; c < channels; ++c) {
    const acc_t grad_color = i < active ? partial_total(partial, nblocks, b, i, c, segments, channels) : acc_t(0);
    grad_sum[bi * channels + c] = segment_mean_grad_sum(grad_color, counts[bi]);
    gcount += segment_mean_grad_count(grad_color, colors[bi * channels + c], counts[bi]);
  }
  grad_count[bi] = gcount;
}

// Forward paint of pixel p of sample b: hints and mask. store(ptr, acc value) rounds to T.
template <typename acc_t, typename T, typename Store>
REFCOLOR_HOST_DEVICE inline void paint_forward_pixel(const T* S, const Strides4& ss, const acc_t* colors, T* hints,
                                                     const Strides4& hs, T* mask, const Strides4& ms, int64_t b,
                                                     int64_t p, int64_t active, int64_t segments, int64_t channels,
                                                     int64_t width, Store store) {
  const acc_t* col = colors + b * segments * channels;
  acc_t m = 0;
  for (int64_t i = 0; i < active; ++i) m += load_as<acc_t>(S[element_offset(ss, b, i, p, width)]);
  store(&mask[element_offset(ms, b, 0, p, width)], m);
  for (int64_t c0 = 0; c0 < channels; c0 += kReduceGroup) {
    const int cg = reduce_group_channels(c0 / kReduceGroup, channels);
    acc_t h[kReduceGroup] = {};
    for (int64_t i = 0; i < active; ++i) {
      const acc_t sv = load_as<acc_t>(S[element_offset(ss, b, i, p, width)]);
      for (int j = 0; j < kReduceGroup; ++j)
        if (j < cg) h[j] += col[i * channels + c0 + j] * sv;
    }
    for (int j = 0; j < kReduceGroup; ++j)
      if (j < cg) store(&hints[element_offset(hs, b, c0 + j, p, width)], h[j]);
  }
}

// Backward paint of pixel p of sample b: dS for every segment (0 when inactive) and dY.
template <typename acc_t, typename T, typename Store>
REFCOLOR_HOST_DEVICE inline void paint_backward_pixel(const T* gH, const Strides4& ghs, const T* gM,
                                                      const Strides4& gms, const T* S, const Strides4& ss, const T* Y,
                                                      const Strides4& ys, const acc_t* colors, const acc_t* grad_sum,
                                                      const acc_t* grad_count, T* dS, const Strides4& dss, T* dY,
                                                      const Strides4& dys, int64_t b, int64_t p, int64_t active,
                                                      int64_t segments, int64_t channels, int64_t width, Store store) {
  const acc_t gm = load_as<acc_t>(gM[element_offset(gms, b, 0, p, width)]);
  const T* gh = gH + element_offset(ghs, b, 0, p, width);
  const T* y = Y + element_offset(ys, b, 0, p, width);
  for (int64_t i = 0; i < segments; ++i) {
    const int64_t bi = b * segments + i;
    const acc_t g = i < active ? segment_grad_at_pixel<0>(colors + bi * channels, grad_sum + bi * channels,
                                                          grad_count[bi], gm, gh, ghs.channel, y, ys.channel, channels)
                               : acc_t(0);
    store(&dS[element_offset(dss, b, i, p, width)], g);
  }
  for (int64_t c0 = 0; c0 < channels; c0 += kReduceGroup) {
    const int cg = reduce_group_channels(c0 / kReduceGroup, channels);
    acc_t d[kReduceGroup] = {};
    for (int64_t i = 0; i < active; ++i) {
      const acc_t sv = load_as<acc_t>(S[element_offset(ss, b, i, p, width)]);
      for (int j = 0; j < kReduceGroup; ++j)
        if (j < cg) d[j] += grad_sum[(b * segments + i) * channels + c0 + j] * sv;
    }
    for (int j = 0; j < kReduceGroup; ++j)
      if (j < cg) store(&dY[element_offset(dys, b, c0 + j, p, width)], d[j]);
  }
}

}  // namespace refcolor
