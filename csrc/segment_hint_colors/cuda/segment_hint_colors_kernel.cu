// CUDA kernels of segment_hint_colors. No torch headers: this file builds with nvcc alone, and the
// per-element math comes from segment_hint_colors_math.h, which the CPU kernels share.
//
// Each direction is a reduction over pixels followed by a per-pixel pass:
//   reduce:   one block per (pixel block, sample, channel group); a thread keeps its pixels' image
//             values in registers and streams the active segment rows past them, so S and Y are
//             read once. Per-block partial sums go to a workspace (deterministic, no atomics).
//   finalize: one thread per (sample, segment) sums the partials and forms the means (or their
//             gradients).
//   paint:    one thread per pixel walks the active segments.
// Segments i >= Nh contribute nothing and get zero gradient, so they are never read.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_scalar.cuh"
#include "segment_hint_colors/cuda/segment_hint_colors_kernel.h"
#include "segment_hint_colors/segment_hint_colors_math.h"

namespace refcolor {

template <>
REFCOLOR_HOST_DEVICE inline float load_as<float, __half>(const __half& x) {
  return __half2float(x);
}
template <>
REFCOLOR_HOST_DEVICE inline float load_as<float, __nv_bfloat16>(const __nv_bfloat16& x) {
  return __bfloat162float(x);
}

namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kPixelsPerThread = 4;
constexpr int kBlockPixels = kThreads * kPixelsPerThread;
constexpr int kGroup = 4;  // channels a thread keeps in registers per pass (RGB fits in one)

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// partial[b, blk, i, c0 + j] = sum over the block's pixels of S_i X_{c0+j}; slot C holds sum S_i
// when with_count (group 0 only). Only active segments are written.
template <typename T, typename acc_t>
__global__ void segment_reduce_kernel(const T* __restrict__ S, const T* __restrict__ X,
                                      const int64_t* __restrict__ num_hints, acc_t* __restrict__ partial,
                                      int64_t Nc, int64_t C, int64_t P, bool with_count) {
  const int64_t blk = blockIdx.x, b = blockIdx.y, nblocks = gridDim.x;
  const int64_t c0 = static_cast<int64_t>(blockIdx.z) * kGroup;
  const int cg = static_cast<int>(C - c0 < kGroup ? C - c0 : kGroup);
  const bool count_here = with_count && c0 == 0;
  const int64_t active = clamp_num_hints(num_hints[b], Nc);
  const int64_t row = C + 1;

  int64_t pix[kPixelsPerThread];
  acc_t x[kPixelsPerThread][kGroup];
#pragma unroll
  for (int k = 0; k < kPixelsPerThread; ++k) {
    pix[k] = blk * kBlockPixels + threadIdx.x + k * kThreads;
#pragma unroll
    for (int j = 0; j < kGroup; ++j)
      x[k][j] = (pix[k] < P && j < cg) ? load_as<acc_t>(X[(b * C + c0 + j) * P + pix[k]]) : acc_t(0);
  }

  __shared__ acc_t warp_totals[kWarps][kGroup + 1];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  acc_t* out = partial + (b * nblocks + blk) * Nc * row;
  for (int64_t i = 0; i < active; ++i) {
    const T* s = S + (b * Nc + i) * P;
    acc_t acc[kGroup + 1] = {};
#pragma unroll
    for (int k = 0; k < kPixelsPerThread; ++k) {
      if (pix[k] >= P) continue;
      const acc_t sv = load_as<acc_t>(s[pix[k]]);
      acc[kGroup] += sv;
#pragma unroll
      for (int j = 0; j < kGroup; ++j) acc[j] += sv * x[k][j];
    }
#pragma unroll
    for (int j = 0; j <= kGroup; ++j) {
      const acc_t v = warp_sum(acc[j]);
      if (lane == 0) warp_totals[warp][j] = v;
    }
    __syncthreads();
    const int t = threadIdx.x;
    if (t <= kGroup) {
      acc_t v = 0;
      for (int w = 0; w < kWarps; ++w) v += warp_totals[w][t];
      if (t < cg) out[i * row + c0 + t] = v;
      if (t == kGroup && count_here) out[i * row + C] = v;
    }
    __syncthreads();
  }
}

template <typename acc_t>
__device__ __forceinline__ acc_t block_total(const acc_t* partial, int64_t nblocks, int64_t b, int64_t i,
                                             int64_t slot, int64_t Nc, int64_t row) {
  acc_t t = 0;
  for (int64_t k = 0; k < nblocks; ++k) t += partial[((b * nblocks + k) * Nc + i) * row + slot];
  return t;
}

template <typename acc_t>
__global__ void finalize_forward_kernel(const acc_t* __restrict__ partial, const int64_t* __restrict__ num_hints,
                                        acc_t* __restrict__ colors, acc_t* __restrict__ counts, int64_t B,
                                        int64_t Nc, int64_t C, int64_t nblocks) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * Nc) return;
  const int64_t b = idx / Nc, i = idx % Nc, row = C + 1;
  const bool active = i < clamp_num_hints(num_hints[b], Nc);
  const acc_t count = active ? block_total(partial, nblocks, b, i, C, Nc, row) : acc_t(0);
  counts[idx] = count;
  for (int64_t c = 0; c < C; ++c)
    colors[idx * C + c] = active ? segment_mean(block_total(partial, nblocks, b, i, c, Nc, row), count) : acc_t(0);
}

