// Test-only: the CUDA kernels' block logic run on the host. Every grid block and thread of the
// CUDA launches (region_mean_kernel.cu) is visited in turn and calls the same region_mean_math.h
// helpers the kernels call: which pixels a thread reads, the tail guard, run-length sums of equal
// labels, strided offsets, table rows, finalize and paint. The atomicAdd becomes a plain add and the
// shared-memory table a per-block host table flushed the same way (nonzero entries only). The CPU
// tests compare the result with the reference on shapes with partial blocks, runs crossing thread
// boundaries and non-contiguous layouts, so a wrong bound or index in the shared helpers fails on
// machines without a GPU.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "region_mean/region_mean_host.h"
#include "region_mean/region_mean_math.h"

namespace refcolor {
namespace region_mean {
namespace {

struct HostLoad {
  template <typename T>
  T operator()(const T* p) const {
    return *p;
  }
};
struct HostStore {
  template <typename T, typename acc_t>
  void operator()(T* p, acc_t v) const {
    *p = static_cast<T>(v);
  }
};
struct HostAdd {
  template <typename acc_t>
  void operator()(acc_t* p, acc_t v) const {
    *p += v;
  }
};

constexpr int kRunChannels = 4;  // as region_mean_kernel.cu

// reduce_kernel over its whole grid; `shared` selects the block-private table path.
template <typename T>
void emulate_reduce(const T* X, const Strides4& xs, const int64_t* labels, const Strides4& ls, const T* weights,
                    const Strides4& ws, T* table, int64_t B, int64_t C, int64_t R, int64_t P, int64_t width,
                    bool with_total, bool shared) {
  const int64_t slots = C + 1;
  std::vector<T> local(R * slots);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t blk = 0; blk < reduce_block_count(P); ++blk) {
      T* global = table + table_row(b, 0, R, slots);
      std::fill(local.begin(), local.end(), T(0));
      for (int t = 0; t < kReduceThreads; ++t)
        reduce_thread_run<kRunChannels, T>(X, xs, labels, ls, weights, ws, b, reduce_first_pixel(blk, t), P, width, C,
                                           R, with_total, shared ? local.data() : global, slots, HostLoad(), HostAdd());
      if (shared)
        for (int64_t k = 0; k < R * slots; ++k)
          if (local[k] != T(0)) global[k] += local[k];
    }
}

template <typename Fn>
void emulate_paint_grid(int64_t B, int64_t P, const Fn& fn) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t blk = 0; blk < paint_block_count(P); ++blk)
      for (int t = 0; t < kPaintThreads; ++t) {
        const int64_t p = blk * kPaintThreads + t;
        if (p < P) fn(b, p);
      }
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> emulate(const at::Tensor& image, const at::Tensor& labels,
                                                                   const std::optional<at::Tensor>& weight,
                                                                   int64_t num_regions, const at::Tensor& grad_painted,
                                                                   const std::optional<at::Tensor>& grad_means) {
  const RegionMeanSizes z = region_mean_sizes(image, labels, weight, num_regions);
  const int64_t B = z.batch, C = z.channels, R = z.regions, P = z.pixels, slots = C + 1;
  const at::Tensor labels4 = labels_4d(labels), w = weight ? *weight : at::Tensor();
  at::Tensor painted = gradient_like(image), dY = gradient_like(image);
  at::Tensor dw = w.defined() ? gradient_like(w) : at::Tensor();
  at::Tensor means = at::empty({B, R, C}, image.options()), totals = at::empty({B, R}, image.options());
  const int64_t width = row_width(z, {&image, &labels4, &w, &grad_painted, &painted, &dY, &dw});
  const Strides4 ys = strides_of(image), ls = strides_of(labels4), ws = strides_or_zero(w);
  const T* Y = image.data_ptr<T>();
  const int64_t* L = labels.data_ptr<int64_t>();
  const T* Wt = w.defined() ? w.data_ptr<T>() : nullptr;
  // The shared-memory path when the CUDA build would take it (float tables: 4 bytes per sum).
  const bool shared = R * slots * static_cast<int64_t>(image.scalar_type() == at::kDouble ? 8 : 4) <= kSharedBytes;

  std::vector<T> table(B * R * slots, T(0));
  emulate_reduce(Y, ys, L, ls, Wt, ws, table.data(), B, C, R, P, width, true, shared);
  T* mn = means.data_ptr<T>();
  T* tot = totals.data_ptr<T>();
  for (int64_t row = 0; row < B * R; ++row) {
    tot[row] = table[row * slots + C];
    finalize_forward_region(table.data() + row * slots, tot[row], C, mn + row * C);
  }
  const Strides4 ps = strides_of(painted);
  emulate_paint_grid(B, P, [&](int64_t b, int64_t p) {
    paint_forward_pixel<T>(L, ls, mn, painted.data_ptr<T>(), ps, b, p, width, C, R, HostStore());
  });

  std::fill(table.begin(), table.end(), T(0));
  emulate_reduce(grad_painted.data_ptr<T>(), strides_of(grad_painted), L, ls, static_cast<const T*>(nullptr), ws,
                 table.data(), B, C, R, P, width, false, shared);
  const at::Tensor gm = grad_means ? grad_means->contiguous() : at::Tensor();
  std::vector<T> grad_sum(B * R * C), grad_total(B * R);
  for (int64_t row = 0; row < B * R; ++row) {
    T* gmean = table.data() + row * slots;
    if (gm.defined())
      for (int64_t c = 0; c < C; ++c) gmean[c] += gm.data_ptr<T>()[row * C + c];
    grad_total[row] = finalize_backward_region(gmean, mn + row * C, tot[row], C, grad_sum.data() + row * C);
  }
  const Strides4 gys = strides_of(dY), gws = strides_or_zero(dw);
  emulate_paint_grid(B, P, [&](int64_t b, int64_t p) {
    paint_backward_pixel<T>(L, ls, Y, ys, Wt, ws, grad_sum.data(), grad_total.data(), dY.data_ptr<T>(), gys,
                            dw.defined() ? dw.data_ptr<T>() : nullptr, gws, b, p, width, C, R, HostLoad(), HostStore());
  });
  return {painted, means, dY, dw.defined() ? dw : at::empty({0}, image.options())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> emulation_cpu(
    const at::Tensor& image, const at::Tensor& labels, const std::optional<at::Tensor>& weight, int64_t num_regions,
    const at::Tensor& grad_painted, const std::optional<at::Tensor>& grad_means) {
  TORCH_CHECK(image.scalar_type() == at::kFloat || image.scalar_type() == at::kDouble,
              "the CUDA emulation takes float32 or float64, got ", image.scalar_type());
  TORCH_CHECK(grad_painted.scalar_type() == image.scalar_type() && grad_painted.sizes() == image.sizes(),
              "grad_painted must have the image's dtype and shape");
  if (grad_means)
    TORCH_CHECK(grad_means->scalar_type() == image.scalar_type(), "grad_means must have the image's dtype");
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "region_mean_cuda_emulation", [&] {
    out = emulate<scalar_t>(image, labels, weight, num_regions, grad_painted, grad_means);
  });
  return out;
}

}  // namespace
}  // namespace region_mean

TORCH_LIBRARY_IMPL(refcolor, CPU, m) {
  m.impl("region_mean_cuda_emulation", &region_mean::emulation_cpu);
}

}  // namespace refcolor
