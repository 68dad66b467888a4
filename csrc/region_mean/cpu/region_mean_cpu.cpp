// C++ CPU kernels of region_mean. Two passes each way, parallel over (sample, pixel tile):
//   reduce: each tile sums w Y_c and w per region into its own table (no atomics); a finalize step
//           adds the tables of a sample in tile order and forms the means (or their gradients);
//   paint:  each pixel reads its region's row (painted, or dY and dw).
// Tiles are fixed pixel ranges (their size depends on the shape, never on the thread count), so the
// per-tile sums, their reduction order and therefore the results are the same on any number of
// threads. Every tensor is read and written through its strides (contiguous, channels-last, sliced:
// no copies). Region maps are piecewise constant: the reduction adds a run of equal labels from
// registers once, instead of a read-modify-write of the table per pixel.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <tuple>

#include "cpu_memory.h"
#include "region_mean/region_mean_host.h"
#include "region_mean/region_mean_math.h"

namespace refcolor {
namespace region_mean {
namespace {

// Pixels per tile: at least kTilePixels (a tile's table then costs little next to its pixels) and
// at least 2 table entries' worth of pixels per accumulator, so the per-tile tables of a sample
// never outweigh its pixels even with many regions.
constexpr int64_t kTilePixels = 16384;

int64_t tile_pixels(int64_t regions, int64_t slots) {
  return std::max<int64_t>(kTilePixels, 2 * regions * slots);
}

// ---- Span loops: n pixels of one row, consecutive pixels pX / pL / pW elements apart ----------

// table[L * slots + c] += w X_c (c < C), table[L * slots + C] += w when with_total. kC > 0 fixes
// the channel count (run of equal labels summed in registers); kC == 0 adds every pixel directly.
// Returns false when a label is outside [0, R) (that pixel is skipped).
template <int kC, typename T>
REFCOLOR_FORCE_INLINE bool reduce_span(const T* __restrict__ X, int64_t sX, int64_t pX, const int64_t* __restrict__ L,
                                       int64_t pL, const T* __restrict__ w, int64_t pW, T* __restrict__ table,
                                       int64_t slots, int64_t C, int64_t R, int64_t n, bool with_total) {
  bool ok = true;
  if (kC > 0) {
    T run[kC + 1] = {};
    int64_t current = -1, previous = 0;  // current: the run's region, -1 while in a bad label's run
    for (int64_t p = 0; p < n; ++p) {
      const int64_t label = L[p * pL];
      if (p == 0 || label != previous) {
        previous = label;
        if (current >= 0) {
          T* row = table + current * slots;
          for (int c = 0; c < kC; ++c) row[c] += run[c];
          if (with_total) row[kC] += run[kC];
        }
        for (int c = 0; c <= kC; ++c) run[c] = T(0);
        current = label_ok(label, R) ? label : -1;
        ok = ok && current >= 0;
      }
      if (current < 0) continue;
      const T wv = w ? w[p * pW] : T(1);
      for (int c = 0; c < kC; ++c) run[c] += wv * X[c * sX + p * pX];
      run[kC] += wv;
    }
    if (current >= 0) {
      T* row = table + current * slots;
      for (int c = 0; c < kC; ++c) row[c] += run[c];
      if (with_total) row[kC] += run[kC];
    }
    return ok;
  }
  for (int64_t p = 0; p < n; ++p) {
    const int64_t label = L[p * pL];
    if (!label_ok(label, R)) {
      ok = false;
      continue;
    }
    const T wv = w ? w[p * pW] : T(1);
    T* row = table + label * slots;
    for (int64_t c = 0; c < C; ++c) row[c] += wv * X[c * sX + p * pX];
    if (with_total) row[C] += wv;
  }
  return ok;
}

// painted_c = means[L, c] (0 for a bad label). Returns false on a bad label.
template <int kC, typename T>
REFCOLOR_FORCE_INLINE bool paint_forward_span(const int64_t* __restrict__ L, int64_t pL, const T* __restrict__ means,
                                              T* __restrict__ out, int64_t sO, int64_t pO, int64_t C_, int64_t R,
                                              int64_t n) {
  const int64_t C = kC > 0 ? kC : C_;
  bool ok = true;
  for (int64_t p = 0; p < n; ++p) {
    const int64_t label = L[p * pL];
    const bool good = label_ok(label, R);
    ok = ok && good;
    const T* m = means + (good ? label : 0) * C;
    for (int64_t c = 0; c < C; ++c) out[c * sO + p * pO] = good ? m[c] : T(0);
  }
  return ok;
}

// dY_c = w gsum[L, c]; dw = sum_c Y_c gsum[L, c] + gW[L] (when dw is not null).
template <int kC, typename T>
REFCOLOR_FORCE_INLINE bool paint_backward_span(const int64_t* __restrict__ L, int64_t pL, const T* __restrict__ Y,
                                               int64_t sY, int64_t pY, const T* __restrict__ w, int64_t pW,
                                               const T* __restrict__ grad_sum, const T* __restrict__ grad_total,
                                               T* __restrict__ dY, int64_t sdY, int64_t pdY, T* __restrict__ dw,
                                               int64_t pdw, int64_t C_, int64_t R, int64_t n) {
  const int64_t C = kC > 0 ? kC : C_;
  bool ok = true;
  for (int64_t p = 0; p < n; ++p) {
    const int64_t label = L[p * pL];
    const bool good = label_ok(label, R);
    ok = ok && good;
    const T* g = grad_sum + (good ? label : 0) * C;
    const T wv = w ? w[p * pW] : T(1);
    T d = good ? grad_total[label] : T(0);
    for (int64_t c = 0; c < C; ++c) {
      const T gc = good ? g[c] : T(0);
      dY[c * sdY + p * pdY] = wv * gc;
      if (dw) d += Y[c * sY + p * pY] * gc;  // the image is read only for the weight's gradient
    }
    if (dw) dw[p * pdw] = d;
  }
  return ok;
}

// ---- Per-dtype entry points, each cloned for AVX2+FMA and baseline x86-64 (see macros.h) -------
#define REFCOLOR_DEFINE_SPANS(T)                                                                                    \
  REFCOLOR_CPU_CLONES bool reduce_span_entry(const T* X, int64_t sX, int64_t pX, const int64_t* L, int64_t pL,      \
                                             const T* w, int64_t pW, T* table, int64_t slots, int64_t C, int64_t R, \
                                             int64_t n, bool with_total) {                                          \
    if (C == 3) return reduce_span<3>(X, sX, pX, L, pL, w, pW, table, slots, C, R, n, with_total);                  \
    if (C == 1) return reduce_span<1>(X, sX, pX, L, pL, w, pW, table, slots, C, R, n, with_total);                  \
    return reduce_span<0>(X, sX, pX, L, pL, w, pW, table, slots, C, R, n, with_total);                              \
  }                                                                                                                 \
  REFCOLOR_CPU_CLONES bool paint_forward_entry(const int64_t* L, int64_t pL, const T* means, T* out, int64_t sO,    \
                                               int64_t pO, int64_t C, int64_t R, int64_t n) {                       \
    if (C == 3) return paint_forward_span<3>(L, pL, means, out, sO, pO, C, R, n);                                   \
    return paint_forward_span<0>(L, pL, means, out, sO, pO, C, R, n);                                               \
  }                                                                                                                 \
  REFCOLOR_CPU_CLONES bool paint_backward_entry(                                                                    \
      const int64_t* L, int64_t pL, const T* Y, int64_t sY, int64_t pY, const T* w, int64_t pW, const T* grad_sum,  \
      const T* grad_total, T* dY, int64_t sdY, int64_t pdY, T* dw, int64_t pdw, int64_t C, int64_t R, int64_t n) {  \
    if (C == 3)                                                                                                     \
      return paint_backward_span<3>(L, pL, Y, sY, pY, w, pW, grad_sum, grad_total, dY, sdY, pdY, dw, pdw, C, R, n); \
    return paint_backward_span<0>(L, pL, Y, sY, pY, w, pW, grad_sum, grad_total, dY, sdY, pdY, dw, pdw, C, R, n);   \
  }
REFCOLOR_DEFINE_SPANS(float)
REFCOLOR_DEFINE_SPANS(double)
#undef REFCOLOR_DEFINE_SPANS

// ---- Tiling ----------------------------------------------------------------------------------
// A strided (B, Ch, rows, cols) tensor; with width == H * W the pixel axis is one row (collapsed).
template <typename T>
struct View {
  T* data;
  Strides4 s;
  T* at(int64_t b, int64_t p, int64_t width) const { return data ? data + element_offset(s, b, 0, p, width) : nullptr; }
};

template <typename T>
View<T> view_of(const at::Tensor& t) {
  if (!t.defined()) return {nullptr, {0, 0, 0, 0}};
  return {static_cast<T*>(t.data_ptr()), strides_of(t)};
}

// Visits tile `tile` of a sample as spans within one row: fn(p0, n) for pixels [p0, p0 + n).
template <typename SpanFn>
void for_each_span(int64_t tile, int64_t tile_size, int64_t pixels, int64_t width, const SpanFn& fn) {
  const int64_t end = std::min(pixels, (tile + 1) * tile_size);
  for (int64_t p = tile * tile_size; p < end;) {
    const int64_t n = std::min(end, (p / width + 1) * width) - p;
    fn(p, n);
    p += n;
  }
}

// Small calls (gradcheck, tiny images) stay on one thread: waking a second one costs more than
// the work, and on a busy machine an OpenMP barrier can stall for milliseconds (see
// segment_hint_colors_cpu.cpp).
constexpr int64_t kMinParallelPixels = int64_t(1) << 14;

template <typename TileFn>
void for_each_tile(int64_t batch, int64_t tiles, int64_t tile_size, const TileFn& fn) {
  const int64_t grain = std::max<int64_t>(1, kMinParallelPixels / tile_size);
  at::parallel_for(0, batch * tiles, grain, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) fn(task / tiles, task % tiles, task);
  });
}

constexpr int64_t kMinParallelSums = int64_t(1) << 18;

void check_labels(bool ok, int64_t regions) {
  TORCH_CHECK(ok, "region_mean: argument 'labels' must be in [0, ", regions - 1, "] (num_regions=", regions,
              "), got a value outside");
}

// Per-tile tables (B * tiles, R, slots) of sum w X_c (slot c < C) and sum w (slot C), summed over
// the tiles of each sample in tile order into out (B, R, slots).
template <typename T>
void reduce_regions(const View<const T>& X, const View<const int64_t>& L, const View<const T>& w, int64_t B, int64_t C,
                    int64_t R, int64_t P, int64_t width, bool with_total, T* out) {
  const int64_t slots = C + 1, tsize = tile_pixels(R, slots), tiles = (P + tsize - 1) / tsize;
  const int64_t table = R * slots;
  std::unique_ptr<T[]> partial(new T[B * tiles * table]);
  std::atomic<bool> ok{true};
  for_each_tile(B, tiles, tsize, [&](int64_t b, int64_t tile, int64_t task) {
    T* t = partial.get() + task * table;
    std::fill(t, t + table, T(0));  // first touch by the thread that sums into it
    bool good = true;
    for_each_span(tile, tsize, P, width, [&](int64_t p0, int64_t n) {
      good &= reduce_span_entry(X.at(b, p0, width), X.s.channel, X.s.col, L.at(b, p0, width), L.s.col,
                                w.at(b, p0, width), w.s.col, t, slots, C, R, n, with_total);
    });
    if (!good) ok = false;
  });
  check_labels(ok, R);
  // The tile tables hold few sums next to the pixels: a second thread pays off only for large ones.
  const int64_t grain = std::max<int64_t>(1, kMinParallelSums / (tiles * slots));
  at::parallel_for(0, B * R, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t br = lo; br < hi; ++br) {
      const int64_t b = br / R, r = br % R;
      for (int64_t c = 0; c < slots; ++c) {
        T s = 0;
        for (int64_t k = 0; k < tiles; ++k) s += partial[(b * tiles + k) * table + r * slots + c];
        out[br * slots + c] = s;
      }
    }
  });
}

