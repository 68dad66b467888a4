// CUDA row kernels of scft_attention (the GEMMs are cuBLAS's, called from the torch glue): one
// thread block per row. The softmax sweeps its row three times (max, sum, write) and the gradient
// twice (rowsum(P dP), write dS over dP); a row is at most tens of KB, so the later sweeps hit L1/L2 and DRAM
// sees one read and one write. Math in float32 for float16/bfloat16/float32 storage (float64 for
// float64). No torch headers.
#include <cmath>

#include "cuda_scalar.cuh"
#include "scft_attention/cuda/scft_attention_kernel.h"
#include "scft_attention/scft_attention_math.h"

namespace refcolor {
namespace cuda {
namespace {

constexpr int kThreads = 256;  // 8 warps: enough loads in flight per row for rows of 256 to 8192
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ float device_exp(float x) {
  return expf(x);
}
__device__ __forceinline__ double device_exp(double x) {
  return exp(x);
}

struct Max {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    return a > b ? a : b;
  }
};
struct Sum {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    return a + b;
  }
};

// Every thread of the block gets op over all threads' values.
template <typename A, typename Op>
__device__ __forceinline__ A block_reduce(A value, Op op, A* shared) {
  for (int offset = 16; offset > 0; offset /= 2) value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // `shared` may still be read by a previous reduction
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  value = shared[0];
  for (int w = 1; w < kWarps; ++w) value = op(value, shared[w]);
  return value;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    softmax_rows_kernel(T* __restrict__ probs, int64_t M, typename Acc<T>::type scale) {
  using acc_t = typename Acc<T>::type;
  __shared__ acc_t shared[kWarps];
  T* row = probs + static_cast<int64_t>(blockIdx.x) * M;
  // INFINITY (a float constant) rather than std::numeric_limits, whose constexpr host function needs
  // nvcc's --expt-relaxed-constexpr in device code; the cast keeps it infinite for a double acc_t.
  acc_t shift = -static_cast<acc_t>(INFINITY);
  for (int64_t j = threadIdx.x; j < M; j += kThreads) shift = Max()(shift, scale * load(row + j));
  shift = block_reduce(shift, Max(), shared);
  acc_t total = 0;
  for (int64_t j = threadIdx.x; j < M; j += kThreads) total += device_exp(scale * load(row + j) - shift);
  const acc_t inv = acc_t(1) / block_reduce(total, Sum(), shared);
  for (int64_t j = threadIdx.x; j < M; j += kThreads) store(row + j, device_exp(scale * load(row + j) - shift) * inv);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    softmax_grad_rows_kernel(const T* __restrict__ probs, T* __restrict__ grad_probs, int64_t block_rows, int64_t row0,
                             int64_t N, int64_t M, typename Acc<T>::type scale) {
  using acc_t = typename Acc<T>::type;
  __shared__ acc_t shared[kWarps];
  const int64_t i = blockIdx.x;
  const T* p = probs + block_row_to_prob_row(i, block_rows, row0, N) * M;
  T* dp = grad_probs + i * M;
  acc_t delta = 0;
  for (int64_t j = threadIdx.x; j < M; j += kThreads) delta += load(p + j) * load(dp + j);
  delta = block_reduce(delta, Sum(), shared);
  for (int64_t j = threadIdx.x; j < M; j += kThreads)
    store(dp + j, softmax_grad_element(load(p + j), load(dp + j), delta, scale));
}

constexpr int64_t kMaxGrid = 2147483647;  // gridDim.x

template <typename T>
cudaError_t launch_softmax(void* probs, int64_t rows, int64_t M, double scale, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  if (rows > kMaxGrid) return cudaErrorInvalidConfiguration;
  softmax_rows_kernel<T>
      <<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(static_cast<T*>(probs), M, static_cast<acc_t>(scale));
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_softmax_grad(const void* probs, void* grad_probs, int64_t batch, int64_t block_rows, int64_t row0,
                                int64_t N, int64_t M, double scale, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  const int64_t rows = batch * block_rows;
  if (rows > kMaxGrid) return cudaErrorInvalidConfiguration;
  softmax_grad_rows_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
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
