// C++ CPU kernels of tps_warp. Forward: parallel over (sample, output row); the spline is evaluated
// for a whole row at once, control point by control point, so the inner loop over pixels (with the
// inline polynomial log) vectorises; then each pixel's 4 taps are gathered for every channel.
// Backward: the adjoint scatter, parallel over samples (a sample's scatter targets overlap).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "tps_warp/tps_warp_host.h"
#include "tps_warp/tps_warp_math.h"

namespace refcolor {
namespace {

// The spline along output row `row`: tx[j], ty[j] for j < W, given the row's x coordinates qx[j].
// Blocks of kSpan pixels keep their sums in registers while the control points stream past; the
// loop over a block is branch-free, so it vectorises (with the inline polynomial log).
constexpr int64_t kSpan = 16;

template <typename T>
REFCOLOR_FORCE_INLINE void spline_span(const T* __restrict__ params, const T* __restrict__ ctrl, int64_t K,
                                       const T* __restrict__ qx, T qy, T* __restrict__ tx, T* __restrict__ ty) {
  const T bx = params[2 * K] + params[2 * (K + 2)] * qy, by = params[2 * K + 1] + params[2 * (K + 2) + 1] * qy;
  const T ax = params[2 * (K + 1)], ay = params[2 * (K + 1) + 1];
  T sx[kSpan], sy[kSpan];
  for (int64_t l = 0; l < kSpan; ++l) {
    sx[l] = bx + ax * qx[l];
    sy[l] = by + ay * qx[l];
  }
  for (int64_t k = 0; k < K; ++k) {
    const T cx = ctrl[2 * k], dy = qy - ctrl[2 * k + 1], dy2 = dy * dy;
    const T wx = params[2 * k], wy = params[2 * k + 1];
    for (int64_t l = 0; l < kSpan; ++l) {
      const T dx = qx[l] - cx;
      const T u = tps_radial(dx * dx + dy2);
      sx[l] += wx * u;
      sy[l] += wy * u;
    }
  }
  for (int64_t l = 0; l < kSpan; ++l) {
    tx[l] = sx[l];
    ty[l] = sy[l];
  }
}

template <typename T>
REFCOLOR_FORCE_INLINE void spline_row_impl(const T* __restrict__ params, const T* __restrict__ ctrl, int64_t K,
                                           const T* __restrict__ qx, T qy, int64_t W, T* __restrict__ tx,
                                           T* __restrict__ ty) {
  int64_t j = 0;
  for (; j + kSpan <= W; j += kSpan) spline_span(params, ctrl, K, qx + j, qy, tx + j, ty + j);
  for (; j < W; ++j) tps_transform(params, ctrl, K, qx[j], qy, tx + j, ty + j);  // the row's tail
}

// Per-dtype entry points, cloned for AVX2+FMA and baseline x86-64 (see macros.h).
REFCOLOR_CPU_CLONES void spline_row(const float* params, const float* ctrl, int64_t K, const float* qx, float qy,
                                    int64_t W, float* tx, float* ty) {
  spline_row_impl(params, ctrl, K, qx, qy, W, tx, ty);
}
REFCOLOR_CPU_CLONES void spline_row(const double* params, const double* ctrl, int64_t K, const double* qx, double qy,
                                    int64_t W, double* tx, double* ty) {
  spline_row_impl(params, ctrl, K, qx, qy, W, tx, ty);
}

template <typename T>
std::vector<T> pixel_coordinates(int64_t n) {
  std::vector<T> q(n);
  for (int64_t i = 0; i < n; ++i) q[i] = pixel_coordinate<T>(i, n);
  return q;
}

// Taps of every pixel of a row, structure-of-arrays (a branch-free, vectorisable loop). Each of the
// eight streams is its own restrict parameter: carved out of one buffer, GCC cannot prove them
// disjoint and leaves the loop scalar.
template <typename T>
REFCOLOR_FORCE_INLINE void taps_row_impl(const T* __restrict__ tx, const T* __restrict__ ty, int32_t H, int32_t W,
                                         int padding, int32_t sH, int32_t sW, int64_t n, int32_t* __restrict__ i0,
                                         int32_t* __restrict__ i1, int32_t* __restrict__ i2, int32_t* __restrict__ i3,
                                         T* __restrict__ w0, T* __restrict__ w1, T* __restrict__ w2,
                                         T* __restrict__ w3) {
  for (int64_t j = 0; j < n; ++j) {
    const BilinearTaps<T, int32_t> taps = bilinear_taps<T, int32_t>(tx[j], ty[j], H, W, padding, sH, sW);
    i0[j] = taps.index[0];
    i1[j] = taps.index[1];
    i2[j] = taps.index[2];
    i3[j] = taps.index[3];
    w0[j] = taps.weight[0];
    w1[j] = taps.weight[1];
    w2[j] = taps.weight[2];
    w3[j] = taps.weight[3];
  }
}

#define REFCOLOR_TAPS_ROW(T)                                                                                          \
  REFCOLOR_CPU_CLONES void taps_row(const T* tx, const T* ty, int32_t H, int32_t W, int padding, int32_t sH,          \
                                    int32_t sW, int64_t n, int32_t* i0, int32_t* i1, int32_t* i2, int32_t* i3, T* w0, \
                                    T* w1, T* w2, T* w3) {                                                            \
    if (sW == 1)                                                                                                      \
      taps_row_impl(tx, ty, H, W, padding, sH, 1, n, i0, i1, i2, i3, w0, w1, w2, w3);                                 \
    else                                                                                                              \
      taps_row_impl(tx, ty, H, W, padding, sH, sW, n, i0, i1, i2, i3, w0, w1, w2, w3);                                \
  }
REFCOLOR_TAPS_ROW(float)
REFCOLOR_TAPS_ROW(double)
#undef REFCOLOR_TAPS_ROW

// One row of one channel: the four-tap gather (zero-weight taps read a valid pixel and add 0);
// output pixels `os` elements apart (1, or C for channels-last outputs).
template <typename T>
REFCOLOR_FORCE_INLINE void gather_row_impl(const T* __restrict__ plane, const int32_t* __restrict__ index,
                                           const T* __restrict__ weight, int64_t W, T* __restrict__ out, int64_t os) {
  const int32_t *i0 = index, *i1 = i0 + W, *i2 = i1 + W, *i3 = i2 + W;
  const T *w0 = weight, *w1 = w0 + W, *w2 = w1 + W, *w3 = w2 + W;
  for (int64_t j = 0; j < W; ++j)
    out[j * os] = w0[j] * plane[i0[j]] + w1[j] * plane[i1[j]] + w2[j] * plane[i2[j]] + w3[j] * plane[i3[j]];
}

#define REFCOLOR_GATHER_ROW(T)                                                                                  \
  REFCOLOR_CPU_CLONES void gather_row(const T* plane, const int32_t* index, const T* weight, int64_t W, T* out, \
                                      int64_t os) {                                                             \
    if (os == 1)                                                                                                \
      gather_row_impl(plane, index, weight, W, out, 1);                                                         \
    else                                                                                                        \
      gather_row_impl(plane, index, weight, W, out, os);                                                        \
  }
REFCOLOR_GATHER_ROW(float)
REFCOLOR_GATHER_ROW(double)
#undef REFCOLOR_GATHER_ROW

// Per-row scratch: spline values and taps of the row's pixels.
template <typename T>
struct RowScratch {
  std::vector<T> tx, ty, weight;
  std::vector<int32_t> index;
  int64_t W;
  explicit RowScratch(int64_t width) : tx(width), ty(width), weight(4 * width), index(4 * width), W(width) {}
  // Taps as offsets within a plane of row / column strides sH, sW.
  void taps(int64_t H, int padding, int64_t sH, int64_t sW) {
    int32_t* i = index.data();
    T* w = weight.data();
    taps_row(tx.data(), ty.data(), static_cast<int32_t>(H), static_cast<int32_t>(W), padding, static_cast<int32_t>(sH),
             static_cast<int32_t>(sW), W, i, i + W, i + 2 * W, i + 3 * W, w, w + W, w + 2 * W, w + 3 * W);
  }
};

// Rows per parallel chunk: at least ~2^15 units of work (a pixel's spline term or channel tap)
// per thread, so small calls (gradcheck, thumbnails) stay on one thread: waking a second costs
// more than such a call, and a busy machine can stall an OpenMP barrier for milliseconds.
int64_t row_grain(int64_t W, int64_t K, int64_t C) {
  return std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, W * (K + C)));
}

