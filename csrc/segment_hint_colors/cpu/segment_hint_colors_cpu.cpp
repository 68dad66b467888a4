// C++ CPU kernels of segment_hint_colors. Two passes each way, parallel over (sample, pixel tile):
// a reduction over pixels (segment colour sums and counts) and a per-pixel "paint" pass. Every
// tensor is read and written through its own strides (no .contiguous() copies), by one of two loop
// orders chosen from the segments' layout:
//   segment-major (pixels of a segment are adjacent: contiguous NCHW, width-sliced): each segment
//     row of a tile streams past chunk-sized accumulators, the inner loop runs over pixels;
//   pixel-major (anything else, notably channels-last segments such as
//     one_hot(labels).permute(0, 3, 1, 2)): the inner loop runs over a pixel's segments.
// Both vectorise on their inner axis. A tile is a fixed set of pixels, so the per-tile partial sums,
// and therefore the results, do not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "cpu_memory.h"
#include "segment_hint_colors/segment_hint_colors_host.h"
#include "segment_hint_colors/segment_hint_colors_math.h"

namespace refcolor {
namespace {

constexpr int64_t kChunk = 1024;  // pixels per tile: a tile's rows stay in L1/L2 while reused
constexpr int kLanes = 16;        // independent partial sums, so the compiler vectorises reductions
constexpr int kSegLanes = 8;      // lanes of the pixel-major loops over segments

int64_t padded_lanes(int64_t n) {
  return (n + kSegLanes - 1) / kSegLanes * kSegLanes;
}

// Channel count fixed at compile time (kC > 0, unrolled) or read at run time (kC == 0).
template <int kC>
REFCOLOR_FORCE_INLINE int64_t channels_of(int64_t C) {
  return kC > 0 ? kC : C;
}

// ---- segment-major tasks: one span of n pixels with unit pixel stride --------------------------
// sS / sX / ...: element distance between consecutive segments / channels.

// out[i, c] += sum_p S_i(p) X_c(p) for c < C, out[i, C] += sum_p S_i(p) (when with_count).
template <int kC, typename T>
REFCOLOR_FORCE_INLINE void reduce_span_rows(const T* __restrict__ S, int64_t sS, const T* __restrict__ X, int64_t sX,
                                            T* __restrict__ out, int64_t active, int64_t C_, int64_t n,
                                            bool with_count) {
  const int64_t C = channels_of<kC>(C_), row = C + 1;
  constexpr int kSlots = kC > 0 ? kC + 1 : 1;
  for (int64_t i = 0; i < active; ++i) {
    const T* __restrict__ s = S + i * sS;
    if (kC > 0) {  // one pass over the row for all channels and the count
      T acc[kSlots][kLanes] = {};
      int64_t p = 0;
      for (; p + kLanes <= n; p += kLanes) {
        // The next segment row, one row ahead: each row of a tile is its own page, where the
        // hardware prefetcher starts cold (measured: the loads of s stalled most of this loop).
        if (i + 1 < active) __builtin_prefetch(s + sS + p);
        for (int l = 0; l < kLanes; ++l) {
          const T sv = s[p + l];
          for (int c = 0; c < kSlots - 1; ++c) acc[c][l] += sv * X[c * sX + p + l];
          acc[kSlots - 1][l] += sv;
        }
      }
      for (int c = 0; c < kSlots; ++c) {
        T t = 0;
        for (int l = 0; l < kLanes; ++l) t += acc[c][l];
        for (int64_t q = p; q < n; ++q) t += s[q] * (c < kSlots - 1 ? X[c * sX + q] : T(1));
        out[i * row + c] += t;
      }
    } else {  // any channel count: one lane-parallel dot product per channel
      for (int64_t c = 0; c <= C; ++c) {
        if (c == C && !with_count) break;
        T lanes[kLanes] = {};
        int64_t p = 0;
        for (; p + kLanes <= n; p += kLanes)
          for (int l = 0; l < kLanes; ++l) lanes[l] += s[p + l] * (c < C ? X[c * sX + p + l] : T(1));
        T t = 0;
        for (; p < n; ++p) t += s[p] * (c < C ? X[c * sX + p] : T(1));
        for (int l = 0; l < kLanes; ++l) t += lanes[l];
        out[i * row + c] += t;
      }
    }
  }
}

// The next segment row of a tile, a cache line at a time, before streaming the current one: each
// row is its own page, where the hardware prefetcher starts cold (as in reduce_span_rows).
template <int kWrite, typename T>
REFCOLOR_FORCE_INLINE void prefetch_row(const T* row, int64_t n) {
  for (int64_t p = 0; p < n; p += 64 / sizeof(T)) __builtin_prefetch(row + p, kWrite);
}

// hints_c = sum_{i<active} colors_ic S_i, mask = sum_{i<active} S_i on one span. Row-wise (each
// segment row streamed once into span-sized accumulators that stay in L1): blocking pixels in
// registers across all rows measured slower here (too many streams at once).
template <typename T>
REFCOLOR_FORCE_INLINE void paint_forward_rows(const T* __restrict__ S, int64_t sS, const T* __restrict__ colors,
                                              T* __restrict__ hints, int64_t sH, T* __restrict__ mask, int64_t active,
                                              int64_t C, int64_t n) {
  std::fill(mask, mask + n, T(0));
  for (int64_t c = 0; c < C; ++c) std::fill(hints + c * sH, hints + c * sH + n, T(0));
  for (int64_t i = 0; i < active; ++i) {
    const T* __restrict__ s = S + i * sS;
    if (i + 1 < active) prefetch_row<0>(s + sS, n);
    for (int64_t p = 0; p < n; ++p) mask[p] += s[p];
    for (int64_t c = 0; c < C; ++c) {
      const T w = colors[i * C + c];
      if (w == T(0)) continue;
      T* __restrict__ h = hints + c * sH;
      for (int64_t p = 0; p < n; ++p) h[p] += w * s[p];
    }
  }
}

// dS_i for every segment (zero when inactive) and dY on one span, row-wise like the forward.
template <int kC, typename T>
REFCOLOR_FORCE_INLINE void paint_backward_rows(const T* __restrict__ gH, int64_t sGH, const T* __restrict__ gM,
                                               const T* __restrict__ S, int64_t sS, const T* __restrict__ Y, int64_t sY,
                                               const T* __restrict__ colors, const T* __restrict__ grad_sum,
                                               const T* __restrict__ grad_count, T* __restrict__ dS, int64_t sdS,
                                               T* __restrict__ dY, int64_t sdY, int64_t active, int64_t Nc, int64_t C_,
                                               int64_t n) {
  const int64_t C = channels_of<kC>(C_);
  for (int64_t i = 0; i < Nc; ++i) {
    T* __restrict__ ds = dS + i * sdS;
    if (i >= active) {
      std::fill(ds, ds + n, T(0));
      continue;
    }
    const T* ci = colors + i * C;
    const T* gi = grad_sum + i * C;
    const T gc = grad_count[i];
    if (i + 1 < active) prefetch_row<1>(ds + sdS, n);  // the next row to write
    for (int64_t p = 0; p < n; ++p) ds[p] = segment_grad_at_pixel<kC>(ci, gi, gc, gM[p], gH + p, sGH, Y + p, sY, C);
  }
  for (int64_t c = 0; c < C; ++c) {
    T* __restrict__ dy = dY + c * sdY;
    std::fill(dy, dy + n, T(0));
    for (int64_t i = 0; i < active; ++i) {
      const T w = grad_sum[i * C + c];
      if (w == T(0)) continue;
      const T* __restrict__ s = S + i * sS;
      if (i + 1 < active) prefetch_row<0>(s + sS, n);
      for (int64_t p = 0; p < n; ++p) dy[p] += w * s[p];
    }
  }
}

// ---- pixel-major tasks: one pixel at a time, its segments `si` apart ---------------------------
// Segments are taken kSegLanes at a time (one vector). With unit segment stride a whole group is
// read in place; a partial last group (or strided segments) is copied into a zero-padded buffer,
// so every loop below has whole vectors and no scalar tail. Per-sample tables are transposed to
// [channel][segment] with rows of Ncp (Nc rounded up to kSegLanes, zero padded).

// Pointer to segments [g0, g0 + kSegLanes) of a pixel, zero beyond `m` valid ones.
template <bool kUnit, typename T>
REFCOLOR_FORCE_INLINE const T* segment_group(const T* __restrict__ s, int64_t si, int64_t g0, int64_t m,
                                             T* __restrict__ buf) {
  if (kUnit && m == kSegLanes) return s + g0;
  for (int l = 0; l < kSegLanes; ++l) buf[l] = l < m ? s[(g0 + l) * (kUnit ? 1 : si)] : T(0);
  return buf;
}

// out[c] = sum_{i<active} table[c * Ncp + i] S_i for c < C, out[C] = sum S_i: a group of segments
// per vector, horizontal sums once per pixel.
template <int kC, bool kUnit, typename T>
REFCOLOR_FORCE_INLINE void dot_pixel_segments(const T* __restrict__ s, int64_t si, const T* __restrict__ table,
                                              int64_t C_, int64_t Ncp, int64_t active, T* __restrict__ out) {
  const int64_t C = channels_of<kC>(C_);
  T buf[kSegLanes];
  if (kC > 0) {
    constexpr int kSlots = kC + 1;
    T acc[kSlots][kSegLanes] = {};
    for (int64_t g0 = 0; g0 < active; g0 += kSegLanes) {
      const T* __restrict__ v = segment_group<kUnit>(s, si, g0, std::min<int64_t>(kSegLanes, active - g0), buf);
      for (int l = 0; l < kSegLanes; ++l) {
        for (int c = 0; c < kC; ++c) acc[c][l] += table[c * Ncp + g0 + l] * v[l];
        acc[kC][l] += v[l];
      }
    }
    for (int c = 0; c < kSlots; ++c) {
      T t = 0;
      for (int l = 0; l < kSegLanes; ++l) t += acc[c][l];
      out[c] = t;
    }
  } else {
    for (int64_t c = 0; c <= C; ++c) out[c] = T(0);
    for (int64_t g0 = 0; g0 < active; g0 += kSegLanes) {
      const T* __restrict__ v = segment_group<kUnit>(s, si, g0, std::min<int64_t>(kSegLanes, active - g0), buf);
      for (int64_t c = 0; c <= C; ++c) {
        T t = 0;
        for (int l = 0; l < kSegLanes; ++l) t += v[l] * (c < C ? table[c * Ncp + g0 + l] : T(1));
        out[c] += t;
      }
    }
  }
}

// buf[i] = gM + grad_count_i + sum_c (colors_ic gH_c + grad_sum_ic Y_c) for i < La (the caller
// zeroes i >= active); grad_count is Ncp-padded.
template <int kC, typename T>
REFCOLOR_FORCE_INLINE void grad_pixel_segments(T* __restrict__ buf, T gm, const T* __restrict__ gh,
                                               const T* __restrict__ y, const T* __restrict__ colorsT,
                                               const T* __restrict__ grad_sumT, const T* __restrict__ grad_count,
                                               int64_t C_, int64_t Ncp, int64_t La) {
  const int64_t C = channels_of<kC>(C_);
  for (int64_t i0 = 0; i0 < La; i0 += kSegLanes)
    for (int l = 0; l < kSegLanes; ++l) buf[i0 + l] = gm + grad_count[i0 + l];
  for (int64_t c = 0; c < C; ++c) {
    const T a = gh[c], b = y[c];
    const T* __restrict__ ct = colorsT + c * Ncp;
    const T* __restrict__ gt = grad_sumT + c * Ncp;
    for (int64_t i0 = 0; i0 < La; i0 += kSegLanes)
      for (int l = 0; l < kSegLanes; ++l) buf[i0 + l] += ct[i0 + l] * a + gt[i0 + l] * b;
  }
}

// ---- Per-dtype entry points, each cloned for AVX2+FMA and baseline x86-64 (see macros.h) -------
// A "span" is n pixels of one row. Segment-major entries take unit pixel stride; pixel-major ones
// take the pixel stride of every tensor (pS, pX, ...) and gather the (few) image channels.
#define REFCOLOR_DEFINE_TASKS(T)                                                                                       \
  REFCOLOR_CPU_CLONES void reduce_rows(const T* S, int64_t sS, const T* X, int64_t sX, T* out, int64_t active,         \
                                       int64_t C, int64_t n, bool with_count) {                                        \
    if (C == 3)                                                                                                        \
      reduce_span_rows<3>(S, sS, X, sX, out, active, C, n, with_count);                                                \
    else                                                                                                               \
      reduce_span_rows<0>(S, sS, X, sX, out, active, C, n, with_count);                                                \
  }                                                                                                                    \
  REFCOLOR_CPU_CLONES void paint_forward_rows_entry(const T* S, int64_t sS, const T* colors, T* hints, int64_t sH,     \
                                                    T* mask, int64_t active, int64_t C, int64_t n) {                   \
    paint_forward_rows(S, sS, colors, hints, sH, mask, active, C, n);                                                  \
  }                                                                                                                    \
  REFCOLOR_CPU_CLONES void paint_backward_rows_entry(const T* gH, int64_t sGH, const T* gM, const T* S, int64_t sS,    \
                                                     const T* Y, int64_t sY, const T* colors, const T* grad_sum,       \
                                                     const T* grad_count, T* dS, int64_t sdS, T* dY, int64_t sdY,      \
                                                     int64_t active, int64_t Nc, int64_t C, int64_t n) {               \
    if (C == 3)                                                                                                        \
      paint_backward_rows<3>(gH, sGH, gM, S, sS, Y, sY, colors, grad_sum, grad_count, dS, sdS, dY, sdY, active, Nc, C, \
                             n);                                                                                       \
    else                                                                                                               \
      paint_backward_rows<0>(gH, sGH, gM, S, sS, Y, sY, colors, grad_sum, grad_count, dS, sdS, dY, sdY, active, Nc, C, \
                             n);                                                                                       \
  }
REFCOLOR_DEFINE_TASKS(float)
REFCOLOR_DEFINE_TASKS(double)
#undef REFCOLOR_DEFINE_TASKS

// Pixel-major spans: n pixels, consecutive pixels pS / pX / ... elements apart in each tensor.
// The reduction takes one group of kSegLanes segments at a time over the whole span, so its
// (C + 1) x kSegLanes sums stay in registers (a pixel-outer loop would reload them per pixel);
// out[i * (C + 1) + c] += the span's sums.
template <int kC, bool kUnit, typename T>
REFCOLOR_FORCE_INLINE void reduce_pixels_impl(const T* S, int64_t si, int64_t pS, const T* X, int64_t sX, int64_t pX,
                                              T* out, int64_t active, int64_t C_, int64_t n, bool with_count) {
  const int64_t C = channels_of<kC>(C_), row = C + 1;
  T buf[kSegLanes];
  for (int64_t g0 = 0; g0 < active; g0 += kSegLanes) {
    const int64_t m = std::min<int64_t>(kSegLanes, active - g0);
    if (kC > 0) {
      T acc[kC > 0 ? kC + 1 : 1][kSegLanes] = {};
      for (int64_t p = 0; p < n; ++p) {
        const T* __restrict__ v = segment_group<kUnit>(S + p * pS, si, g0, m, buf);
        for (int c = 0; c < kC; ++c) {
          const T xc = X[c * sX + p * pX];
          for (int l = 0; l < kSegLanes; ++l) acc[c][l] += v[l] * xc;
        }
        for (int l = 0; l < kSegLanes; ++l) acc[kC][l] += v[l];
      }
      for (int64_t l = 0; l < m; ++l)
        for (int c = 0; c <= kC; ++c) out[(g0 + l) * row + c] += acc[c][l];
    } else {
      std::vector<T> acc(row * kSegLanes, T(0));
      for (int64_t p = 0; p < n; ++p) {
        const T* __restrict__ v = segment_group<kUnit>(S + p * pS, si, g0, m, buf);
        for (int64_t c = 0; c <= C; ++c) {
          const T xc = c < C ? X[c * sX + p * pX] : T(1);
          for (int l = 0; l < kSegLanes; ++l) acc[c * kSegLanes + l] += v[l] * xc;
        }
      }
      for (int64_t l = 0; l < m; ++l)
        for (int64_t c = 0; c <= C; ++c) out[(g0 + l) * row + c] += acc[c * kSegLanes + l];
    }
  }
  (void)with_count;  // the count slot is cheap: always summed
}

template <int kC, bool kUnit, typename T>
REFCOLOR_FORCE_INLINE void paint_forward_pixels_impl(const T* S, int64_t si, int64_t pS, const T* colorsT, int64_t Ncp,
                                                     T* hints, int64_t sH, int64_t pH, T* mask, int64_t pM,
                                                     int64_t active, int64_t C, int64_t n) {
  std::vector<T> out_(C + 1);
  T* out = out_.data();
  for (int64_t p = 0; p < n; ++p) {
    dot_pixel_segments<kC, kUnit>(S + p * pS, si, colorsT, C, Ncp, active, out);
    for (int64_t c = 0; c < channels_of<kC>(C); ++c) hints[c * sH + p * pH] = out[c];
    mask[p * pM] = out[channels_of<kC>(C)];
  }
}

template <int kC, bool kUnit, typename T>
REFCOLOR_FORCE_INLINE void paint_backward_pixels_impl(const T* gH, int64_t sGH, int64_t pGH, const T* gM, int64_t pGM,
                                                      const T* S, int64_t si, int64_t pS, const T* Y, int64_t sY,
                                                      int64_t pY, const T* colorsT, const T* grad_sumT,
                                                      const T* grad_count, int64_t Ncp, T* dS, int64_t dsi, int64_t pdS,
                                                      T* dY, int64_t sdY, int64_t pdY, int64_t active, int64_t Nc,
                                                      int64_t C, int64_t n) {
  const int64_t La = padded_lanes(active);
  std::vector<T> buf_(La), gh_(C), y_(C), out_(C + 1);
  T *buf = buf_.data(), *gh = gh_.data(), *y = y_.data(), *out = out_.data();
  if (kC > 0) {  // fused: one walk over the pixel's segment groups writes dS and sums dY
    constexpr int kCh = kC > 0 ? kC : 1;
    T sbuf[kSegLanes];
    for (int64_t p = 0; p < n; ++p) {
      T ghc[kCh], yc[kCh], acc[kCh][kSegLanes] = {};
      for (int c = 0; c < kCh; ++c) ghc[c] = gH[c * sGH + p * pGH], yc[c] = Y[c * sY + p * pY];
      const T gm = gM[p * pGM];
      T* ds = dS + p * pdS;
      for (int64_t g0 = 0; g0 < active; g0 += kSegLanes) {
        const int64_t m = std::min<int64_t>(kSegLanes, active - g0);
        const T* __restrict__ v = segment_group<kUnit>(S + p * pS, si, g0, m, sbuf);
        T d[kSegLanes];
        for (int l = 0; l < kSegLanes; ++l) {
          d[l] = gm + grad_count[g0 + l];
          for (int c = 0; c < kCh; ++c) {
            d[l] += colorsT[c * Ncp + g0 + l] * ghc[c] + grad_sumT[c * Ncp + g0 + l] * yc[c];
            acc[c][l] += grad_sumT[c * Ncp + g0 + l] * v[l];
          }
        }
        if (kUnit && m == kSegLanes)
          for (int l = 0; l < kSegLanes; ++l) ds[g0 + l] = d[l];
        else
          for (int64_t l = 0; l < m; ++l) ds[(g0 + l) * dsi] = d[l];
      }
      for (int64_t i = active; i < Nc; ++i) ds[i * dsi] = T(0);
      for (int c = 0; c < kCh; ++c) {
        T t = 0;
        for (int l = 0; l < kSegLanes; ++l) t += acc[c][l];
        dY[c * sdY + p * pdY] = t;
      }
    }
    return;
  }
  for (int64_t p = 0; p < n; ++p) {
    for (int64_t c = 0; c < channels_of<kC>(C); ++c) gh[c] = gH[c * sGH + p * pGH], y[c] = Y[c * sY + p * pY];
    grad_pixel_segments<kC>(buf, gM[p * pGM], gh, y, colorsT, grad_sumT, grad_count, C, Ncp, La);
    T* ds = dS + p * pdS;
    if (kUnit) {
      std::copy(buf, buf + active, ds);
      std::fill(ds + active, ds + Nc, T(0));
    } else {
      for (int64_t i = 0; i < Nc; ++i) ds[i * dsi] = i < active ? buf[i] : T(0);
    }
    dot_pixel_segments<kC, kUnit>(S + p * pS, si, grad_sumT, C, Ncp, active, out);
    for (int64_t c = 0; c < channels_of<kC>(C); ++c) dY[c * sdY + p * pdY] = out[c];
  }
}

// ---- Pixel-major, three channels, adjacent segments (one_hot(...).permute(0, 3, 1, 2)) ----------
// The generic loops above leave vectorisation to the compiler, which (GCC 12, measured with perf)
// vectorised them over the four outputs with scalar multiplies, lane inserts and stack spills:
// 2.3x the time of the segment-major path. Here the lanes are explicit (GCC/clang vector extensions,
// so each target clone gets its own instructions without intrinsics): a vector holds kSegLanes
// segments of one pixel, and the four per-pixel sums come out of one transposing reduction.
#if defined(__GNUC__) || defined(__clang__)
#define REFCOLOR_SEGMENT_LANES 1
#pragma GCC diagnostic ignored "-Wpsabi"  // vector helpers are always inlined: no call passes vectors

template <typename T>
struct LanesOf {
  typedef T type __attribute__((vector_size(kSegLanes * sizeof(T))));
};
template <typename T>
using Lanes = typename LanesOf<T>::type;

template <typename T>
REFCOLOR_FORCE_INLINE Lanes<T> load_lanes(const T* p) {
  Lanes<T> v;
  __builtin_memcpy(&v, p, sizeof(v));  // unaligned load
  return v;
}

template <typename T>
REFCOLOR_FORCE_INLINE void store_lanes(T* p, Lanes<T> v) {
  __builtin_memcpy(p, &v, sizeof(v));
}

// Segments [g0, g0 + m) of a pixel (m <= kSegLanes) at s + g0, zero in lanes >= m. `over_read`: the
// kSegLanes - m values after them lie inside the tensor (before a later pixel's segment), so one
// full load and a select replace the copy; the select (not a multiply) keeps a NaN there out.
template <typename T>
REFCOLOR_FORCE_INLINE Lanes<T> load_group(const T* s, int64_t m, bool over_read) {
  if (m == kSegLanes) return load_lanes(s);
  if (over_read) {
    const Lanes<T> lane = {0, 1, 2, 3, 4, 5, 6, 7};
    return lane < T(m) ? load_lanes(s) : Lanes<T>{};
  }
  T buf[kSegLanes] = {};
  for (int64_t l = 0; l < m; ++l) buf[l] = s[l];
  return load_lanes(buf);
}

// {sum(a), sum(b), sum(c), sum(d)}: halves added, then two transposing pair-add rounds.
template <typename T>
REFCOLOR_FORCE_INLINE auto sum4(Lanes<T> a, Lanes<T> b, Lanes<T> c, Lanes<T> d) {
  static_assert(kSegLanes == 8, "the shuffles below assume 8 lanes");
  const auto half = [](Lanes<T> x) {
    return __builtin_shufflevector(x, x, 0, 1, 2, 3) + __builtin_shufflevector(x, x, 4, 5, 6, 7);
  };
  const auto a4 = half(a), b4 = half(b), c4 = half(c), d4 = half(d);
  const auto ab = __builtin_shufflevector(a4, b4, 0, 2, 4, 6) + __builtin_shufflevector(a4, b4, 1, 3, 5, 7);
  const auto cd = __builtin_shufflevector(c4, d4, 0, 2, 4, 6) + __builtin_shufflevector(c4, d4, 1, 3, 5, 7);
  return __builtin_shufflevector(ab, cd, 0, 2, 4, 6) + __builtin_shufflevector(ab, cd, 1, 3, 5, 7);
}

// A pixel's group may over-read when a later pixel of the span follows (its segments end past the
// read) and the read's overhang fits in one pixel stride (pS = 0, a broadcast tensor, never does).
REFCOLOR_FORCE_INLINE bool may_over_read(int64_t p, int64_t n, int64_t m, int64_t pS) {
  return p + 1 < n && kSegLanes - m <= pS;
}

#endif  // vector extensions

// As reduce_pixels_impl<3, true>: out[i * 4 + c] += sum_p S_i X_c, out[i * 4 + 3] += sum_p S_i.
template <typename T>
REFCOLOR_FORCE_INLINE void reduce_pixels_c3(const T* S, int64_t pS, const T* X, int64_t sX, int64_t pX, T* out,
                                            int64_t active, int64_t n) {
#ifdef REFCOLOR_SEGMENT_LANES
  for (int64_t g0 = 0; g0 < active; g0 += kSegLanes) {
    const int64_t m = std::min<int64_t>(kSegLanes, active - g0);
    Lanes<T> a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int64_t p = 0; p < n; ++p) {
      const Lanes<T> v = load_group(S + p * pS + g0, m, may_over_read(p, n, m, pS));
      const T* x = X + p * pX;
      a0 += v * x[0];
      a1 += v * x[sX];
      a2 += v * x[2 * sX];
      a3 += v;
    }
    for (int64_t l = 0; l < m; ++l) {
      T* o = out + (g0 + l) * 4;
      o[0] += a0[l], o[1] += a1[l], o[2] += a2[l], o[3] += a3[l];
    }
  }
#else  // other compilers: the generic loops
  reduce_pixels_impl<3, true>(S, 1, pS, X, sX, pX, out, active, 3, n, true);
#endif
}

// As paint_forward_pixels_impl<3, true>.
template <typename T>
REFCOLOR_FORCE_INLINE void paint_forward_pixels_c3(const T* S, int64_t pS, const T* colorsT, int64_t Ncp, T* hints,
                                                   int64_t sH, int64_t pH, T* mask, int64_t pM, int64_t active,
                                                   int64_t n) {
#ifdef REFCOLOR_SEGMENT_LANES
  for (int64_t p = 0; p < n; ++p) {
    Lanes<T> a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int64_t g0 = 0; g0 < active; g0 += kSegLanes) {
      const int64_t m = std::min<int64_t>(kSegLanes, active - g0);
      const Lanes<T> v = load_group(S + p * pS + g0, m, may_over_read(p, n, m, pS));
      a0 += v * load_lanes(colorsT + g0);
      a1 += v * load_lanes(colorsT + Ncp + g0);
      a2 += v * load_lanes(colorsT + 2 * Ncp + g0);
      a3 += v;
    }
    const auto r = sum4<T>(a0, a1, a2, a3);
    T* h = hints + p * pH;
    h[0] = r[0], h[sH] = r[1], h[2 * sH] = r[2];
    mask[p * pM] = r[3];
  }
#else  // other compilers: the generic loops
  paint_forward_pixels_impl<3, true>(S, 1, pS, colorsT, Ncp, hints, sH, pH, mask, pM, active, 3, n);
#endif
}

