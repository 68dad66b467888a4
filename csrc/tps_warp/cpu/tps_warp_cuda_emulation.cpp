// Test-only: the tps_warp CUDA kernels' per-thread logic run on the host. Every block and thread
// of the CUDA launch (tps_warp_kernel.cu) is visited and calls the same tps_warp_math.h helpers the
// kernels call (pixel index, tail guard, spline, taps as strided offsets, atomic-add targets); the
// atomic add becomes a plain add. The CPU tests compare the result with the reference on shapes
// with a partial last block and strided layouts.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <tuple>

#include "tps_warp/tps_warp_host.h"
#include "tps_warp/tps_warp_math.h"

namespace refcolor {
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

// fn(b, p) for every thread of a tps launch that lies inside the image.
template <typename Fn>
void emulate_grid(int64_t B, int64_t pixels, const Fn& fn) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t blk = 0; blk < tps_block_count(pixels); ++blk)
      for (int t = 0; t < kTpsThreads; ++t) {
        int64_t p;
        if (tps_thread_pixel(blk, t, pixels, &p)) fn(b, p);
      }
}

std::tuple<at::Tensor, at::Tensor> emulation_cpu(const at::Tensor& image, const at::Tensor& params,
                                                 const at::Tensor& ctrl, int64_t padding_mode,
                                                 const at::Tensor& grad_out) {
  const TpsWarpSizes z = tps_warp_sizes(image, params, ctrl, padding_mode);
  check_same_shape(grad_out, image);
  TORCH_CHECK(image.scalar_type() == at::kFloat || image.scalar_type() == at::kDouble,
              "the CUDA emulation takes float32 or float64, got ", image.scalar_type());
  TORCH_CHECK(params.scalar_type() == image.scalar_type(), "params must have the image's dtype");
  const at::Tensor p = params.contiguous(), c = ctrl.contiguous();
  at::Tensor out = at::empty_like(image), grad = at::zeros_like(image);
  const int padding = static_cast<int>(padding_mode);
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "tps_warp_cuda_emulation", [&] {
    const scalar_t* img = static_cast<const scalar_t*>(image.data_ptr());
    const scalar_t* g = static_cast<const scalar_t*>(grad_out.data_ptr());
    const TpsStrides is = tps_strides_of(image), os = tps_strides_of(out), gos = tps_strides_of(grad_out),
                     gs = tps_strides_of(grad);
    emulate_grid(z.batch, z.height * z.width, [&](int64_t b, int64_t px) {
      tps_forward_pixel(img, is, p.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), os, b, px,
                        z.channels, z.height, z.width, z.points, padding, HostLoad(), HostStore());
      tps_backward_pixel(g, gos, p.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), gs, b, px,
                         z.channels, z.height, z.width, z.points, padding, HostLoad(), HostAdd());
    });
  });
  return {out, grad};
}

}  // namespace

TORCH_LIBRARY_IMPL(refcolor, CPU, m) {
  m.impl("tps_warp_cuda_emulation", &emulation_cpu);
}

}  // namespace refcolor