template <typename acc_t>
__global__ void finalize_backward_kernel(const acc_t* __restrict__ partial, const int64_t* __restrict__ num_hints,
                                         const acc_t* __restrict__ colors, const acc_t* __restrict__ counts,
                                         acc_t* __restrict__ grad_sum, acc_t* __restrict__ grad_count, int64_t B,
                                         int64_t Nc, int64_t C, int64_t nblocks) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * Nc) return;
  const int64_t b = idx / Nc, i = idx % Nc, row = C + 1;
  const bool active = i < clamp_num_hints(num_hints[b], Nc);
  acc_t gcount = 0;
  for (int64_t c = 0; c < C; ++c) {
    const acc_t grad_color = active ? block_total(partial, nblocks, b, i, c, Nc, row) : acc_t(0);
    grad_sum[idx * C + c] = segment_mean_grad_sum(grad_color, counts[idx]);
    gcount += segment_mean_grad_count(grad_color, colors[idx * C + c], counts[idx]);
  }
  grad_count[idx] = gcount;
}

template <typename T, typename acc_t>
__global__ void paint_forward_kernel(const T* __restrict__ S, const int64_t* __restrict__ num_hints,
                                     const acc_t* __restrict__ colors, T* __restrict__ hints, T* __restrict__ mask,
                                     int64_t Nc, int64_t C, int64_t P) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x, b = blockIdx.y;
  if (p >= P) return;
  const int64_t active = clamp_num_hints(num_hints[b], Nc);
  const acc_t* col = colors + b * Nc * C;
  const T* s = S + b * Nc * P + p;
  acc_t m = 0;
  for (int64_t i = 0; i < active; ++i) m += load_as<acc_t>(s[i * P]);
  store(&mask[b * P + p], m);
  for (int64_t c0 = 0; c0 < C; c0 += kGroup) {
    const int cg = static_cast<int>(C - c0 < kGroup ? C - c0 : kGroup);
    acc_t h[kGroup] = {};
    for (int64_t i = 0; i < active; ++i) {
      const acc_t sv = load_as<acc_t>(s[i * P]);
#pragma unroll
      for (int j = 0; j < kGroup; ++j)
        if (j < cg) h[j] += col[i * C + c0 + j] * sv;
    }
#pragma unroll
    for (int j = 0; j < kGroup; ++j)
      if (j < cg) store(&hints[(b * C + c0 + j) * P + p], h[j]);
  }
}

template <typename T, typename acc_t>
__global__ void paint_backward_kernel(const T* __restrict__ grad_hints, const T* __restrict__ grad_mask,
                                      const T* __restrict__ S, const T* __restrict__ Y,
                                      const int64_t* __restrict__ num_hints, const acc_t* __restrict__ colors,
                                      const acc_t* __restrict__ grad_sum, const acc_t* __restrict__ grad_count,
                                      T* __restrict__ grad_segments, T* __restrict__ grad_image, int64_t Nc,
                                      int64_t C, int64_t P) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x, b = blockIdx.y;
  if (p >= P) return;
  const int64_t active = clamp_num_hints(num_hints[b], Nc);
  const acc_t gm = load_as<acc_t>(grad_mask[b * P + p]);
  const T* gh = grad_hints + b * C * P + p;
  const T* y = Y + b * C * P + p;
  for (int64_t i = 0; i < Nc; ++i) {
    const int64_t bi = b * Nc + i;
    const acc_t g = i < active ? segment_grad_at_pixel<0>(colors + bi * C, grad_sum + bi * C, grad_count[bi], gm,
                                                         gh, y, C, P)
                               : acc_t(0);
    store(&grad_segments[bi * P + p], g);
  }
  const T* s = S + b * Nc * P + p;
  for (int64_t c0 = 0; c0 < C; c0 += kGroup) {
    const int cg = static_cast<int>(C - c0 < kGroup ? C - c0 : kGroup);
    acc_t d[kGroup] = {};
    for (int64_t i = 0; i < active; ++i) {
      const acc_t sv = load_as<acc_t>(s[i * P]);
#pragma unroll
      for (int j = 0; j < kGroup; ++j)
        if (j < cg) d[j] += grad_sum[(b * Nc + i) * C + c0 + j] * sv;
    }
#pragma unroll
    for (int j = 0; j < kGroup; ++j)
      if (j < cg) store(&grad_image[(b * C + c0 + j) * P + p], d[j]);
  }
}

