// Test-only: the scft_attention CUDA row kernels' per-thread logic run on the host. Every block and
// thread of the launches in cuda/scft_attention_kernel.cu is visited, phase by phase as the
// __syncthreads barriers order them, and calls the same scft_attention_math.h helpers the kernels
// call (row of a block, a thread's elements and tail guard, the backward's row mapping and block
// heights). The block reductions are replayed lane by lane: the xor butterfly within each warp,
// then the warps' results in warp order, so even the rounding of the sums is the GPU's (exp is the
// host libm's, within an ulp or two of CUDA's expf / exp). Loads and stores are bounds-checked
// against the launch's buffers, as compute-sanitizer would; a wrong index inside a buffer shows in
// the results. The backward runs the CUDA glue's row blocks through a NaN-filled scratch of the
// size the glue allocates, so a row the kernel misses or misplaces poisons the result.
// tests/test_scft_attention_cuda_emulation.py compares the results with float64 PyTorch.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <tuple>

#include "scft_attention/scft_attention_math.h"

namespace refcolor {
namespace {

// The CUDA kernels' accumulator type: float for 16-bit and float32 storage, double for float64.
template <typename T>
struct HostAcc {
  using type = float;
};
template <>
struct HostAcc<double> {
  using type = double;
};

// Memory a launch may touch: an access outside it is an out-of-bounds access on the GPU.
struct Buffer {
  const char* begin;
  const char* end;
  bool holds(const void* p) const {
    const char* c = static_cast<const char*>(p);
    return c >= begin && c < end;
  }
};
template <typename T>
Buffer buffer_of(const at::Tensor& t) {
  const char* begin = static_cast<const char*>(t.data_ptr());
  return {begin, begin + t.numel() * sizeof(T)};
}

struct HostLoad {
  Buffer a, b;
  template <typename T>
  typename HostAcc<T>::type operator()(const T* p) const {
    TORCH_CHECK(a.holds(p) || b.holds(p), "scft_attention CUDA emulation: a thread reads outside its buffers");
    return static_cast<typename HostAcc<T>::type>(*p);
  }
};
struct HostStore {
  Buffer a;
  template <typename T, typename acc_t>
  void operator()(T* p, acc_t v) const {
    TORCH_CHECK(a.holds(p), "scft_attention CUDA emulation: a thread writes outside its buffer");
    *p = static_cast<T>(v);  // c10's Half / BFloat16 round to nearest even, as __float2half_rn does
  }
};
struct HostExp {
  float operator()(float x) const { return std::exp(x); }
  double operator()(double x) const { return std::exp(x); }
};

// block_reduce of the .cu file over all threads' values at once; every thread gets the result.
template <typename A, typename Op>
void block_reduce(A (&values)[kScftThreads], Op op) {
  A totals[kScftWarps];
  for (int w = 0; w < kScftWarps; ++w) {
    A* lanes = values + w * kScftWarpSize;
    for (int offset = kScftWarpSize / 2; offset > 0; offset /= 2) {
      A shuffled[kScftWarpSize];  // __shfl_xor_sync: every lane reads its partner's value of the same step
      for (int l = 0; l < kScftWarpSize; ++l) shuffled[l] = lanes[l ^ offset];
      for (int l = 0; l < kScftWarpSize; ++l) lanes[l] = op(lanes[l], shuffled[l]);
    }
    totals[w] = lanes[0];  // lane 0 writes shared[warp]
  }
  for (int t = 0; t < kScftThreads; ++t) values[t] = combine_warp_totals(totals, op);
}

// softmax_rows_kernel, block `block`, in place on the contiguous (rows, M) buffer `probs`.
template <typename T>
void softmax_block(T* probs, int64_t block, int64_t M, typename HostAcc<T>::type scale, const HostLoad& load,
                   const HostStore& store) {
  using acc_t = typename HostAcc<T>::type;
  T* row = probs + softmax_row_offset(block, M);
  acc_t shift[kScftThreads], total[kScftThreads];
  for (int t = 0; t < kScftThreads; ++t) shift[t] = softmax_thread_max(row, M, t, scale, load);
  block_reduce(shift, ScftMax());
  for (int t = 0; t < kScftThreads; ++t) total[t] = softmax_thread_sum(row, M, t, scale, shift[t], load, HostExp());
  block_reduce(total, ScftSum());
  for (int t = 0; t < kScftThreads; ++t)
    softmax_thread_write(row, M, t, scale, shift[t], acc_t(1) / total[t], load, store, HostExp());
}

// softmax_grad_rows_kernel, block `block`, over the contiguous (B, block_rows, M) scratch `grad_probs`.
template <typename T>
void softmax_grad_block(const T* probs, T* grad_probs, int64_t block, int64_t block_rows, int64_t row0, int64_t N,
                        int64_t M, typename HostAcc<T>::type scale, const HostLoad& load, const HostStore& store) {
  using acc_t = typename HostAcc<T>::type;
  const ScftGradRowOffsets at = softmax_grad_row_offsets(block, block_rows, row0, N, M);
  const T* p = probs + at.probs;
  T* dp = grad_probs + at.grad;
  acc_t delta[kScftThreads];
  for (int t = 0; t < kScftThreads; ++t) delta[t] = softmax_grad_thread_dot<acc_t>(p, dp, M, t, load);
  block_reduce(delta, ScftSum());
  for (int t = 0; t < kScftThreads; ++t) softmax_grad_thread_write(p, dp, M, t, delta[t], scale, load, store);
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> emulate(const at::Tensor& logits, const at::Tensor& grad_probs, double scale,
                                           int64_t scratch_elements) {
  using acc_t = typename HostAcc<T>::type;
  const int64_t B = logits.size(0), N = logits.size(1), M = logits.size(2);
  const acc_t s = static_cast<acc_t>(scale);  // the glue's cast of the double scale

  // Forward (forward_cuda): the logits in a contiguous (B, N, M) buffer, one block per row.
  at::Tensor probs = logits.contiguous().clone();
  T* P = probs.data_ptr<T>();
  const HostLoad forward_load{buffer_of<T>(probs), buffer_of<T>(probs)};
  const HostStore forward_store{buffer_of<T>(probs)};
  for (int64_t block = 0; block < B * N; ++block) softmax_block(P, block, M, s, forward_load, forward_store);

  // Backward (backward_cuda): row blocks of all samples through a scratch of the glue's size; the
  // copy in stands for the glue's dP = dO v^T GEMM, the copy out for its dQ and dK GEMMs.
  const int64_t block_rows = backward_block_rows(B, N, M, scratch_elements);
  at::Tensor scratch = at::full({B * block_rows * M}, std::numeric_limits<double>::quiet_NaN(), logits.options());
  at::Tensor grad_logits = at::empty({B, N, M}, logits.options());
  const HostLoad backward_load{buffer_of<T>(probs), buffer_of<T>(scratch)};
  const HostStore backward_store{buffer_of<T>(scratch)};
  for (int64_t row0 = 0; row0 < N; row0 += block_rows) {
    const int64_t rows = backward_block_rows_at(row0, block_rows, N);
    at::Tensor ds = scratch.narrow(0, 0, B * rows * M).view({B, rows, M});
    ds.copy_(grad_probs.narrow(1, row0, rows));
    for (int64_t block = 0; block < B * rows; ++block)
      softmax_grad_block(static_cast<const T*>(P), ds.data_ptr<T>(), block, rows, row0, N, M, s, backward_load,
                         backward_store);
    grad_logits.narrow(1, row0, rows).copy_(ds);
  }
  return {probs, grad_logits};
}

// logits S and grad_probs dP: (B, N, M), any strides, one floating dtype. Returns the forward's
// P = softmax(scale S) and the backward's dS = scale P (dP - rowsum(P dP)), both (B, N, M), with
// the backward in row blocks of backward_block_rows(B, N, M, scratch_elements) rows.
std::tuple<at::Tensor, at::Tensor> emulation_cpu(const at::Tensor& logits, const at::Tensor& grad_probs, double scale,
                                                 int64_t scratch_elements) {
  TORCH_CHECK(logits.dim() == 3, "logits must be (B, N, M), got ", logits.sizes());
  TORCH_CHECK(logits.numel() > 0, "logits must be non-empty (as refcolor.ops.scft_attention requires), got ",
              logits.sizes());
  TORCH_CHECK(grad_probs.sizes() == logits.sizes(), "grad_probs must have the logits' shape ", logits.sizes(), ", got ",
              grad_probs.sizes());
  TORCH_CHECK(grad_probs.scalar_type() == logits.scalar_type(), "grad_probs must have the logits' dtype ",
              logits.scalar_type(), ", got ", grad_probs.scalar_type());
  TORCH_CHECK(scratch_elements >= 1, "scratch_elements must be >= 1, got ", scratch_elements);
  std::tuple<at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "scft_attention_cuda_emulation",
                                  [&] { out = emulate<scalar_t>(logits, grad_probs, scale, scratch_elements); });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(refcolor, CPU, m) {
  m.impl("scft_attention_cuda_emulation", &emulation_cpu);
}

}  // namespace refcolor
