// C++ CPU kernels of segment_hint_colors. Two passes each way, parallel over (sample, pixel chunk):
// a reduction over pixels (segment colour sums and counts) and a per-pixel "paint" pass. Each task
// touches a chunk of every row, so rows are read once per pass and stay in cache while reused.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "cpu_memory.h"
#include "segment_hint_colors/segment_hint_colors_host.h"
#include "segment_hint_colors/segment_hint_colors_math.h"

namespace refcolor {
namespace {

constexpr int64_t kChunk = 1024;  // pixels per task: a task's rows stay in L1/L2 while reused
constexpr int kLanes = 16;        // independent partial sums, so the compiler vectorises reductions

int64_t num_chunks(int64_t pixels) { return std::max<int64_t>(1, (pixels + kChunk - 1) / kChunk); }

// Channel count fixed at compile time (kC > 0, unrolled) or read at run time (kC == 0).
template <int kC>
REFCOLOR_FORCE_INLINE int64_t channels_of(int64_t C) {
  return kC > 0 ? kC : C;
}

// One (sample, pixel chunk) of the reduction: out[i, c] = sum_p S_i(p) X_c(p) for c < C and
// out[i, C] = sum_p S_i(p) (when with_count), for the active segments i < active.
// S, X point at the chunk's first pixel of row 0; rows are P apart.
template <int kC, typename T>
REFCOLOR_FORCE_INLINE void reduce_task(const T* __restrict__ S, const T* __restrict__ X, T* __restrict__ out,
                                       int64_t active, int64_t C_, int64_t P, int64_t n, bool with_count) {
  const int64_t C = channels_of<kC>(C_), row = C + 1;
  constexpr int kSlots = kC > 0 ? kC + 1 : 1;
  for (int64_t i = 0; i < active; ++i) {
    const T* __restrict__ s = S + i * P;
    if (kC > 0) {  // one pass over the row for all channels and the count
      T acc[kSlots][kLanes] = {};
      int64_t p = 0;
      for (; p + kLanes <= n; p += kLanes)
        for (int l = 0; l < kLanes; ++l) {
          const T sv = s[p + l];
          for (int c = 0; c < kSlots - 1; ++c) acc[c][l] += sv * X[c * P + p + l];
          acc[kSlots - 1][l] += sv;
        }
      for (int c = 0; c < kSlots; ++c) {
        T t = 0;
        for (int l = 0; l < kLanes; ++l) t += acc[c][l];
        for (int64_t q = p; q < n; ++q) t += s[q] * (c < kSlots - 1 ? X[c * P + q] : T(1));
        out[i * row + c] = t;
      }
    } else {  // any channel count: one lane-parallel dot product per channel
      for (int64_t c = 0; c <= C; ++c) {
        if (c == C && !with_count) break;
        T lanes[kLanes] = {};
        int64_t p = 0;
        for (; p + kLanes <= n; p += kLanes)
          for (int l = 0; l < kLanes; ++l) lanes[l] += s[p + l] * (c < C ? X[c * P + p + l] : T(1));
        T t = 0;
        for (; p < n; ++p) t += s[p] * (c < C ? X[c * P + p] : T(1));
        for (int l = 0; l < kLanes; ++l) t += lanes[l];
        out[i * row + c] = t;
      }
    }
  }
}

// One chunk of the forward paint: hints_c = sum_{i<active} colors_ic S_i, mask = sum_{i<active} S_i.
// Row-wise (each segment row streamed once into chunk-sized accumulators that stay in L1):
// blocking pixels in registers across all rows measured slower here (too many streams at once).
template <typename T>
REFCOLOR_FORCE_INLINE void paint_forward_task(const T* __restrict__ S, const T* __restrict__ colors,
                                              T* __restrict__ hints, T* __restrict__ mask, int64_t active,
                                              int64_t C, int64_t P, int64_t n) {
  std::fill(mask, mask + n, T(0));
  for (int64_t c = 0; c < C; ++c) std::fill(hints + c * P, hints + c * P + n, T(0));
  for (int64_t i = 0; i < active; ++i) {
    const T* __restrict__ s = S + i * P;
    for (int64_t p = 0; p < n; ++p) mask[p] += s[p];
    for (int64_t c = 0; c < C; ++c) {
      const T w = colors[i * C + c];
      if (w == T(0)) continue;
      T* __restrict__ h = hints + c * P;
      for (int64_t p = 0; p < n; ++p) h[p] += w * s[p];
    }
  }
}

// One chunk of the backward paint: dS_i for every segment (zero when inactive), and dY. Row-wise,
// like the forward paint.
template <int kC, typename T>
REFCOLOR_FORCE_INLINE void paint_backward_task(const T* __restrict__ gH, const T* __restrict__ gM,
                                               const T* __restrict__ S, const T* __restrict__ Y,
                                               const T* __restrict__ colors, const T* __restrict__ grad_sum,
                                               const T* __restrict__ grad_count, T* __restrict__ dS,
                                               T* __restrict__ dY, int64_t active, int64_t Nc, int64_t C_,
                                               int64_t P, int64_t n) {
  const int64_t C = channels_of<kC>(C_);
  for (int64_t i = 0; i < Nc; ++i) {
    T* __restrict__ ds = dS + i * P;
    if (i >= active) {
      std::fill(ds, ds + n, T(0));
      continue;
    }
    const T* ci = colors + i * C;
    const T* gi = grad_sum + i * C;
    const T gc = grad_count[i];
    for (int64_t p = 0; p < n; ++p)
      ds[p] = segment_grad_at_pixel<kC>(ci, gi, gc, gM[p], gH + p, Y + p, C, P);
  }
  for (int64_t c = 0; c < C; ++c) {
    T* __restrict__ dy = dY + c * P;
    std::fill(dy, dy + n, T(0));
    for (int64_t i = 0; i < active; ++i) {
      const T w = grad_sum[i * C + c];
      if (w == T(0)) continue;
      const T* __restrict__ s = S + i * P;
      for (int64_t p = 0; p < n; ++p) dy[p] += w * s[p];
    }
  }
}

// Per-dtype entry points, each cloned for AVX2+FMA and baseline x86-64 (see macros.h).
#define REFCOLOR_DEFINE_TASKS(T)                                                                            \
  REFCOLOR_CPU_CLONES void reduce_chunk(const T* S, const T* X, T* out, int64_t active, int64_t C, int64_t P, \
                                        int64_t n, bool with_count) {                                        \
    if (C == 3)                                                                                              \
      reduce_task<3>(S, X, out, active, C, P, n, with_count);                                                \
    else                                                                                                     \
      reduce_task<0>(S, X, out, active, C, P, n, with_count);                                                \
  }                                                                                                          \
  REFCOLOR_CPU_CLONES void paint_forward_chunk(const T* S, const T* colors, T* hints, T* mask, int64_t active, \
                                               int64_t C, int64_t P, int64_t n) {                            \
    paint_forward_task(S, colors, hints, mask, active, C, P, n);                                             \
  }                                                                                                          \
  REFCOLOR_CPU_CLONES void paint_backward_chunk(const T* gH, const T* gM, const T* S, const T* Y,             \
                                                const T* colors, const T* grad_sum, const T* grad_count,     \
                                                T* dS, T* dY, int64_t active, int64_t Nc, int64_t C,         \
                                                int64_t P, int64_t n) {                                      \
    if (C == 3)                                                                                              \
      paint_backward_task<3>(gH, gM, S, Y, colors, grad_sum, grad_count, dS, dY, active, Nc, C, P, n);       \
    else                                                                                                     \
      paint_backward_task<0>(gH, gM, S, Y, colors, grad_sum, grad_count, dS, dY, active, Nc, C, P, n);       \
  }
REFCOLOR_DEFINE_TASKS(float)
REFCOLOR_DEFINE_TASKS(double)
#undef REFCOLOR_DEFINE_TASKS

// Runs fn(b, p0, n) for every (sample, pixel chunk) in parallel.
template <typename Fn>
void for_each_chunk(const SegmentHintSizes& z, const Fn& fn) {
  const int64_t chunks = num_chunks(z.pixels);
  at::parallel_for(0, z.batch * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / chunks, p0 = (task % chunks) * kChunk;
      fn(b, task, p0, std::min(kChunk, z.pixels - p0));
    }
  });
}