// As paint_backward_pixels_impl<3, true>: dS for every segment (zero when inactive), dY.
template <typename T>
REFCOLOR_FORCE_INLINE void paint_backward_pixels_c3(const T* gH, int64_t sGH, int64_t pGH, const T* gM, int64_t pGM,
                                                    const T* S, int64_t pS, const T* Y, int64_t sY, int64_t pY,
                                                    const T* colorsT, const T* grad_sumT, const T* grad_count,
                                                    int64_t Ncp, T* dS, int64_t dsi, int64_t pdS, T* dY, int64_t sdY,
                                                    int64_t pdY, int64_t active, int64_t Nc, int64_t n) {
#ifdef REFCOLOR_SEGMENT_LANES
  for (int64_t p = 0; p < n; ++p) {
    const T* gh = gH + p * pGH;
    const T* y = Y + p * pY;
    const T gh0 = gh[0], gh1 = gh[sGH], gh2 = gh[2 * sGH], y0 = y[0], y1 = y[sY], y2 = y[2 * sY];
    const T gm = gM[p * pGM];
    T* ds = dS + p * pdS;
    Lanes<T> a0 = {}, a1 = {}, a2 = {};
    for (int64_t g0 = 0; g0 < active; g0 += kSegLanes) {
      const int64_t m = std::min<int64_t>(kSegLanes, active - g0);
      const Lanes<T> v = load_group(S + p * pS + g0, m, may_over_read(p, n, m, pS));
      const Lanes<T> t0 = load_lanes(grad_sumT + g0), t1 = load_lanes(grad_sumT + Ncp + g0),
                     t2 = load_lanes(grad_sumT + 2 * Ncp + g0);
      const Lanes<T> d = (load_lanes(grad_count + g0) + gm) + load_lanes(colorsT + g0) * gh0 +
                         load_lanes(colorsT + Ncp + g0) * gh1 + load_lanes(colorsT + 2 * Ncp + g0) * gh2 + t0 * y0 +
                         t1 * y1 + t2 * y2;
      a0 += t0 * v, a1 += t1 * v, a2 += t2 * v;
      // A whole-vector store may spill into this pixel's inactive segments (zeroed below) or the
      // next pixel's first ones (written after this, by this thread) when dS is densely packed
      // and the spill ends inside the next pixel (with fewer segments than lanes it would not).
      if (dsi == 1 && (m == kSegLanes || (pdS == Nc && may_over_read(p, n, m, pdS))))
        store_lanes(ds + g0, d);
      else
        for (int64_t l = 0; l < m; ++l) ds[(g0 + l) * dsi] = d[l];
    }
    for (int64_t i = active; i < Nc; ++i) ds[i * dsi] = T(0);
    const auto r = sum4<T>(a0, a1, a2, Lanes<T>{});
    T* dy = dY + p * pdY;
    dy[0] = r[0], dy[sdY] = r[1], dy[2 * sdY] = r[2];
  }
#else  // other compilers: the generic loops
  paint_backward_pixels_impl<3, true>(gH, sGH, pGH, gM, pGM, S, 1, pS, Y, sY, pY, colorsT, grad_sumT, grad_count, Ncp,
                                      dS, dsi, pdS, dY, sdY, pdY, active, Nc, 3, n);
#endif
}

