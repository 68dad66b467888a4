#pragma once
// Per-element math of tps_warp, shared by the C++ CPU and CUDA kernels (CPU tests exercise it).
//
// T(q) = a0 + a1 qx + a2 qy + sum_k w_k U(|q - c_k|^2), U(s) = s log(s) / 2, U(0) = 0.
// params is (K + 3, 2) row-major: w_0..w_{K-1}, a0, a1, a2; ctrl is (K, 2): c_0..c_{K-1}.
// Sampling follows grid_sample(mode="bilinear", align_corners=True), padding zeros or border.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "macros.h"

namespace refcolor {

constexpr int kPaddingZeros = 0;
constexpr int kPaddingBorder = 1;

// Natural log of a positive normal float. On the host an inline polynomial (Cephes logf, ~1 ulp):
// std::log is a library call the compiler cannot vectorise, and the spline needs K logs per pixel.
REFCOLOR_HOST_DEVICE inline float tps_log(float x) {
#if defined(__CUDA_ARCH__)
  return logf(x);
#else
  int32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  int32_t e = ((bits >> 23) & 0xff) - 126;
  bits = (bits & 0x007fffff) | 0x3f000000;  // mantissa m in [0.5, 1)
  float m;
  std::memcpy(&m, &bits, sizeof m);
  // Fold m into [sqrt(1/2), sqrt(2)). Both candidates are computed and only values are selected:
  // arithmetic inside a conditional blocks if-conversion (FP ops may trap), hence vectorisation.
  const bool low = m < 0.707106781186547524f;
  e -= low ? 1 : 0;
  const float doubled = m + m;
  const float f = (low ? doubled : m) - 1.0f;
  const float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  const float fe = static_cast<float>(e);
  y += -2.12194440e-4f * fe;  // ln 2 split in two for accuracy
  y += -0.5f * z;
  return f + y + 0.693359375f * fe;
#endif
}

REFCOLOR_HOST_DEVICE inline double tps_log(double x) {
#if defined(__CUDA_ARCH__)
  return ::log(x);
#else
  return std::log(x);
#endif
}

// U(s) = s log(s) / 2 of the squared distance s; U(0) = 0 without a branch.
template <typename T>
REFCOLOR_HOST_DEVICE inline T tps_radial(T r2) {
  const T safe = r2 > T(0) ? r2 : T(1);
  return T(0.5) * r2 * tps_log(safe);
}

// Normalised coordinate of pixel i of n, rounded exactly as torch.linspace(-1, 1, n) (the reference's
// pixel lattice): stepping from the nearer end keeps both ends exact.
template <typename T>
REFCOLOR_HOST_DEVICE inline T pixel_coordinate(int64_t i, int64_t n) {
  if (n <= 1) return T(-1);
  const T step = T(2) / static_cast<T>(n - 1);
  return i < n / 2 ? T(-1) + step * static_cast<T>(i) : T(1) - step * static_cast<T>(n - 1 - i);
}

// The spline at q = (qx, qy).
template <typename T>
REFCOLOR_HOST_DEVICE inline void tps_transform(const T* params, const T* ctrl, int64_t K, T qx, T qy, T* tx, T* ty) {
  T sx = params[2 * K] + params[2 * (K + 1)] * qx + params[2 * (K + 2)] * qy;
  T sy = params[2 * K + 1] + params[2 * (K + 1) + 1] * qx + params[2 * (K + 2) + 1] * qy;
  for (int64_t k = 0; k < K; ++k) {
    const T dx = qx - ctrl[2 * k], dy = qy - ctrl[2 * k + 1];
    const T u = tps_radial(dx * dx + dy * dy);
    sx += params[2 * k] * u;
    sy += params[2 * k + 1] * u;
  }
  *tx = sx;
  *ty = sy;
}

// The four bilinear taps of grid_sample(align_corners=True) at normalised (gx, gy) in an H x W
// image: flat indices and weights. A tap outside the image gets weight 0 and a clamped (valid)
// index, so callers gather all four without branches (a vectorisable loop on the CPU).
template <typename T, typename index_t = int64_t>
struct BilinearTaps {
  index_t index[4];
  T weight[4];
};

// index_t: int32_t lets the CPU loop vectorise (callers keep H * W below 2^31); CUDA uses int64_t.
// A value select (not std::fmax, which stays a library call on the CPU); NaN lands on `lo`.
template <typename T>
REFCOLOR_HOST_DEVICE inline T clamp_between(T v, T lo, T hi) {
  const T above = v > lo ? v : lo;
  return above < hi ? above : hi;
}

// Written with arithmetic 0/1 masks instead of ?: and &&: GCC vectorises the CPU loop over pixels
// only without control flow. Tap indices are element offsets within one channel plane whose rows
// are row_stride and columns col_stride elements apart (W and 1 for a contiguous plane;
// channels-last planes have W * C and C).
template <typename T, typename index_t = int64_t>
REFCOLOR_HOST_DEVICE inline BilinearTaps<T, index_t> bilinear_taps(T gx, T gy, index_t H, index_t W, int padding,
                                                                   index_t row_stride, index_t col_stride) {
  const bool border = padding == kPaddingBorder;
  // Border padding clips to the image; zeros padding only bounds far-off (or non-finite)
  // coordinates so the integer conversion stays defined (every tap there is outside anyway).
  const T lo = border ? T(0) : T(-2);
  const T ix = clamp_between((gx + T(1)) / T(2) * static_cast<T>(W - 1), lo, static_cast<T>(border ? W - 1 : W + 1));
  const T iy = clamp_between((gy + T(1)) / T(2) * static_cast<T>(H - 1), lo, static_cast<T>(border ? H - 1 : H + 1));
#if defined(__CUDA_ARCH__)
  const T fx0 = floor(ix), fy0 = floor(iy);
#else
  const T fx0 = std::floor(ix), fy0 = std::floor(iy);
#endif
  const index_t x0 = static_cast<index_t>(fx0), y0 = static_cast<index_t>(fy0), x1 = x0 + 1, y1 = y0 + 1;
  // grid_sample's formulation: each weight is the area of the opposite sub-rectangle.
  const T wx1 = ix - fx0, wx0 = (fx0 + T(1)) - ix;
  const T wy1 = iy - fy0, wy0 = (fy0 + T(1)) - iy;
  const index_t in_x0 = (x0 >= 0) & (x0 < W), in_x1 = (x1 >= 0) & (x1 < W);
  const index_t in_y0 = (y0 >= 0) & (y0 < H), in_y1 = (y1 >= 0) & (y1 < H);
  BilinearTaps<T, index_t> taps;
  taps.index[0] = (y0 * in_y0) * row_stride + (x0 * in_x0) * col_stride;
  taps.index[1] = (y0 * in_y0) * row_stride + (x1 * in_x1) * col_stride;
  taps.index[2] = (y1 * in_y1) * row_stride + (x0 * in_x0) * col_stride;
  taps.index[3] = (y1 * in_y1) * row_stride + (x1 * in_x1) * col_stride;
  taps.weight[0] = wx0 * wy0 * static_cast<T>(in_x0 & in_y0);
  taps.weight[1] = wx1 * wy0 * static_cast<T>(in_x1 & in_y0);
  taps.weight[2] = wx0 * wy1 * static_cast<T>(in_x0 & in_y1);
  taps.weight[3] = wx1 * wy1 * static_cast<T>(in_x1 & in_y1);
  return taps;
}

// ---- Layout and the CUDA launch geometry, shared with the host emulation --------------------
// (tests/test_tps_warp.py runs the CUDA kernels' per-thread logic on the host through these.)
struct TpsStrides {
  int64_t batch, channel, row, col;
};

REFCOLOR_HOST_DEVICE inline int64_t tps_offset(const TpsStrides& s, int64_t b, int64_t c, int64_t y, int64_t x) {
  return b * s.batch + c * s.channel + y * s.row + x * s.col;
}

constexpr int kTpsThreads = 256;  // one thread per output pixel

REFCOLOR_HOST_DEVICE inline int64_t tps_block_count(int64_t pixels) {
  return (pixels + kTpsThreads - 1) / kTpsThreads;
}
// The output pixel of thread `thread` in block `block`; false for the threads of the last block
// that lie past the image (the tail), which do nothing.
REFCOLOR_HOST_DEVICE inline bool tps_thread_pixel(int64_t block, int thread, int64_t pixels, int64_t* p) {
  *p = block * kTpsThreads + thread;
  return *p < pixels;
}

// The taps of output pixel p (row p / W, column p % W) of sample b, as offsets within a plane of
// strides `s`: the spline at the pixel, then grid_sample's bilinear rule.
template <typename acc_t>
REFCOLOR_HOST_DEVICE inline BilinearTaps<acc_t> tps_pixel_taps(const acc_t* params, const acc_t* ctrl, int64_t b,
                                                               int64_t p, int64_t H, int64_t W, int64_t K, int padding,
                                                               const TpsStrides& s) {
  acc_t tx, ty;
  tps_transform(params + b * (K + 3) * 2, ctrl + b * K * 2, K, pixel_coordinate<acc_t>(p % W, W),
                pixel_coordinate<acc_t>(p / W, H), &tx, &ty);
  return bilinear_taps<acc_t, int64_t>(tx, ty, H, W, padding, s.row, s.col);
}

// Forward of one output pixel: every channel sampled at the pixel's taps. load(ptr) widens a
// stored value to acc_t, store(ptr, value) rounds back.
template <typename acc_t, typename T, typename Load, typename Store>
REFCOLOR_HOST_DEVICE inline void tps_forward_pixel(const T* image, const TpsStrides& is, const acc_t* params,
                                                   const acc_t* ctrl, T* out, const TpsStrides& os, int64_t b,
                                                   int64_t p, int64_t C, int64_t H, int64_t W, int64_t K, int padding,
                                                   Load load, Store store) {
  const BilinearTaps<acc_t> taps = tps_pixel_taps(params, ctrl, b, p, H, W, K, padding, is);
  for (int64_t c = 0; c < C; ++c) {
    const T* plane = image + b * is.batch + c * is.channel;
    acc_t v = 0;
    for (int t = 0; t < 4; ++t) v += taps.weight[t] * load(plane + taps.index[t]);  // outside: weight 0
    store(out + tps_offset(os, b, c, p / W, p % W), v);
  }
}

// Backward of one output pixel: grad_out scattered into the taps of every channel of the
// accumulator (strides gs); add(ptr, value) is an atomic add on the GPU. Outside taps are skipped.
template <typename acc_t, typename T, typename Load, typename Add>
REFCOLOR_HOST_DEVICE inline void tps_backward_pixel(const T* grad_out, const TpsStrides& os, const acc_t* params,
                                                    const acc_t* ctrl, acc_t* grad_image, const TpsStrides& gs,
                                                    int64_t b, int64_t p, int64_t C, int64_t H, int64_t W, int64_t K,
                                                    int padding, Load load, Add add) {
  const BilinearTaps<acc_t> taps = tps_pixel_taps(params, ctrl, b, p, H, W, K, padding, gs);
  for (int64_t c = 0; c < C; ++c) {
    const acc_t g = load(grad_out + tps_offset(os, b, c, p / W, p % W));
    acc_t* plane = grad_image + b * gs.batch + c * gs.channel;
    for (int t = 0; t < 4; ++t)
      if (taps.weight[t] != acc_t(0)) add(plane + taps.index[t], taps.weight[t] * g);
  }
}

}  // namespace refcolor