// partial[b, chunk, i, :] for the active segments (rows of inactive ones are left unwritten).
template <typename T>
std::vector<T> segment_reduce(const T* S, const T* X, const int64_t* nh, const SegmentHintSizes& z, bool with_count) {
  const int64_t C = z.channels, P = z.pixels, row = C + 1;
  std::vector<T> partial(z.batch * num_chunks(P) * z.segments * row);
  for_each_chunk(z, [&](int64_t b, int64_t task, int64_t p0, int64_t n) {
    reduce_chunk(S + b * z.segments * P + p0, X + b * C * P + p0, partial.data() + task * z.segments * row,
                 clamp_num_hints(nh[b], z.segments), C, P, n, with_count);
  });
  return partial;
}

// Sums the chunk partials of sample b, segment i, slot c.
template <typename T>
T total(const std::vector<T>& partial, const SegmentHintSizes& z, int64_t b, int64_t i, int64_t c) {
  const int64_t chunks = num_chunks(z.pixels), row = z.channels + 1;
  T t = 0;
  for (int64_t k = 0; k < chunks; ++k) t += partial[((b * chunks + k) * z.segments + i) * row + c];
  return t;
}

template <typename T>
void forward_impl(const T* S, const T* Y, const int64_t* nh, T* hints, T* mask, T* colors, T* counts,
                  const SegmentHintSizes& z) {
  const int64_t C = z.channels, P = z.pixels, Nc = z.segments;
  const std::vector<T> partial = segment_reduce(S, Y, nh, z, /*with_count=*/true);
  for (int64_t b = 0; b < z.batch; ++b) {
    const int64_t active = clamp_num_hints(nh[b], Nc);
    for (int64_t i = 0; i < Nc; ++i) {
      const T count = i < active ? total(partial, z, b, i, C) : T(0);
      counts[b * Nc + i] = count;
      for (int64_t c = 0; c < C; ++c)
        colors[(b * Nc + i) * C + c] = i < active ? segment_mean(total(partial, z, b, i, c), count) : T(0);
    }
  }
  for_each_chunk(z, [&](int64_t b, int64_t, int64_t p0, int64_t n) {
    paint_forward_chunk(S + b * Nc * P + p0, colors + b * Nc * C, hints + b * C * P + p0, mask + b * P + p0,
                        clamp_num_hints(nh[b], Nc), C, P, n);
  });
}