dim3 reduce_grid(const SegmentHintShape& z) {
  return dim3(static_cast<unsigned>(segment_reduce_blocks(z.pixels)), static_cast<unsigned>(z.batch),
              static_cast<unsigned>((z.channels + kGroup - 1) / kGroup));
}
dim3 pixel_grid(const SegmentHintShape& z) {
  return dim3(static_cast<unsigned>((z.pixels + kThreads - 1) / kThreads), static_cast<unsigned>(z.batch));
}
unsigned segment_grid(const SegmentHintShape& z) {
  return static_cast<unsigned>((z.batch * z.segments + kThreads - 1) / kThreads);
}

template <typename T>
cudaError_t forward(const SegmentHintShape& z, const void* segments, const void* image, const int64_t* nh,
                    void* hints, void* mask, void* colors, void* counts, void* workspace, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  const T* S = static_cast<const T*>(segments);
  acc_t* partial = static_cast<acc_t*>(workspace);
  segment_reduce_kernel<T, acc_t><<<reduce_grid(z), kThreads, 0, stream>>>(
      S, static_cast<const T*>(image), nh, partial, z.segments, z.channels, z.pixels, true);
  finalize_forward_kernel<acc_t><<<segment_grid(z), kThreads, 0, stream>>>(
      partial, nh, static_cast<acc_t*>(colors), static_cast<acc_t*>(counts), z.batch, z.segments, z.channels,
      segment_reduce_blocks(z.pixels));
  paint_forward_kernel<T, acc_t><<<pixel_grid(z), kThreads, 0, stream>>>(
      S, nh, static_cast<const acc_t*>(colors), static_cast<T*>(hints), static_cast<T*>(mask), z.segments,
      z.channels, z.pixels);
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward(const SegmentHintShape& z, const void* grad_hints, const void* grad_mask, const void* segments,
                     const void* image, const int64_t* nh, const void* colors, const void* counts,
                     void* grad_segments, void* grad_image, void* workspace, void* grad_sum, void* grad_count,
                     cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  const T* S = static_cast<const T*>(segments);
  const T* gH = static_cast<const T*>(grad_hints);
  acc_t* partial = static_cast<acc_t*>(workspace);
  segment_reduce_kernel<T, acc_t><<<reduce_grid(z), kThreads, 0, stream>>>(
      S, gH, nh, partial, z.segments, z.channels, z.pixels, false);
  finalize_backward_kernel<acc_t><<<segment_grid(z), kThreads, 0, stream>>>(
      partial, nh, static_cast<const acc_t*>(colors), static_cast<const acc_t*>(counts),
      static_cast<acc_t*>(grad_sum), static_cast<acc_t*>(grad_count), z.batch, z.segments, z.channels,
      segment_reduce_blocks(z.pixels));
  paint_backward_kernel<T, acc_t><<<pixel_grid(z), kThreads, 0, stream>>>(
      gH, static_cast<const T*>(grad_mask), S, static_cast<const T*>(image), nh, static_cast<const acc_t*>(colors),
      static_cast<const acc_t*>(grad_sum), static_cast<const acc_t*>(grad_count), static_cast<T*>(grad_segments),
      static_cast<T*>(grad_image), z.segments, z.channels, z.pixels);
  return cudaGetLastError();
}

}  // namespace

int64_t segment_reduce_blocks(int64_t pixels) {
  const int64_t n = (pixels + kBlockPixels - 1) / kBlockPixels;
  return n > 0 ? n : 1;
}

cudaError_t segment_hint_colors_forward(DType dtype, SegmentHintShape shape, const void* segments,
                                        const void* image, const int64_t* num_hints, void* hints, void* mask,
                                        void* colors, void* counts, void* workspace, cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32:
      return forward<float>(shape, segments, image, num_hints, hints, mask, colors, counts, workspace, stream);
    case DType::Float64:
      return forward<double>(shape, segments, image, num_hints, hints, mask, colors, counts, workspace, stream);
    case DType::Float16:
      return forward<__half>(shape, segments, image, num_hints, hints, mask, colors, counts, workspace, stream);
    case DType::BFloat16:
      return forward<__nv_bfloat16>(shape, segments, image, num_hints, hints, mask, colors, counts, workspace,
                                    stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t segment_hint_colors_backward(DType dtype, SegmentHintShape shape, const void* grad_hints,
                                         const void* grad_mask, const void* segments, const void* image,
                                         const int64_t* num_hints, const void* colors, const void* counts,
                                         void* grad_segments, void* grad_image, void* workspace, void* grad_sum,
                                         void* grad_count, cudaStream_t stream) {
#define REFCOLOR_BACKWARD(T)                                                                                  \
  backward<T>(shape, grad_hints, grad_mask, segments, image, num_hints, colors, counts, grad_segments, grad_image, \
              workspace, grad_sum, grad_count, stream)
  switch (dtype) {
    case DType::Float32:
      return REFCOLOR_BACKWARD(float);
    case DType::Float64:
      return REFCOLOR_BACKWARD(double);
    case DType::Float16:
      return REFCOLOR_BACKWARD(__half);
    case DType::BFloat16:
      return REFCOLOR_BACKWARD(__nv_bfloat16);
  }
#undef REFCOLOR_BACKWARD
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace refcolor