template <typename T>
void forward_impl(const T* image, const TpsStrides& is, const T* params, const T* ctrl, T* out, const TpsStrides& os,
                  const TpsWarpSizes& z, int padding) {
  const int64_t H = z.height, W = z.width, C = z.channels, K = z.points;
  const std::vector<T> qx = pixel_coordinates<T>(W), qy = pixel_coordinates<T>(H);
  at::parallel_for(0, z.batch * H, row_grain(W, K, C), [&](int64_t begin, int64_t end) {
    RowScratch<T> r(W);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / H, row = task % H;
      spline_row(params + b * (K + 3) * 2, ctrl + b * K * 2, K, qx.data(), qy[row], W, r.tx.data(), r.ty.data());
      r.taps(H, padding, is.row, is.col);
      for (int64_t c = 0; c < C; ++c)
        gather_row(image + tps_offset(is, b, c, 0, 0), r.index.data(), r.weight.data(), W,
                   out + tps_offset(os, b, c, row, 0), os.col);
    }
  });
}

// grad_image (strides gs) must be zero on entry.
template <typename T>
void backward_impl(const T* grad_out, const TpsStrides& os, const T* params, const T* ctrl, T* grad_image,
                   const TpsStrides& gs, const TpsWarpSizes& z, int padding) {
  const int64_t H = z.height, W = z.width, C = z.channels, K = z.points;
  const std::vector<T> qx = pixel_coordinates<T>(W), qy = pixel_coordinates<T>(H);
  at::parallel_for(
      0, z.batch, std::max<int64_t>(1, row_grain(W, K, C) / std::max<int64_t>(H, 1)), [&](int64_t begin, int64_t end) {
        RowScratch<T> r(W);
        for (int64_t b = begin; b < end; ++b) {
          for (int64_t row = 0; row < H; ++row) {
            spline_row(params + b * (K + 3) * 2, ctrl + b * K * 2, K, qx.data(), qy[row], W, r.tx.data(), r.ty.data());
            r.taps(H, padding, gs.row, gs.col);
            for (int64_t c = 0; c < C; ++c) {
              const T* g = grad_out + tps_offset(os, b, c, row, 0);
              T* plane = grad_image + tps_offset(gs, b, c, 0, 0);
              for (int t = 0; t < 4; ++t)  // zero-weight taps add 0 at a valid index
                for (int64_t j = 0; j < W; ++j) plane[r.index[t * W + j]] += r.weight[t * W + j] * g[j * os.col];
            }
          }
        }
      });
}