template <typename T>
void forward_impl(const at::Tensor& image, const at::Tensor& labels4, const at::Tensor& weight, at::Tensor& painted,
                  T* means, T* totals, const RegionMeanSizes& z) {
  const int64_t B = z.batch, C = z.channels, R = z.regions, P = z.pixels, slots = C + 1;
  const int64_t width = row_width(z, {&image, &labels4, &weight, &painted});
  const View<const T> Y = view_of<const T>(image), w = view_of<const T>(weight);
  const View<const int64_t> L = view_of<const int64_t>(labels4);
  const View<T> out = view_of<T>(painted);
  std::unique_ptr<T[]> sums(new T[B * R * slots]);
  reduce_regions(Y, L, w, B, C, R, P, width, /*with_total=*/true, sums.get());
  for (int64_t br = 0; br < B * R; ++br) {
    totals[br] = sums[br * slots + C];
    finalize_forward_region(sums.get() + br * slots, totals[br], C, means + br * C);
  }
  const int64_t tsize = tile_pixels(R, slots), tiles = (P + tsize - 1) / tsize;
  for_each_tile(B, tiles, tsize, [&](int64_t b, int64_t tile, int64_t) {
    for_each_span(tile, tsize, P, width, [&](int64_t p0, int64_t n) {
      paint_forward_entry(L.at(b, p0, width), L.s.col, means + b * R * C, out.at(b, p0, width), out.s.channel,
                          out.s.col, C, R, n);
    });
  });
}

