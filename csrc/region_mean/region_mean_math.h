#pragma once
// Per-pixel and per-region math of region_mean, shared by the C++ CPU kernels, the CUDA kernels and
// the host emulation of the CUDA block logic, so that the CPU tests exercise what the GPU runs.
//
// For one sample with image Y (C channels), labels L in [0, R) and pixel weights w (1 if absent):
//   sum_rc  = sum_{L(j) = r} w(j) Y_c(j)        W_r = sum_{L(j) = r} w(j)
//   mean_rc = sum_rc / W_r if W_r > 0, else 0   painted_c(j) = mean_{L(j) c}
// Backward, with gP = dL/dpainted and gm = dL/dmeans (optional, 0 when absent):
//   gmean_rc = gm_rc + sum_{L(j) = r} gP_c(j)
//   gsum_rc  = gmean_rc / W_r                   gW_r = -sum_c gmean_rc mean_rc / W_r   (W_r > 0, else 0)
//   dY_c(j)  = w(j) gsum_{L(j) c}               dw(j) = sum_c Y_c(j) gsum_{L(j) c} + gW_{L(j)}
// W_r > 0 is a step with no gradient: a region whose weights sum to 0 (or with no pixel) passes none.
// Labels outside [0, R) are a caller error (refcolor.ops validates them); the kernels never touch
// memory for them: they add nothing and paint 0, and the CPU kernels report them.
#include <cstdint>

#include "macros.h"
#include "segment_hint_colors/segment_hint_colors_math.h"  // Strides4, element_offset: one layout rule for all ops

