// CUDA row kernels of scft_attention (the GEMMs are cuBLAS's, called from the torch glue): one
// thread block per row. The softmax sweeps its row three times (max, sum, write) and the gradient
// twice (rowsum(P dP), write dS over dP); a row is at most tens of KB, so the later sweeps hit L1/L2 and DRAM
// sees one read and one write. Math in float32 for float16/bfloat16/float32 storage (float64 for
// float64). The per-thread work (row of a block, the elements of a thread, tail guards, the
// backward's row mapping) is in scft_attention_math.h, which a host emulation shares
// (tests/test_scft_attention_cuda_emulation.py). No torch headers.
#include <cmath>

#include "cuda_scalar.cuh"
#include "scft_attention/cuda/scft_attention_kernel.h"
#include "scft_attention/scft_attention_math.h"

namespace refcolor {
namespace cuda {
namespace {

struct DeviceExp {
  __device__ __forceinline__ float operator()(float x) const { return expf(x); }
  __device__ __forceinline__ double operator()(double x) const { return exp(x); }
};

// Every thread of the block gets op over all threads' values: a butterfly within each warp, then
// the warps' results in warp order (combine_warp_totals; the host emulation replays both).
template <typename A, typename Op>
__device__ __forceinline__ A block_reduce(A value, Op op, A* shared) {
  for (int offset = kScftWarpSize / 2; offset > 0; offset /= 2)
    value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  const int warp = threadIdx.x / kScftWarpSize, lane = threadIdx.x % kScftWarpSize;
  __syncthreads();  // `shared` may still be read by a previous reduction
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  return combine_warp_totals(shared, op);
}

template <typename T>
__global__ void __launch_bounds__(kScftThreads)
    softmax_rows_kernel(T* __restrict__ probs, int64_t M, typename Acc<T>::type scale) {
  using acc_t = typename Acc<T>::type;
  __shared__ acc_t shared[kScftWarps];
  T* row = probs + softmax_row_offset(blockIdx.x, M);
  const int t = threadIdx.x;
  const acc_t shift = block_reduce(softmax_thread_max(row, M, t, scale, DeviceLoad()), ScftMax(), shared);
  const acc_t total = softmax_thread_sum(row, M, t, scale, shift, DeviceLoad(), DeviceExp());
  const acc_t inv = acc_t(1) / block_reduce(total, ScftSum(), shared);
  softmax_thread_write(row, M, t, scale, shift, inv, DeviceLoad(), DeviceStore(), DeviceExp());
}

template <typename T>
__global__ void __launch_bounds__(kScftThreads)
    softmax_grad_rows_kernel(const T* __restrict__ probs, T* __restrict__ grad_probs, int64_t block_rows, int64_t row0,
                             int64_t N, int64_t M, typename Acc<T>::type scale) {
  using acc_t = typename Acc<T>::type;
  __shared__ acc_t shared[kScftWarps];
  const ScftGradRowOffsets at = softmax_grad_row_offsets(blockIdx.x, block_rows, row0, N, M);
  const T* p = probs + at.probs;
  T* dp = grad_probs + at.grad;
  const int t = threadIdx.x;
  const acc_t delta = block_reduce(softmax_grad_thread_dot<acc_t>(p, dp, M, t, DeviceLoad()), ScftSum(), shared);
  softmax_grad_thread_write(p, dp, M, t, delta, scale, DeviceLoad(), DeviceStore());
}

constexpr int64_t kMaxGrid = 2147483647;  // gridDim.x

template <typename T>
cudaError_t launch_softmax(void* probs, int64_t rows, int64_t M, double scale, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  if (rows > kMaxGrid) return cudaErrorInvalidConfiguration;
  softmax_rows_kernel<T>
      <<<static_cast<unsigned>(rows), kScftThreads, 0, stream>>>(static_cast<T*>(probs), M, static_cast<acc_t>(scale));
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_softmax_grad(const void* probs, void* grad_probs, int64_t batch, int64_t block_rows, int64_t row0,
                                int64_t N, int64_t M, double scale, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  const int64_t rows = batch * block_rows;
  if (rows > kMaxGrid) return cudaErrorInvalidConfiguration;
  softmax_grad_rows_kernel<T><<<static_cast<unsigned>(rows), kScftThreads, 0, stream>>>(
      static_cast<const T*>(probs), static_cast<T*>(grad_probs), block_rows, row0, N, M, static_cast<acc_t>(scale));
  return cudaGetLastError();
}

}  // namespace

cudaError_t scft_softmax_rows(ScftDType dtype, void* probs, int64_t rows, int64_t M, double scale,
                              cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  switch (dtype) {
    case ScftDType::Float32:
      return launch_softmax<float>(probs, rows, M, scale, stream);
    case ScftDType::Float64:
      return launch_softmax<double>(probs, rows, M, scale, stream);
    case ScftDType::Float16:
      return launch_softmax<__half>(probs, rows, M, scale, stream);
    case ScftDType::BFloat16:
      return launch_softmax<__nv_bfloat16>(probs, rows, M, scale, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t scft_softmax_grad_rows(ScftDType dtype, const void* probs, void* grad_probs, int64_t batch,
                                   int64_t block_rows, int64_t row0, int64_t N, int64_t M, double scale,
                                   cudaStream_t stream) {
  if (batch * block_rows == 0) return cudaSuccess;
  switch (dtype) {
    case ScftDType::Float32:
      return launch_softmax_grad<float>(probs, grad_probs, batch, block_rows, row0, N, M, scale, stream);
    case ScftDType::Float64:
      return launch_softmax_grad<double>(probs, grad_probs, batch, block_rows, row0, N, M, scale, stream);
    case ScftDType::Float16:
      return launch_softmax_grad<__half>(probs, grad_probs, batch, block_rows, row0, N, M, scale, stream);
    case ScftDType::BFloat16:
      return launch_softmax_grad<__nv_bfloat16>(probs, grad_probs, batch, block_rows, row0, N, M, scale, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace refcolor
