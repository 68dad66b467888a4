// CUDA kernels of region_mean. No torch headers: this file builds with nvcc alone. The per-thread
// work (which pixels a thread takes, the tail guard, run-length sums of equal labels, strided
// offsets, finalize and paint) is in region_mean_math.h, shared with a host emulation that the CPU
// tests run (tests/test_region_mean.py::test_cuda_block_logic_emulated_on_host); only the atomics,
// the shared-memory tables and the launches are device-only.
//
// Each direction is a reduction over pixels followed by a per-pixel pass:
//   reduce:   one block per (pixel block, sample); each thread adds its runs of equal labels with
//             atomicAdd, into a block-private table in shared memory when R * (C + 1) sums fit
//             (then one atomicAdd per nonzero entry into the global table), else into the global
//             table directly. Float atomics make the order of the adds, and so the last bits,
//             vary between runs: the glue raises under torch.use_deterministic_algorithms(True).
//   finalize: one thread per (sample, region) forms the means (or their gradients).
//   paint:    one thread per pixel gathers its region's row.
// Every tensor is addressed through its strides (contiguous, channels-last, sliced: no copies).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_scalar.cuh"
#include "region_mean/cuda/region_mean_kernel.h"
#include "region_mean/region_mean_math.h"

namespace refcolor {
namespace cuda {
namespace {

using region_mean::kPaintThreads;
using region_mean::kReduceThreads;

// Channels summed in registers per run (RGB and RGBA); more are added per pixel.
constexpr int kRunChannels = 4;

struct AtomicAdd {
  template <typename acc_t>
  __device__ __forceinline__ void operator()(acc_t* p, acc_t v) const {
    atomicAdd(p, v);
  }
};

// Whether a block-private (R, C + 1) table fits in shared memory.
bool shared_table(int64_t regions, int64_t slots, size_t acc_bytes) {
  return regions * slots * static_cast<int64_t>(acc_bytes) <= region_mean::kSharedBytes;
}

// table[b, L, c] += w X_c (c < C), table[b, L, C] += w (with_total); weights null means 1.
template <typename T, typename acc_t, bool kShared>
__global__ void __launch_bounds__(kReduceThreads)
    reduce_kernel(const T* __restrict__ X, Strides4 xs, const int64_t* __restrict__ labels, Strides4 ls,
                  const T* __restrict__ weights, Strides4 ws, acc_t* __restrict__ table, int64_t C, int64_t R,
                  int64_t P, int64_t width, bool with_total) {
  const int64_t blk = blockIdx.x, b = blockIdx.y, slots = C + 1;
  acc_t* global = table + region_mean::table_row(b, 0, R, slots);
  extern __shared__ __align__(16) unsigned char shared_raw[];
  acc_t* local = reinterpret_cast<acc_t*>(shared_raw);
  if (kShared) {
    for (int64_t k = threadIdx.x; k < R * slots; k += blockDim.x) local[k] = acc_t(0);
    __syncthreads();
  }
  region_mean::reduce_thread_run<kRunChannels, acc_t>(
      X, xs, labels, ls, weights, ws, b, region_mean::reduce_first_pixel(blk, threadIdx.x), P, width, C, R, with_total,
      kShared ? local : global, slots, DeviceLoad(), AtomicAdd());
  if (kShared) {
    __syncthreads();
    for (int64_t k = threadIdx.x; k < R * slots; k += blockDim.x) {
      const acc_t v = local[k];
      if (v != acc_t(0)) atomicAdd(&global[k], v);  // most regions are absent from a block
    }
  }
}

template <typename acc_t>
__global__ void __launch_bounds__(kPaintThreads)
    finalize_forward_kernel(const acc_t* __restrict__ table, acc_t* __restrict__ means, acc_t* __restrict__ totals,
                            int64_t rows, int64_t C) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  const acc_t* t = table + row * (C + 1);
  totals[row] = t[C];
  region_mean::finalize_forward_region(t, t[C], C, means + row * C);
}

// table holds sum_{L = r} gP_c; grad_means (may be null) is added in place before the finalize.
template <typename acc_t>
__global__ void __launch_bounds__(kPaintThreads)
    finalize_backward_kernel(acc_t* __restrict__ table, const acc_t* __restrict__ grad_means,
                             const acc_t* __restrict__ means, const acc_t* __restrict__ totals,
                             acc_t* __restrict__ grad_sum, acc_t* __restrict__ grad_total, int64_t rows, int64_t C) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  acc_t* gmean = table + row * (C + 1);
  if (grad_means)
    for (int64_t c = 0; c < C; ++c) gmean[c] += grad_means[row * C + c];
  grad_total[row] = region_mean::finalize_backward_region(gmean, means + row * C, totals[row], C, grad_sum + row * C);
}

template <typename T, typename acc_t>
__global__ void __launch_bounds__(kPaintThreads)
    paint_forward_kernel(const int64_t* __restrict__ labels, const acc_t* __restrict__ means, T* __restrict__ painted,
                         RegionMeanLayout layout, int64_t C, int64_t R, int64_t P) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * kPaintThreads + threadIdx.x;
  if (p >= P) return;
  region_mean::paint_forward_pixel<acc_t>(labels, layout.labels, means, painted, layout.out, blockIdx.y, p,
                                          layout.width, C, R, DeviceStore());
}