// Cloned entry points; kUnit (segments adjacent: channels-last) and C == 3 get their own copies.
#define REFCOLOR_DEFINE_PIXEL_TASKS(T)                                                                                 \
  REFCOLOR_CPU_CLONES void reduce_pixels(const T* S, int64_t si, int64_t pS, const T* X, int64_t sX, int64_t pX,       \
                                         T* out, int64_t active, int64_t C, int64_t n, bool with_count) {              \
    if (C == 3 && si == 1)                                                                                             \
      reduce_pixels_c3(S, pS, X, sX, pX, out, active, n);                                                              \
    else if (C == 3)                                                                                                   \
      reduce_pixels_impl<3, false>(S, si, pS, X, sX, pX, out, active, C, n, with_count);                               \
    else                                                                                                               \
      reduce_pixels_impl<0, false>(S, si, pS, X, sX, pX, out, active, C, n, with_count);                               \
  }                                                                                                                    \
  REFCOLOR_CPU_CLONES void paint_forward_pixels(const T* S, int64_t si, int64_t pS, const T* colorsT, int64_t Ncp,     \
                                                T* hints, int64_t sH, int64_t pH, T* mask, int64_t pM, int64_t active, \
                                                int64_t C, int64_t n) {                                                \
    if (C == 3 && si == 1)                                                                                             \
      paint_forward_pixels_c3(S, pS, colorsT, Ncp, hints, sH, pH, mask, pM, active, n);                                \
    else if (C == 3)                                                                                                   \
      paint_forward_pixels_impl<3, false>(S, si, pS, colorsT, Ncp, hints, sH, pH, mask, pM, active, C, n);             \
    else                                                                                                               \
      paint_forward_pixels_impl<0, false>(S, si, pS, colorsT, Ncp, hints, sH, pH, mask, pM, active, C, n);             \
  }                                                                                                                    \
  REFCOLOR_CPU_CLONES void paint_backward_pixels(                                                                      \
      const T* gH, int64_t sGH, int64_t pGH, const T* gM, int64_t pGM, const T* S, int64_t si, int64_t pS, const T* Y, \
      int64_t sY, int64_t pY, const T* colorsT, const T* grad_sumT, const T* grad_count, int64_t Ncp, T* dS,           \
      int64_t dsi, int64_t pdS, T* dY, int64_t sdY, int64_t pdY, int64_t active, int64_t Nc, int64_t C, int64_t n) {   \
    if (C == 3 && si == 1 && dsi == 1)                                                                                 \
      paint_backward_pixels_c3(gH, sGH, pGH, gM, pGM, S, pS, Y, sY, pY, colorsT, grad_sumT, grad_count, Ncp, dS, dsi,  \
                               pdS, dY, sdY, pdY, active, Nc, n);                                                      \
    else if (C == 3)                                                                                                   \
      paint_backward_pixels_impl<3, false>(gH, sGH, pGH, gM, pGM, S, si, pS, Y, sY, pY, colorsT, grad_sumT,            \
                                           grad_count, Ncp, dS, dsi, pdS, dY, sdY, pdY, active, Nc, C, n);             \
    else                                                                                                               \
      paint_backward_pixels_impl<0, false>(gH, sGH, pGH, gM, pGM, S, si, pS, Y, sY, pY, colorsT, grad_sumT,            \
                                           grad_count, Ncp, dS, dsi, pdS, dY, sdY, pdY, active, Nc, C, n);             \
  }