namespace refcolor {
namespace region_mean {

REFCOLOR_HOST_DEVICE inline bool label_ok(int64_t label, int64_t regions) {
  return static_cast<uint64_t>(label) < static_cast<uint64_t>(regions);  // negative labels wrap to huge
}

template <typename acc_t>
REFCOLOR_HOST_DEVICE inline bool region_is_filled(acc_t total) {
  return total > acc_t(0);
}

// Means of one region from its C channel sums and its weight total.
template <typename acc_t>
REFCOLOR_HOST_DEVICE inline void finalize_forward_region(const acc_t* sums, acc_t total, int64_t channels,
                                                         acc_t* means) {
  const bool filled = region_is_filled(total);
  for (int64_t c = 0; c < channels; ++c) means[c] = filled ? sums[c] / total : acc_t(0);
}

// d/dsum per channel and d/dW of one region, from its gradient sums gmean (already including
// dL/dmeans), its means and its weight total. Returns gW; writes grad_sum[0, C).
template <typename acc_t>
REFCOLOR_HOST_DEVICE inline acc_t finalize_backward_region(const acc_t* gmean, const acc_t* means, acc_t total,
                                                           int64_t channels, acc_t* grad_sum) {
  const bool filled = region_is_filled(total);
  acc_t gw = 0;
  for (int64_t c = 0; c < channels; ++c) {
    grad_sum[c] = filled ? gmean[c] / total : acc_t(0);
    gw += filled ? -gmean[c] * means[c] / total : acc_t(0);
  }
  return gw;
}

// ---- CUDA block geometry, shared with the host emulation ---------------------------------------
// The reduction gives each thread kPixelsPerThread consecutive pixels and adds a run of equal labels
// once (region maps are piecewise constant, so most threads add once or twice, not 8 times); a
// block has kReduceThreads threads. Block-private tables in shared memory take the adds when
// regions * (channels + 1) accumulators fit in kSharedBytes, else they go straight to global memory.
constexpr int kReduceThreads = 256;
constexpr int kPixelsPerThread = 8;
constexpr int64_t kReduceBlockPixels = int64_t(kReduceThreads) * kPixelsPerThread;
constexpr int kPaintThreads = 256;
constexpr int64_t kSharedBytes = 32 * 1024;

REFCOLOR_HOST_DEVICE inline int64_t reduce_block_count(int64_t pixels) {
  return (pixels + kReduceBlockPixels - 1) / kReduceBlockPixels;
}

// First pixel of thread `thread` of reduction block `block`.
REFCOLOR_HOST_DEVICE inline int64_t reduce_first_pixel(int64_t block, int thread) {
  return block * kReduceBlockPixels + static_cast<int64_t>(thread) * kPixelsPerThread;
}

REFCOLOR_HOST_DEVICE inline int64_t paint_block_count(int64_t pixels) {
  return (pixels + kPaintThreads - 1) / kPaintThreads;
}

// Row of the (B, R, slots) sum table of region r of sample b.
REFCOLOR_HOST_DEVICE inline int64_t table_row(int64_t b, int64_t r, int64_t regions, int64_t slots) {
  return (b * regions + r) * slots;
}

// One reduction thread: pixels [p0, p0 + kPixelsPerThread) of sample b (those below `pixels`).
// Adds w Y_c to slot c (c < channels) and w to slot `channels` when with_weight_total, of row
// `label * slots` of `table`, through add(ptr, value) (atomic on the GPU). Consecutive pixels of
// one label are summed in registers first and added once. kMaxChannels bounds the register run
// (channels above it are added per pixel). Weights: `weights` null means 1.
template <int kMaxChannels, typename acc_t, typename T, typename Load, typename Add>
REFCOLOR_HOST_DEVICE inline void reduce_thread_run(const T* X, const Strides4& xs, const int64_t* labels,
                                                   const Strides4& ls, const T* weights, const Strides4& ws, int64_t b,
                                                   int64_t p0, int64_t pixels, int64_t width, int64_t channels,
                                                   int64_t regions, bool with_weight_total, acc_t* table, int64_t slots,
                                                   Load load, Add add) {
  acc_t run[kMaxChannels + 1];
  int64_t current = -1;
  const int64_t kc = channels < kMaxChannels ? channels : kMaxChannels;
  auto flush = [&]() {
    if (current < 0) return;
    for (int64_t c = 0; c < kc; ++c) add(&table[current * slots + c], run[c]);
    if (with_weight_total) add(&table[current * slots + channels], run[kMaxChannels]);
  };
  for (int k = 0; k < kPixelsPerThread; ++k) {
    const int64_t p = p0 + k;
    if (p >= pixels) break;
    const int64_t label = labels[element_offset(ls, b, 0, p, width)];
    if (!label_ok(label, regions)) continue;
    const acc_t w = weights ? load(&weights[element_offset(ws, b, 0, p, width)]) : acc_t(1);
    if (label != current) {
      flush();
      current = label;
      for (int j = 0; j <= kMaxChannels; ++j) run[j] = acc_t(0);
    }
    const int64_t x0 = element_offset(xs, b, 0, p, width);
    for (int64_t c = 0; c < kc; ++c) run[c] += w * load(&X[x0 + c * xs.channel]);
    for (int64_t c = kc; c < channels; ++c) add(&table[label * slots + c], w * load(&X[x0 + c * xs.channel]));
    run[kMaxChannels] += w;
  }
  flush();
}

// Forward paint of pixel p of sample b: painted_c = means[b, L(p), c] (0 for a bad label).
template <typename acc_t, typename T, typename Store>
REFCOLOR_HOST_DEVICE inline void paint_forward_pixel(const int64_t* labels, const Strides4& ls, const acc_t* means,
                                                     T* painted, const Strides4& ps, int64_t b, int64_t p,
                                                     int64_t width, int64_t channels, int64_t regions, Store store) {
  const int64_t label = labels[element_offset(ls, b, 0, p, width)];
  const bool ok = label_ok(label, regions);
  const acc_t* m = means + (b * regions + (ok ? label : 0)) * channels;
  const int64_t o = element_offset(ps, b, 0, p, width);
  for (int64_t c = 0; c < channels; ++c) store(&painted[o + c * ps.channel], ok ? m[c] : acc_t(0));
}

// Backward paint of pixel p of sample b: dY_c = w gsum_{L c}; dw = sum_c Y_c gsum_{L c} + gW_L
// (when grad_weight is not null). weights null means 1.
template <typename acc_t, typename T, typename Load, typename Store>
REFCOLOR_HOST_DEVICE inline void paint_backward_pixel(const int64_t* labels, const Strides4& ls, const T* image,
                                                      const Strides4& ys, const T* weights, const Strides4& ws,
                                                      const acc_t* grad_sum, const acc_t* grad_total, T* grad_image,
                                                      const Strides4& gys, T* grad_weight, const Strides4& gws,
                                                      int64_t b, int64_t p, int64_t width, int64_t channels,
                                                      int64_t regions, Load load, Store store) {
  const int64_t label = labels[element_offset(ls, b, 0, p, width)];
  const bool ok = label_ok(label, regions);
  const int64_t row = b * regions + (ok ? label : 0);
  const acc_t* g = grad_sum + row * channels;
  const acc_t w = weights ? load(&weights[element_offset(ws, b, 0, p, width)]) : acc_t(1);
  const int64_t go = element_offset(gys, b, 0, p, width);
  acc_t dw = ok ? grad_total[row] : acc_t(0);
  const int64_t yo = element_offset(ys, b, 0, p, width);
  for (int64_t c = 0; c < channels; ++c) {
    const acc_t gc = ok ? g[c] : acc_t(0);
    store(&grad_image[go + c * gys.channel], w * gc);
    if (grad_weight) dw += load(&image[yo + c * ys.channel]) * gc;
  }
  if (grad_weight) store(&grad_weight[element_offset(gws, b, 0, p, width)], dw);
}

}  // namespace region_mean
}  // namespace refcolor