template <typename T, typename acc_t>
__global__ void __launch_bounds__(kPaintThreads)
    paint_backward_kernel(const int64_t* __restrict__ labels, const T* __restrict__ image,
                          const T* __restrict__ weights, const acc_t* __restrict__ grad_sum,
                          const acc_t* __restrict__ grad_total, T* __restrict__ grad_image, T* __restrict__ grad_weight,
                          RegionMeanLayout layout, int64_t C, int64_t R, int64_t P) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * kPaintThreads + threadIdx.x;
  if (p >= P) return;
  region_mean::paint_backward_pixel<acc_t>(labels, layout.labels, image, layout.image, weights, layout.weight, grad_sum,
                                           grad_total, grad_image, layout.grad_image, grad_weight, layout.grad_weight,
                                           blockIdx.y, p, layout.width, C, R, DeviceLoad(), DeviceStore());
}

dim3 reduce_grid(const RegionMeanShape& z) {
  return dim3(static_cast<unsigned>(region_mean::reduce_block_count(z.pixels)), static_cast<unsigned>(z.batch));
}
dim3 pixel_grid(const RegionMeanShape& z) {
  return dim3(static_cast<unsigned>(region_mean::paint_block_count(z.pixels)), static_cast<unsigned>(z.batch));
}
unsigned region_grid(const RegionMeanShape& z) {
  return static_cast<unsigned>((z.batch * z.regions + kPaintThreads - 1) / kPaintThreads);
}

template <typename T, typename acc_t>
void launch_reduce(const RegionMeanShape& z, const T* X, Strides4 xs, const int64_t* labels, Strides4 ls,
                   const T* weights, Strides4 ws, acc_t* table, int64_t width, bool with_total, cudaStream_t stream) {
  const int64_t slots = z.channels + 1;
  if (shared_table(z.regions, slots, sizeof(acc_t))) {
    const size_t bytes = static_cast<size_t>(z.regions * slots) * sizeof(acc_t);
    reduce_kernel<T, acc_t, true><<<reduce_grid(z), kReduceThreads, bytes, stream>>>(
        X, xs, labels, ls, weights, ws, table, z.channels, z.regions, z.pixels, width, with_total);
  } else {
    reduce_kernel<T, acc_t, false><<<reduce_grid(z), kReduceThreads, 0, stream>>>(
        X, xs, labels, ls, weights, ws, table, z.channels, z.regions, z.pixels, width, with_total);
  }
}

