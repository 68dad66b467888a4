// CUDA kernels of segment_hint_colors. No torch headers: this file builds with nvcc alone. The
// per-thread work (which pixels a thread takes, the tail guard, strided offsets, workspace slots,
// finalize and paint) is in segment_hint_colors_math.h, shared with a host emulation that the CPU
// tests run (tests/test_segment_hint_colors.py::test_cuda_block_logic_emulated_on_host); only the
// warp/shared-memory reduction and the launches are device-only.
//
// Each direction is a reduction over pixels followed by a per-pixel pass:
//   reduce:   one block per (pixel block, sample, channel group); each thread sums its pixels for
//             one active segment at a time; the block's sum goes to its own workspace slot
//             (deterministic, no atomics).
//   finalize: one thread per (sample, segment) sums the partials and forms the means (or their
//             gradients).
//   paint:    one thread per pixel walks the active segments.
// Every tensor is addressed through its strides (contiguous, channels-last, sliced: no copies).
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

constexpr int kWarps = kReduceThreads / 32;

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// partial[slot(b, blk, i, c0 + j)] = sum over the block's pixels of S_i X_{c0+j}; slot C holds
// sum S_i when with_count (group 0 only). Only active segments are written.
template <typename T, typename acc_t>
__global__ void __launch_bounds__(kReduceThreads)
    segment_reduce_kernel(const T* __restrict__ S, Strides4 ss, const T* __restrict__ X, Strides4 xs,
                          const int64_t* __restrict__ num_hints, acc_t* __restrict__ partial, int64_t Nc, int64_t C,
                          int64_t P, int64_t width, bool with_count) {
  const int64_t blk = blockIdx.x, b = blockIdx.y, nblocks = gridDim.x, group = blockIdx.z;
  const int64_t c0 = group * kReduceGroup;
  const int cg = reduce_group_channels(group, C);
  const bool count_here = with_count && group == 0;
  const int64_t active = clamp_num_hints(num_hints[b], Nc);

  __shared__ acc_t warp_totals[kWarps][kReduceGroup + 1];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t i = 0; i < active; ++i) {
    acc_t acc[kReduceGroup + 1];
    reduce_thread<acc_t>(S, ss, X, xs, b, i, c0, cg, blk, threadIdx.x, P, width, acc);
#pragma unroll
    for (int j = 0; j <= kReduceGroup; ++j) {
      const acc_t v = warp_sum(acc[j]);
      if (lane == 0) warp_totals[warp][j] = v;
    }
    __syncthreads();
    const int t = threadIdx.x;
    if (t <= kReduceGroup) {
      acc_t v = 0;
      for (int w = 0; w < kWarps; ++w) v += warp_totals[w][t];
      if (t < cg) partial[partial_slot(b, blk, nblocks, i, c0 + t, Nc, C)] = v;
      if (t == kReduceGroup && count_here) partial[partial_slot(b, blk, nblocks, i, C, Nc, C)] = v;
    }
    __syncthreads();
  }
}

template <typename acc_t>
__global__ void __launch_bounds__(kPaintThreads)
    finalize_forward_kernel(const acc_t* __restrict__ partial, const int64_t* __restrict__ num_hints,
                            acc_t* __restrict__ colors, acc_t* __restrict__ counts, int64_t B, int64_t Nc, int64_t C,
                            int64_t nblocks) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * Nc) return;
  const int64_t b = idx / Nc, i = idx % Nc;
  finalize_forward_segment(partial, nblocks, b, i, clamp_num_hints(num_hints[b], Nc), Nc, C, colors, counts);
}

template <typename acc_t>
__global__ void __launch_bounds__(kPaintThreads)
    finalize_backward_kernel(const acc_t* __restrict__ partial, const int64_t* __restrict__ num_hints,
                             const acc_t* __restrict__ colors, const acc_t* __restrict__ counts,
                             acc_t* __restrict__ grad_sum, acc_t* __restrict__ grad_count, int64_t B, int64_t Nc,
                             int64_t C, int64_t nblocks) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * Nc) return;
  const int64_t b = idx / Nc, i = idx % Nc;
  finalize_backward_segment(partial, nblocks, b, i, clamp_num_hints(num_hints[b], Nc), Nc, C, colors, counts, grad_sum,
                            grad_count);
}

template <typename T, typename acc_t>
__global__ void __launch_bounds__(kPaintThreads)
    paint_forward_kernel(const T* __restrict__ S, const int64_t* __restrict__ num_hints,
                         const acc_t* __restrict__ colors, T* __restrict__ hints, T* __restrict__ mask,
                         SegmentHintLayout layout, int64_t Nc, int64_t C, int64_t P) {
  int64_t p;
  if (!paint_thread_pixel(blockIdx.x, threadIdx.x, P, &p)) return;
  const int64_t b = blockIdx.y;
  paint_forward_pixel<acc_t>(S, layout.segments, colors, hints, layout.hints, mask, layout.mask, b, p,
                             clamp_num_hints(num_hints[b], Nc), Nc, C, layout.width, DeviceStore());
}

template <typename T, typename acc_t>
__global__ void __launch_bounds__(kPaintThreads)
    paint_backward_kernel(const T* __restrict__ grad_hints, const T* __restrict__ grad_mask, const T* __restrict__ S,
                          const T* __restrict__ Y, const int64_t* __restrict__ num_hints,
                          const acc_t* __restrict__ colors, const acc_t* __restrict__ grad_sum,
                          const acc_t* __restrict__ grad_count, T* __restrict__ grad_segments,
                          T* __restrict__ grad_image, SegmentHintLayout layout, int64_t Nc, int64_t C, int64_t P) {
  int64_t p;
  if (!paint_thread_pixel(blockIdx.x, threadIdx.x, P, &p)) return;
  const int64_t b = blockIdx.y;
  paint_backward_pixel<acc_t>(grad_hints, layout.hints, grad_mask, layout.mask, S, layout.segments, Y, layout.image,
                              colors, grad_sum, grad_count, grad_segments, layout.grad_segments, grad_image,
                              layout.grad_image, b, p, clamp_num_hints(num_hints[b], Nc), Nc, C, layout.width,
                              DeviceStore());
}

