// Test-only: the CUDA kernels' block logic run on the host. Every grid block and thread of the
// CUDA launch (segment_hint_colors_kernel.cu) is visited in turn and calls the same
// segment_hint_colors_math.h helpers the kernels call: which pixels a thread reads, the tail guard,
// strided offsets, workspace slots, finalize and paint. Only the warp/shared-memory sum of a block
// is replaced by a sequential sum over its threads. The CPU tests compare the result with the
// reference on shapes with partial blocks and non-contiguous layouts, so a wrong bound or index in
// the shared helpers fails on machines without a GPU.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <limits>
#include <tuple>
#include <vector>

#include "segment_hint_colors/segment_hint_colors_host.h"
#include "segment_hint_colors/segment_hint_colors_math.h"

namespace refcolor {
namespace {

struct HostStore {
  template <typename T, typename acc_t>
  void operator()(T* p, acc_t v) const {
    *p = static_cast<T>(v);
  }
};

// segment_reduce_kernel over its whole grid (blocks, samples, channel groups).
template <typename T, typename acc_t>
void emulate_reduce(const T* S, const Strides4& ss, const T* X, const Strides4& xs, const int64_t* nh, acc_t* partial,
                    int64_t B, int64_t Nc, int64_t C, int64_t P, int64_t width, bool with_count) {
  const int64_t nblocks = reduce_block_count(P), groups = (C + kReduceGroup - 1) / kReduceGroup;
  for (int64_t group = 0; group < groups; ++group)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t blk = 0; blk < nblocks; ++blk) {
        const int64_t c0 = group * kReduceGroup, active = clamp_num_hints(nh[b], Nc);
        const int cg = reduce_group_channels(group, C);
        for (int64_t i = 0; i < active; ++i) {
          acc_t block[kReduceGroup + 1] = {};
          for (int t = 0; t < kReduceThreads; ++t) {
            acc_t acc[kReduceGroup + 1];
            reduce_thread<acc_t>(S, ss, X, xs, b, i, c0, cg, blk, t, P, width, acc);
            for (int j = 0; j <= kReduceGroup; ++j) block[j] += acc[j];
          }
          for (int j = 0; j < cg; ++j) partial[partial_slot(b, blk, nblocks, i, c0 + j, Nc, C)] = block[j];
          if (with_count && group == 0) partial[partial_slot(b, blk, nblocks, i, C, Nc, C)] = block[kReduceGroup];
        }
      }
}

// Visits every (block, thread) of a paint launch; fn(b, p) for the threads inside the image.
template <typename Fn>
void emulate_paint_grid(int64_t B, int64_t P, const Fn& fn) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t blk = 0; blk < paint_block_count(P); ++blk)
      for (int t = 0; t < kPaintThreads; ++t) {
        int64_t p;
        if (paint_thread_pixel(blk, t, P, &p)) fn(b, p);
      }
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> emulate(const at::Tensor& segments, const at::Tensor& image,
                                                                   const at::Tensor& num_hints,
                                                                   const at::Tensor& grad_hints,
                                                                   const at::Tensor& grad_mask) {
  using acc_t = T;  // float32 -> float, float64 -> double: the CUDA accumulator types
  const SegmentHintSizes z = segment_hint_sizes(segments, image, num_hints);
  const int64_t B = z.batch, Nc = z.segments, C = z.channels, P = z.pixels;
  const at::Tensor nh_t = num_hints.contiguous();
  const int64_t* nh = nh_t.data_ptr<int64_t>();
  at::Tensor hints = gradient_like(image), mask = at::empty({B, 1, z.height, z.width}, segments.options());
  at::Tensor dS = gradient_like(segments), dY = gradient_like(image);
  bool flat = true;
  for (const at::Tensor* t :
       std::initializer_list<const at::Tensor*>{&segments, &image, &grad_hints, &grad_mask, &hints, &mask, &dS, &dY})
    flat = flat && pixels_collapse(*t);
  const int64_t width = flat ? P : z.width;
  const T* S = segments.data_ptr<T>();
  const T* Y = image.data_ptr<T>();
  const T* gH = grad_hints.data_ptr<T>();
  const T* gM = grad_mask.data_ptr<T>();
  const Strides4 ss = strides_of(segments), ys = strides_of(image), hs = strides_of(hints), ms = strides_of(mask);
  const Strides4 ghs = strides_of(grad_hints), gms = strides_of(grad_mask), dss = strides_of(dS), dys = strides_of(dY);
  const int64_t nblocks = reduce_block_count(P);
  // Workspace filled with NaN: a slot the reduction forgets to write poisons the result.
  std::vector<acc_t> partial(nblocks * B * Nc * (C + 1), std::numeric_limits<acc_t>::quiet_NaN());
  std::vector<acc_t> colors(B * Nc * C), counts(B * Nc), grad_sum(B * Nc * C), grad_count(B * Nc);

  emulate_reduce(S, ss, Y, ys, nh, partial.data(), B, Nc, C, P, width, true);
  for (int64_t idx = 0; idx < B * Nc; ++idx)
    finalize_forward_segment(partial.data(), nblocks, idx / Nc, idx % Nc, clamp_num_hints(nh[idx / Nc], Nc), Nc, C,
                             colors.data(), counts.data());
  emulate_paint_grid(B, P, [&](int64_t b, int64_t p) {
    paint_forward_pixel<acc_t>(S, ss, colors.data(), hints.data_ptr<T>(), hs, mask.data_ptr<T>(), ms, b, p,
                               clamp_num_hints(nh[b], Nc), Nc, C, width, HostStore());
  });

  std::fill(partial.begin(), partial.end(), std::numeric_limits<acc_t>::quiet_NaN());
  emulate_reduce(S, ss, gH, ghs, nh, partial.data(), B, Nc, C, P, width, false);
  for (int64_t idx = 0; idx < B * Nc; ++idx)
    finalize_backward_segment(partial.data(), nblocks, idx / Nc, idx % Nc, clamp_num_hints(nh[idx / Nc], Nc), Nc, C,
                              colors.data(), counts.data(), grad_sum.data(), grad_count.data());
  emulate_paint_grid(B, P, [&](int64_t b, int64_t p) {
    paint_backward_pixel<acc_t>(gH, ghs, gM, gms, S, ss, Y, ys, colors.data(), grad_sum.data(), grad_count.data(),
                                dS.data_ptr<T>(), dss, dY.data_ptr<T>(), dys, b, p, clamp_num_hints(nh[b], Nc), Nc, C,
                                width, HostStore());
  });
  return {hints, mask, dS, dY};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> emulation_cpu(const at::Tensor& segments,
                                                                         const at::Tensor& image,
                                                                         const at::Tensor& num_hints,
                                                                         const at::Tensor& grad_hints,
                                                                         const at::Tensor& grad_mask) {
  TORCH_CHECK(segments.scalar_type() == at::kFloat || segments.scalar_type() == at::kDouble,
              "the CUDA emulation takes float32 or float64, got ", segments.scalar_type());
  TORCH_CHECK(grad_hints.scalar_type() == segments.scalar_type() && grad_mask.scalar_type() == segments.scalar_type(),
              "grad_hints and grad_mask must have the segments' dtype");
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(segments.scalar_type(), "segment_hint_colors_cuda_emulation",
                             [&] { out = emulate<scalar_t>(segments, image, num_hints, grad_hints, grad_mask); });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(refcolor, CPU, m) {
  m.impl("segment_hint_colors_cuda_emulation", &emulation_cpu);
}

}  // namespace refcolor