REFCOLOR_DEFINE_PIXEL_TASKS(float)
REFCOLOR_DEFINE_PIXEL_TASKS(double)
#undef REFCOLOR_DEFINE_PIXEL_TASKS

// ---- Tiling ----------------------------------------------------------------------------------
// A strided tensor seen as (batch, channel, row, column); rows may have been collapsed (see Grid).
template <typename T>
struct View {
  T* data;
  Strides4 s;
  T* at(int64_t b, int64_t ch, int64_t row, int64_t col) const {
    return data + b * s.batch + ch * s.channel + row * s.row + col * s.col;
  }
};

template <typename T>
View<T> view_of(const at::Tensor& t) {
  return {static_cast<T*>(t.data_ptr()), strides_of(t)};
}

// Pixel geometry of a call: rows x cols, with (H, W) collapsed to one row of H * W pixels when
// every tensor allows it (see pixels_collapse), so tiles span several image rows.
struct Grid {
  int64_t rows, cols, rows_per_tile, col_tiles, row_tiles;
  int64_t tiles() const { return row_tiles * col_tiles; }
};

Grid make_grid(int64_t H, int64_t W, bool flat) {
  Grid g;
  g.rows = flat ? 1 : H;
  g.cols = flat ? H * W : W;
  g.col_tiles = std::max<int64_t>(1, (g.cols + kChunk - 1) / kChunk);
  g.rows_per_tile = g.cols >= kChunk ? 1 : std::max<int64_t>(1, kChunk / std::max<int64_t>(g.cols, 1));
  g.row_tiles = (g.rows + g.rows_per_tile - 1) / g.rows_per_tile;
  return g;
}