template <typename T>
void backward_impl(const at::Tensor& grad_painted, const T* grad_means, const at::Tensor& image,
                   const at::Tensor& labels4, const at::Tensor& weight, const T* means, const T* totals,
                   at::Tensor& dY_t, at::Tensor& dw_t, const RegionMeanSizes& z) {
  const int64_t B = z.batch, C = z.channels, R = z.regions, P = z.pixels, slots = C + 1;
  const int64_t width = row_width(z, {&grad_painted, &image, &labels4, &weight, &dY_t, &dw_t});
  const View<const T> gP = view_of<const T>(grad_painted), Y = view_of<const T>(image), w = view_of<const T>(weight);
  const View<const int64_t> L = view_of<const int64_t>(labels4);
  const View<T> dY = view_of<T>(dY_t), dw = view_of<T>(dw_t);
  std::unique_ptr<T[]> gsums(new T[B * R * slots]);
  reduce_regions(gP, L, View<const T>{nullptr, {0, 0, 0, 0}}, B, C, R, P, width, /*with_total=*/false, gsums.get());
  std::unique_ptr<T[]> grad_sum(new T[B * R * C]), grad_total(new T[B * R]), gmean(new T[C]);
  for (int64_t br = 0; br < B * R; ++br) {
    for (int64_t c = 0; c < C; ++c) gmean[c] = gsums[br * slots + c] + (grad_means ? grad_means[br * C + c] : T(0));
    grad_total[br] = finalize_backward_region(gmean.get(), means + br * C, totals[br], C, grad_sum.get() + br * C);
  }
  const int64_t tsize = tile_pixels(R, slots), tiles = (P + tsize - 1) / tsize;
  for_each_tile(B, tiles, tsize, [&](int64_t b, int64_t tile, int64_t) {
    for_each_span(tile, tsize, P, width, [&](int64_t p0, int64_t n) {
      paint_backward_entry(L.at(b, p0, width), L.s.col, Y.at(b, p0, width), Y.s.channel, Y.s.col, w.at(b, p0, width),
                           w.s.col, grad_sum.get() + b * R * C, grad_total.get() + b * R, dY.at(b, p0, width),
                           dY.s.channel, dY.s.col, dw.at(b, p0, width), dw.s.col, C, R, n);
    });
  });
}