void check_cpu_dtype(const at::Tensor& image, const at::Tensor& params) {
  const int64_t extent =
      (image.size(2) - 1) * std::abs(image.stride(2)) + (image.size(3) - 1) * std::abs(image.stride(3));
  TORCH_CHECK(extent < (int64_t(1) << 31),
              "the C++ CPU kernel of tps_warp takes image planes spanning fewer than 2^31 elements, got sizes ",
              image.sizes(), " strides ", image.strides());
  TORCH_CHECK(image.scalar_type() == at::kFloat || image.scalar_type() == at::kDouble,
              "the C++ CPU kernel of tps_warp takes float32 or float64, got ", image.scalar_type());
  TORCH_CHECK(params.scalar_type() == image.scalar_type(), "params must have the image's dtype (", image.scalar_type(),
              "), got ", params.scalar_type());
}

at::Tensor forward_cpu(const at::Tensor& image, const at::Tensor& params, const at::Tensor& ctrl,
                       int64_t padding_mode) {
  const TpsWarpSizes z = tps_warp_sizes(image, params, ctrl, padding_mode);
  check_cpu_dtype(image, params);
  const at::Tensor p = params.contiguous(), c = ctrl.contiguous();  // (B, K + 3, 2): small
  at::Tensor out = at::empty_like(image);                           // the image's layout
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "tps_warp_forward_cpu", [&] {
    forward_impl<scalar_t>(static_cast<const scalar_t*>(image.data_ptr()), tps_strides_of(image),
                           p.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                           tps_strides_of(out), z, static_cast<int>(padding_mode));
  });
  return out;
}

at::Tensor backward_cpu(const at::Tensor& grad_out, const at::Tensor& image, const at::Tensor& params,
                        const at::Tensor& ctrl, int64_t padding_mode) {
  const TpsWarpSizes z = tps_warp_sizes(grad_out, params, ctrl, padding_mode);
  check_same_shape(grad_out, image);
  const at::Tensor p = params.contiguous(), c = ctrl.contiguous();
  at::Tensor grad_image = at::zeros_like(image);  // the image's layout (dense)
  check_cpu_dtype(grad_image, params);
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "tps_warp_backward_cpu", [&] {
    backward_impl<scalar_t>(static_cast<const scalar_t*>(grad_out.data_ptr()), tps_strides_of(grad_out),
                            p.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), grad_image.data_ptr<scalar_t>(),
                            tps_strides_of(grad_image), z, static_cast<int>(padding_mode));
  });
  return grad_image;
}

}  // namespace

TORCH_LIBRARY_IMPL(refcolor, CPU, m) {
  m.impl("tps_warp_forward_kernel", &forward_cpu);
  m.impl("tps_warp_backward_kernel", &backward_cpu);
}

}  // namespace refcolor