template <typename T>
void backward_impl(const T* gH, const T* gM, const T* S, const T* Y, const int64_t* nh, const T* colors,
                   const T* counts, T* dS, T* dY, const SegmentHintSizes& z) {
  const int64_t C = z.channels, P = z.pixels, Nc = z.segments;
  const std::vector<T> partial = segment_reduce(S, gH, nh, z, /*with_count=*/false);
  // grad_sum (B, Nc, C) and grad_count (B, Nc) from grad_color = sum_p gH S.
  std::vector<T> grad_sum(z.batch * Nc * C, T(0)), grad_count(z.batch * Nc, T(0));
  for (int64_t b = 0; b < z.batch; ++b) {
    const int64_t active = clamp_num_hints(nh[b], Nc);
    for (int64_t i = 0; i < active; ++i) {
      const int64_t bi = b * Nc + i;
      for (int64_t c = 0; c < C; ++c) {
        const T grad_color = total(partial, z, b, i, c);
        grad_sum[bi * C + c] = segment_mean_grad_sum(grad_color, counts[bi]);
        grad_count[bi] += segment_mean_grad_count(grad_color, colors[bi * C + c], counts[bi]);
      }
    }
  }
  for_each_chunk(z, [&](int64_t b, int64_t, int64_t p0, int64_t n) {
    paint_backward_chunk(gH + b * C * P + p0, gM + b * P + p0, S + b * Nc * P + p0, Y + b * C * P + p0,
                         colors + b * Nc * C, grad_sum.data() + b * Nc * C, grad_count.data() + b * Nc,
                         dS + b * Nc * P + p0, dY + b * C * P + p0, clamp_num_hints(nh[b], Nc), Nc, C, P, n);
  });
}