void check_cpu_dtype(const at::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
              "the C++ CPU kernel of region_mean takes float32 or float64, got ", t.scalar_type());
}

at::Tensor defined_or_empty(const std::optional<at::Tensor>& t) {
  return t ? *t : at::Tensor();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& image, const at::Tensor& labels,
                                                           const std::optional<at::Tensor>& weight,
                                                           int64_t num_regions) {
  const RegionMeanSizes z = region_mean_sizes(image, labels, weight, num_regions);
  check_cpu_dtype(image);
  at::Tensor painted = gradient_like(image);  // the image's layout
  advise_huge_pages(painted.data_ptr(), painted.nbytes());
  at::Tensor means = at::empty({z.batch, z.regions, z.channels}, image.options());
  at::Tensor totals = at::empty({z.batch, z.regions}, image.options());
  const at::Tensor labels4 = labels_4d(labels), w = defined_or_empty(weight);
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "region_mean_forward_cpu", [&] {
    forward_impl<scalar_t>(image, labels4, w, painted, means.data_ptr<scalar_t>(), totals.data_ptr<scalar_t>(), z);
  });
  return {painted, means, totals};
}

std::tuple<at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad_painted,
                                                const std::optional<at::Tensor>& grad_means, const at::Tensor& image,
                                                const at::Tensor& labels, const std::optional<at::Tensor>& weight,
                                                const at::Tensor& means, const at::Tensor& totals, bool weight_grad) {
  const RegionMeanSizes z = region_mean_sizes(image, labels, weight, means.size(1));
  check_cpu_dtype(image);
  check_backward_shapes(grad_painted, grad_means, image, means, totals, z);
  const auto dtype = image.scalar_type();
  const at::Tensor gP = grad_painted.to(dtype);
  const at::Tensor mn = means.to(dtype).contiguous(), tot = totals.to(dtype).contiguous();  // (B, R, C), (B, R)
  const at::Tensor gm = grad_means ? grad_means->to(dtype).contiguous() : at::Tensor();
  const at::Tensor labels4 = labels_4d(labels), w = defined_or_empty(weight);
  at::Tensor dY = gradient_like(image);
  advise_huge_pages(dY.data_ptr(), dY.nbytes());
  at::Tensor dw = weight && weight_grad ? gradient_like(*weight) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(dtype, "region_mean_backward_cpu", [&] {
    backward_impl<scalar_t>(gP, gm.defined() ? gm.data_ptr<scalar_t>() : nullptr, image, labels4, w,
                            mn.data_ptr<scalar_t>(), tot.data_ptr<scalar_t>(), dY, dw, z);
  });
  return {dY, dw.defined() ? dw : at::empty({0}, image.options())};
}

}  // namespace
}  // namespace region_mean

TORCH_LIBRARY_IMPL(refcolor, CPU, m) {
  m.impl("region_mean_forward_kernel", &region_mean::forward_cpu);
  m.impl("region_mean_backward_kernel", &region_mean::backward_cpu);
}

}  // namespace refcolor