// Tiles per parallel chunk: at least ~kMinParallelWork element visits per thread, so small calls
// (gradcheck, tiny images) stay on one thread; waking a second one costs more than such a call,
// and on a busy machine an OpenMP barrier can stall for milliseconds (measured: gradcheck of a
// 3x5 image took 27 s on 2 threads of a loaded 2-core machine, 0.1 s on one).
constexpr int64_t kMinParallelWork = int64_t(1) << 15;

int64_t tile_grain(const Grid& g, int64_t channels_per_pixel) {
  const int64_t per_tile = std::max<int64_t>(1, std::min(kChunk, g.cols) * g.rows_per_tile * channels_per_pixel);
  return std::max<int64_t>(1, kMinParallelWork / per_tile);
}

// Runs fn(b, tile, task) for every (sample, tile), tiles in parallel.
template <typename TileFn>
void for_each_tile(int64_t batch, const Grid& g, int64_t channels_per_pixel, const TileFn& fn) {
  const int64_t tiles = g.tiles();
  at::parallel_for(0, batch * tiles, tile_grain(g, channels_per_pixel), [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) fn(task / tiles, task % tiles, task);
  });
}

template <typename SpanFn>
void for_each_span(const Grid& g, int64_t tile, const SpanFn& fn) {
  const int64_t rt = tile / g.col_tiles, ct = tile % g.col_tiles;
  const int64_t col0 = ct * kChunk, n = std::min(kChunk, g.cols - col0);
  const int64_t r1 = std::min(g.rows, (rt + 1) * g.rows_per_tile);
  for (int64_t r = rt * g.rows_per_tile; r < r1; ++r) fn(r, col0, n);
}