dim3 reduce_grid(const SegmentHintShape& z) {
  return dim3(static_cast<unsigned>(reduce_block_count(z.pixels)), static_cast<unsigned>(z.batch),
              static_cast<unsigned>((z.channels + kReduceGroup - 1) / kReduceGroup));
}
dim3 pixel_grid(const SegmentHintShape& z) {
  return dim3(static_cast<unsigned>(paint_block_count(z.pixels)), static_cast<unsigned>(z.batch));
}
unsigned segment_grid(const SegmentHintShape& z) {
  return static_cast<unsigned>((z.batch * z.segments + kPaintThreads - 1) / kPaintThreads);
}

template <typename T>
cudaError_t forward(const SegmentHintShape& z, const SegmentHintLayout& layout, const void* segments, const void* image,
                    const int64_t* nh, void* hints, void* mask, void* colors, void* counts, void* workspace,
                    cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  const T* S = static_cast<const T*>(segments);
  acc_t* partial = static_cast<acc_t*>(workspace);
  segment_reduce_kernel<T, acc_t><<<reduce_grid(z), kReduceThreads, 0, stream>>>(
      S, layout.segments, static_cast<const T*>(image), layout.image, nh, partial, z.segments, z.channels, z.pixels,
      layout.width, true);
  finalize_forward_kernel<acc_t><<<segment_grid(z), kPaintThreads, 0, stream>>>(
      partial, nh, static_cast<acc_t*>(colors), static_cast<acc_t*>(counts), z.batch, z.segments, z.channels,
      reduce_block_count(z.pixels));
  paint_forward_kernel<T, acc_t>
      <<<pixel_grid(z), kPaintThreads, 0, stream>>>(S, nh, static_cast<const acc_t*>(colors), static_cast<T*>(hints),
                                                    static_cast<T*>(mask), layout, z.segments, z.channels, z.pixels);
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward(const SegmentHintShape& z, const SegmentHintLayout& layout, const void* grad_hints,
                     const void* grad_mask, const void* segments, const void* image, const int64_t* nh,
                     const void* colors, const void* counts, void* grad_segments, void* grad_image, void* workspace,
                     void* grad_sum, void* grad_count, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  const T* S = static_cast<const T*>(segments);
  const T* gH = static_cast<const T*>(grad_hints);
  acc_t* partial = static_cast<acc_t*>(workspace);
  segment_reduce_kernel<T, acc_t><<<reduce_grid(z), kReduceThreads, 0, stream>>>(
      S, layout.segments, gH, layout.hints, nh, partial, z.segments, z.channels, z.pixels, layout.width, false);
  finalize_backward_kernel<acc_t><<<segment_grid(z), kPaintThreads, 0, stream>>>(
      partial, nh, static_cast<const acc_t*>(colors), static_cast<const acc_t*>(counts), static_cast<acc_t*>(grad_sum),
      static_cast<acc_t*>(grad_count), z.batch, z.segments, z.channels, reduce_block_count(z.pixels));
  paint_backward_kernel<T, acc_t><<<pixel_grid(z), kPaintThreads, 0, stream>>>(
      gH, static_cast<const T*>(grad_mask), S, static_cast<const T*>(image), nh, static_cast<const acc_t*>(colors),
      static_cast<const acc_t*>(grad_sum), static_cast<const acc_t*>(grad_count), static_cast<T*>(grad_segments),
      static_cast<T*>(grad_image), layout, z.segments, z.channels, z.pixels);
  return cudaGetLastError();
}

}  // namespace

int64_t segment_reduce_blocks(int64_t pixels) {
  return reduce_block_count(pixels);
}

cudaError_t segment_hint_colors_forward(DType dtype, SegmentHintShape shape, const SegmentHintLayout& layout,
                                        const void* segments, const void* image, const int64_t* num_hints, void* hints,
                                        void* mask, void* colors, void* counts, void* workspace, cudaStream_t stream) {
#define REFCOLOR_FORWARD(T) \
  forward<T>(shape, layout, segments, image, num_hints, hints, mask, colors, counts, workspace, stream)
  switch (dtype) {
    case DType::Float32:
      return REFCOLOR_FORWARD(float);
    case DType::Float64:
      return REFCOLOR_FORWARD(double);
    case DType::Float16:
      return REFCOLOR_FORWARD(__half);
    case DType::BFloat16:
      return REFCOLOR_FORWARD(__nv_bfloat16);
  }
#undef REFCOLOR_FORWARD
  return cudaErrorInvalidValue;
}

cudaError_t segment_hint_colors_backward(DType dtype, SegmentHintShape shape, const SegmentHintLayout& layout,
                                         const void* grad_hints, const void* grad_mask, const void* segments,
                                         const void* image, const int64_t* num_hints, const void* colors,
                                         const void* counts, void* grad_segments, void* grad_image, void* workspace,
                                         void* grad_sum, void* grad_count, cudaStream_t stream) {
#define REFCOLOR_BACKWARD(T)                                                                                   \
  backward<T>(shape, layout, grad_hints, grad_mask, segments, image, num_hints, colors, counts, grad_segments, \
              grad_image, workspace, grad_sum, grad_count, stream)
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