void check_cpu_dtype(const at::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
              "the C++ CPU kernel of segment_hint_colors takes float32 or float64, got ", t.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_cpu(
    const at::Tensor& segments, const at::Tensor& image, const at::Tensor& num_hints) {
  const SegmentHintSizes z = segment_hint_sizes(segments, image, num_hints);
  check_cpu_dtype(segments);
  const at::Tensor S = segments.contiguous(), Y = image.contiguous(), nh = num_hints.contiguous();
  at::Tensor hints = at::empty({z.batch, z.channels, z.height, z.width}, S.options());
  at::Tensor mask = at::empty({z.batch, 1, z.height, z.width}, S.options());
  at::Tensor colors = at::empty({z.batch, z.segments, z.channels}, S.options());
  at::Tensor counts = at::empty({z.batch, z.segments}, S.options());
  AT_DISPATCH_FLOATING_TYPES(S.scalar_type(), "segment_hint_colors_forward_cpu", [&] {
    forward_impl<scalar_t>(S.data_ptr<scalar_t>(), Y.data_ptr<scalar_t>(), nh.data_ptr<int64_t>(),
                           hints.data_ptr<scalar_t>(), mask.data_ptr<scalar_t>(),
                           colors.data_ptr<scalar_t>(), counts.data_ptr<scalar_t>(), z);
  });
  return {hints, mask, colors, counts};
}

std::tuple<at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad_hints, const at::Tensor& grad_mask,
                                                const at::Tensor& segments, const at::Tensor& image,
                                                const at::Tensor& num_hints, const at::Tensor& colors,
                                                const at::Tensor& counts) {
  const SegmentHintSizes z = segment_hint_sizes(segments, image, num_hints);
  check_cpu_dtype(segments);
  const at::Tensor S = segments.contiguous(), Y = image.contiguous(), nh = num_hints.contiguous();
  const at::Tensor gH = grad_hints.to(S.scalar_type()).contiguous();
  const at::Tensor gM = grad_mask.to(S.scalar_type()).contiguous();
  const at::Tensor col = colors.to(S.scalar_type()).contiguous(), cnt = counts.to(S.scalar_type()).contiguous();
  TORCH_CHECK(gH.sizes() == image.sizes(), "grad_hints must match image ", image.sizes(), ", got ", gH.sizes());
  TORCH_CHECK(gM.numel() == z.batch * z.pixels, "grad_mask must be (B, 1, H, W), got ", gM.sizes());
  at::Tensor dS = at::empty_like(S), dY = at::empty_like(Y);
  advise_huge_pages(dS.data_ptr(), dS.nbytes());
  AT_DISPATCH_FLOATING_TYPES(S.scalar_type(), "segment_hint_colors_backward_cpu", [&] {
    backward_impl<scalar_t>(gH.data_ptr<scalar_t>(), gM.data_ptr<scalar_t>(), S.data_ptr<scalar_t>(),
                            Y.data_ptr<scalar_t>(), nh.data_ptr<int64_t>(), col.data_ptr<scalar_t>(),
                            cnt.data_ptr<scalar_t>(), dS.data_ptr<scalar_t>(), dY.data_ptr<scalar_t>(), z);
  });
  return {dS, dY};
}

}  // namespace

TORCH_LIBRARY_IMPL(refcolor, CPU, m) {
  m.impl("segment_hint_colors_forward_kernel", &forward_cpu);
  m.impl("segment_hint_colors_backward_kernel", &backward_cpu);
}

}  // namespace refcolor