// partial[(b * tiles + tile) * Nc * (C + 1) + i * (C + 1) + c]: per-tile sums for the active
// segments (others stay zero); c < C: sum S_i X_c, c == C: sum S_i (with_count).
template <typename T>
std::vector<T> segment_reduce(const View<const T>& S, const View<const T>& X, const int64_t* nh, int64_t batch,
                              int64_t Nc, int64_t C, const Grid& g, bool pixel_major, bool with_count) {
  const int64_t row = C + 1;
  std::vector<T> partial(batch * g.tiles() * Nc * row, T(0));
  for_each_tile(batch, g, Nc + C, [&](int64_t b, int64_t tile, int64_t task) {
    const int64_t active = clamp_num_hints(nh[b], Nc);
    T* out = partial.data() + task * Nc * row;
    if (!pixel_major) {
      for_each_span(g, tile, [&](int64_t r, int64_t col0, int64_t n) {
        reduce_rows(S.at(b, 0, r, col0), S.s.channel, X.at(b, 0, r, col0), X.s.channel, out, active, C, n, with_count);
      });
      return;
    }
    for_each_span(g, tile, [&](int64_t r, int64_t col0, int64_t n) {
      reduce_pixels(S.at(b, 0, r, col0), S.s.channel, S.s.col, X.at(b, 0, r, col0), X.s.channel, X.s.col, out, active,
                    C, n, with_count);
    });
  });
  return partial;
}