template <typename T>
cudaError_t forward(const RegionMeanShape& z, const RegionMeanLayout& layout, const void* image, const int64_t* labels,
                    const void* weight, void* painted, void* table, void* means, void* totals, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  acc_t* tab = static_cast<acc_t*>(table);
  launch_reduce<T, acc_t>(z, static_cast<const T*>(image), layout.image, labels, layout.labels,
                          static_cast<const T*>(weight), layout.weight, tab, layout.width, true, stream);
  finalize_forward_kernel<acc_t><<<region_grid(z), kPaintThreads, 0, stream>>>(
      tab, static_cast<acc_t*>(means), static_cast<acc_t*>(totals), z.batch * z.regions, z.channels);
  paint_forward_kernel<T, acc_t><<<pixel_grid(z), kPaintThreads, 0, stream>>>(
      labels, static_cast<const acc_t*>(means), static_cast<T*>(painted), layout, z.channels, z.regions, z.pixels);
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward(const RegionMeanShape& z, const RegionMeanLayout& layout, const void* grad_painted,
                     const void* grad_means, const void* image, const int64_t* labels, const void* weight,
                     const void* means, const void* totals, void* grad_image, void* grad_weight, void* table,
                     void* grad_sum, void* grad_total, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  acc_t* tab = static_cast<acc_t*>(table);
  launch_reduce<T, acc_t>(z, static_cast<const T*>(grad_painted), layout.out, labels, layout.labels, nullptr,
                          layout.weight, tab, layout.width, false, stream);
  finalize_backward_kernel<acc_t><<<region_grid(z), kPaintThreads, 0, stream>>>(
      tab, static_cast<const acc_t*>(grad_means), static_cast<const acc_t*>(means), static_cast<const acc_t*>(totals),
      static_cast<acc_t*>(grad_sum), static_cast<acc_t*>(grad_total), z.batch * z.regions, z.channels);
  paint_backward_kernel<T, acc_t><<<pixel_grid(z), kPaintThreads, 0, stream>>>(
      labels, static_cast<const T*>(image), static_cast<const T*>(weight), static_cast<const acc_t*>(grad_sum),
      static_cast<const acc_t*>(grad_total), static_cast<T*>(grad_image), static_cast<T*>(grad_weight), layout,
      z.channels, z.regions, z.pixels);
  return cudaGetLastError();
}

}  // namespace

cudaError_t region_mean_forward(RegionMeanDType dtype, RegionMeanShape shape, const RegionMeanLayout& layout,
                                const void* image, const int64_t* labels, const void* weight, void* painted,
                                void* table, void* means, void* totals, cudaStream_t stream) {
#define REFCOLOR_FORWARD(T) forward<T>(shape, layout, image, labels, weight, painted, table, means, totals, stream)
  switch (dtype) {
    case RegionMeanDType::Float32:
      return REFCOLOR_FORWARD(float);
    case RegionMeanDType::Float64:
      return REFCOLOR_FORWARD(double);
    case RegionMeanDType::Float16:
      return REFCOLOR_FORWARD(__half);
    case RegionMeanDType::BFloat16:
      return REFCOLOR_FORWARD(__nv_bfloat16);
  }
#undef REFCOLOR_FORWARD
  return cudaErrorInvalidValue;
}

cudaError_t region_mean_backward(RegionMeanDType dtype, RegionMeanShape shape, const RegionMeanLayout& layout,
                                 const void* grad_painted, const void* grad_means, const void* image,
                                 const int64_t* labels, const void* weight, const void* means, const void* totals,
                                 void* grad_image, void* grad_weight, void* table, void* grad_sum, void* grad_total,
                                 cudaStream_t stream) {
#define REFCOLOR_BACKWARD(T)                                                                                          \
  backward<T>(shape, layout, grad_painted, grad_means, image, labels, weight, means, totals, grad_image, grad_weight, \
              table, grad_sum, grad_total, stream)
  switch (dtype) {
    case RegionMeanDType::Float32:
      return REFCOLOR_BACKWARD(float);
    case RegionMeanDType::Float64:
      return REFCOLOR_BACKWARD(double);
    case RegionMeanDType::Float16:
      return REFCOLOR_BACKWARD(__half);
    case RegionMeanDType::BFloat16:
      return REFCOLOR_BACKWARD(__nv_bfloat16);
  }
#undef REFCOLOR_BACKWARD
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace refcolor