template <typename T>
T total(const std::vector<T>& partial, int64_t tiles, int64_t Nc, int64_t C, int64_t b, int64_t i, int64_t c) {
  T t = 0;
  for (int64_t k = 0; k < tiles; ++k) t += partial[((b * tiles + k) * Nc + i) * (C + 1) + c];
  return t;
}

// [b][c][i] copy of a (B, Nc, C) table with Ncp-padded rows, for the pixel-major loops.
template <typename T>
std::vector<T> transposed(const T* table, int64_t batch, int64_t Nc, int64_t C) {
  const int64_t Ncp = padded_lanes(Nc);
  std::vector<T> t(batch * C * Ncp, T(0));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < Nc; ++i)
      for (int64_t c = 0; c < C; ++c) t[(b * C + c) * Ncp + i] = table[(b * Nc + i) * C + c];
  return t;
}

// Segment-major needs unit column stride in every tensor; anything else runs pixel-major.
bool use_pixel_major(std::initializer_list<const at::Tensor*> pixel_tensors) {
  for (const at::Tensor* t : pixel_tensors)
    if (strides_of(*t).col != 1) return true;
  return false;
}

bool all_collapse(std::initializer_list<const at::Tensor*> pixel_tensors) {
  for (const at::Tensor* t : pixel_tensors)
    if (!pixels_collapse(*t)) return false;
  return true;
}

template <typename T>
void forward_impl(const at::Tensor& segments, const at::Tensor& image, const int64_t* nh, at::Tensor& hints_t,
                  at::Tensor& mask_t, T* colors, T* counts, const SegmentHintSizes& z) {
  const int64_t C = z.channels, Nc = z.segments, B = z.batch;
  const bool flat = all_collapse({&segments, &image, &hints_t, &mask_t});
  const bool pixel_major = use_pixel_major({&segments, &image, &hints_t, &mask_t});
  View<const T> S = view_of<const T>(segments), Y = view_of<const T>(image);
  View<T> hints = view_of<T>(hints_t), mask = view_of<T>(mask_t);
  const Grid g = make_grid(z.height, z.width, flat);
  const std::vector<T> partial = segment_reduce(S, Y, nh, B, Nc, C, g, pixel_major, /*with_count=*/true);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t active = clamp_num_hints(nh[b], Nc);
    for (int64_t i = 0; i < Nc; ++i) {
      const T count = i < active ? total(partial, g.tiles(), Nc, C, b, i, C) : T(0);
      counts[b * Nc + i] = count;
      for (int64_t c = 0; c < C; ++c)
        colors[(b * Nc + i) * C + c] =
            i < active ? segment_mean(total(partial, g.tiles(), Nc, C, b, i, c), count) : T(0);
    }
  }
  const std::vector<T> colorsT = pixel_major ? transposed(colors, B, Nc, C) : std::vector<T>();
  const int64_t Ncp = padded_lanes(Nc);
  for_each_tile(B, g, Nc + C, [&](int64_t b, int64_t tile, int64_t) {
    const int64_t active = clamp_num_hints(nh[b], Nc);
    for_each_span(g, tile, [&](int64_t r, int64_t col0, int64_t n) {
      if (pixel_major)
        paint_forward_pixels(S.at(b, 0, r, col0), S.s.channel, S.s.col, colorsT.data() + b * C * Ncp, Ncp,
                             hints.at(b, 0, r, col0), hints.s.channel, hints.s.col, mask.at(b, 0, r, col0), mask.s.col,
                             active, C, n);
      else
        paint_forward_rows_entry(S.at(b, 0, r, col0), S.s.channel, colors + b * Nc * C, hints.at(b, 0, r, col0),
                                 hints.s.channel, mask.at(b, 0, r, col0), active, C, n);
    });
  });
}

template <typename T>
void backward_impl(const at::Tensor& grad_hints, const at::Tensor& grad_mask, const at::Tensor& segments,
                   const at::Tensor& image, const int64_t* nh, const T* colors, const T* counts, at::Tensor& dS_t,
                   at::Tensor& dY_t, const SegmentHintSizes& z) {
  const int64_t C = z.channels, Nc = z.segments, B = z.batch;
  const bool flat = all_collapse({&grad_hints, &grad_mask, &segments, &image, &dS_t, &dY_t});
  const bool pixel_major = use_pixel_major({&grad_hints, &grad_mask, &segments, &image, &dS_t, &dY_t});
  View<const T> gH = view_of<const T>(grad_hints), gM = view_of<const T>(grad_mask);
  View<const T> S = view_of<const T>(segments), Y = view_of<const T>(image);
  View<T> dS = view_of<T>(dS_t), dY = view_of<T>(dY_t);
  const Grid g = make_grid(z.height, z.width, flat);
  const std::vector<T> partial = segment_reduce(S, gH, nh, B, Nc, C, g, pixel_major, /*with_count=*/false);
  // grad_sum (B, Nc, C) and grad_count (B, Nc) from grad_color = sum_p gH S.
  std::vector<T> grad_sum(B * Nc * C, T(0)), grad_count(B * Nc, T(0));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t active = clamp_num_hints(nh[b], Nc);
    for (int64_t i = 0; i < active; ++i) {
      const int64_t bi = b * Nc + i;
      for (int64_t c = 0; c < C; ++c) {
        const T grad_color = total(partial, g.tiles(), Nc, C, b, i, c);
        grad_sum[bi * C + c] = segment_mean_grad_sum(grad_color, counts[bi]);
        grad_count[bi] += segment_mean_grad_count(grad_color, colors[bi * C + c], counts[bi]);
      }
    }
  }
  const int64_t Ncp = padded_lanes(Nc);
  const std::vector<T> colorsT = pixel_major ? transposed(colors, B, Nc, C) : std::vector<T>();
  const std::vector<T> grad_sumT = pixel_major ? transposed(grad_sum.data(), B, Nc, C) : std::vector<T>();
  const std::vector<T> grad_countP = pixel_major ? transposed(grad_count.data(), B, Nc, 1) : std::vector<T>();
  for_each_tile(B, g, Nc + C, [&](int64_t b, int64_t tile, int64_t) {
    const int64_t active = clamp_num_hints(nh[b], Nc);
    for_each_span(g, tile, [&](int64_t r, int64_t col0, int64_t n) {
      if (pixel_major)
        paint_backward_pixels(gH.at(b, 0, r, col0), gH.s.channel, gH.s.col, gM.at(b, 0, r, col0), gM.s.col,
                              S.at(b, 0, r, col0), S.s.channel, S.s.col, Y.at(b, 0, r, col0), Y.s.channel, Y.s.col,
                              colorsT.data() + b * C * Ncp, grad_sumT.data() + b * C * Ncp,
                              grad_countP.data() + b * Ncp, Ncp, dS.at(b, 0, r, col0), dS.s.channel, dS.s.col,
                              dY.at(b, 0, r, col0), dY.s.channel, dY.s.col, active, Nc, C, n);
      else
        paint_backward_rows_entry(gH.at(b, 0, r, col0), gH.s.channel, gM.at(b, 0, r, col0), S.at(b, 0, r, col0),
                                  S.s.channel, Y.at(b, 0, r, col0), Y.s.channel, colors + b * Nc * C,
                                  grad_sum.data() + b * Nc * C, grad_count.data() + b * Nc, dS.at(b, 0, r, col0),
                                  dS.s.channel, dY.at(b, 0, r, col0), dY.s.channel, active, Nc, C, n);
    });
  });
}

void check_cpu_dtype(const at::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
              "the C++ CPU kernel of segment_hint_colors takes float32 or float64, got ", t.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& segments,
                                                                       const at::Tensor& image,
                                                                       const at::Tensor& num_hints) {
  const SegmentHintSizes z = segment_hint_sizes(segments, image, num_hints);
  check_cpu_dtype(segments);
  const at::Tensor nh = num_hints.contiguous();  // B integers
  at::Tensor hints = gradient_like(image);       // the image's layout
  at::Tensor mask = at::empty({z.batch, 1, z.height, z.width}, segments.options());
  at::Tensor colors = at::empty({z.batch, z.segments, z.channels}, segments.options());
  at::Tensor counts = at::empty({z.batch, z.segments}, segments.options());
  AT_DISPATCH_FLOATING_TYPES(segments.scalar_type(), "segment_hint_colors_forward_cpu", [&] {
    forward_impl<scalar_t>(segments, image, nh.data_ptr<int64_t>(), hints, mask, colors.data_ptr<scalar_t>(),
                           counts.data_ptr<scalar_t>(), z);
  });
  return {hints, mask, colors, counts};
}

std::tuple<at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad_hints, const at::Tensor& grad_mask,
                                                const at::Tensor& segments, const at::Tensor& image,
                                                const at::Tensor& num_hints, const at::Tensor& colors,
                                                const at::Tensor& counts) {
  const SegmentHintSizes z = segment_hint_sizes(segments, image, num_hints);
  check_cpu_dtype(segments);
  check_grad_shapes(grad_hints, grad_mask, image, z);
  const at::Tensor nh = num_hints.contiguous();
  const at::Tensor gH = grad_hints.to(segments.scalar_type()), gM = grad_mask.to(segments.scalar_type());
  const at::Tensor col = colors.to(segments.scalar_type()).contiguous();  // (B, Nc, C): small
  const at::Tensor cnt = counts.to(segments.scalar_type()).contiguous();
  at::Tensor dS = gradient_like(segments), dY = gradient_like(image);
  advise_huge_pages(dS.data_ptr(), dS.nbytes());
  AT_DISPATCH_FLOATING_TYPES(segments.scalar_type(), "segment_hint_colors_backward_cpu", [&] {
    backward_impl<scalar_t>(gH, gM, segments, image, nh.data_ptr<int64_t>(), col.data_ptr<scalar_t>(),
                            cnt.data_ptr<scalar_t>(), dS, dY, z);
  });
  return {dS, dY};
}

}  // namespace

TORCH_LIBRARY_IMPL(refcolor, CPU, m) {
  m.impl("segment_hint_colors_forward_kernel", &forward_cpu);
  m.impl("segment_hint_colors_backward_kernel", &backward_cpu);
}

}  // namespace refcolor
