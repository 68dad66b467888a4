#pragma once
// Per-element math of scft_attention's row kernels, shared by the C++ CPU and the CUDA kernels so
// that the CPU tests exercise what the GPU runs. No torch headers.
//
// Forward, row i of the logits S = q k^T (scale s, any sign):
//   m_i = max_j s S_ij     P_ij = exp(s S_ij - m_i) / sum_j exp(s S_ij - m_i)
// Backward, with dP = dO v^T:
//   delta_i = sum_j P_ij dP_ij     dS_ij = s P_ij (dP_ij - delta_i)   (gradient of the unscaled S)
// delta_i equals dO_i . (P v)_i, but that needs the output without the residual; summing over the
// row that the fused pass reads anyway costs nothing extra (the row is in cache).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "macros.h"

namespace refcolor {

// exp(x) for x <= 0 (softmax arguments after the max shift) on the CPU, float32: Cephes' range
// reduction and degree-6 polynomial (max relative error ~2 ulp), branch-free, so that a loop over a
// row vectorises (glibc's expf is a scalar call; torch's Sleef needs ATen's per-ISA builds). Below
// -87.3 the result is 0 (the true value is a denormal, < 2^-126, negligible against a row sum >= 1).
inline float exp_nonpositive(float x) {
  const float safe = x < -87.3f ? -87.3f : x;
  const float t = safe * 1.44269504088896341f;
  // Round to nearest without a libm call: adding and removing 1.5 * 2^23 leaves the integer part.
  const float n = (t + 12582912.f) - 12582912.f;
  const float r = (safe - n * 0.693359375f) + n * 2.12194440e-4f;  // safe - n ln2, in two parts
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 0]
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return x < -87.3f ? 0.0f : y * two_n;
}
inline double exp_nonpositive(double x) {
  return std::exp(x);
}  // float64 keeps libm's accuracy

// The two per-element formulas, in the accumulation type (float for 16-bit and float32 storage).
template <typename acc_t>
REFCOLOR_HOST_DEVICE inline acc_t softmax_grad_element(acc_t p, acc_t dp, acc_t delta, acc_t scale) {
  return scale * p * (dp - delta);
}

// The CUDA row kernels' per-thread work (scft_attention_kernel.cu), shared with the host emulation
// (cpu/scft_attention_cuda_emulation.cpp) so that the CPU tests run the kernels' indexing, tail
// guards and row mapping. One block of kScftThreads threads per row of M elements; thread t visits
// elements t, t + kScftThreads, ... < M. Only the warp shuffles and the __syncthreads stay in the
// .cu file; the emulation replays them lane by lane.
constexpr int kScftThreads = 256;  // 8 warps: enough loads in flight per row for rows of 256 to 8192
constexpr int kScftWarpSize = 32;
constexpr int kScftWarps = kScftThreads / kScftWarpSize;

struct ScftMax {
  template <typename A>
  REFCOLOR_HOST_DEVICE A operator()(A a, A b) const {
    return a > b ? a : b;
  }
};
struct ScftSum {
  template <typename A>
  REFCOLOR_HOST_DEVICE A operator()(A a, A b) const {
    return a + b;
  }
};

// The block's result from its warps' results (lane 0 of each warp wrote its value to totals[warp]),
// combined in warp order by every thread.
template <typename A, typename Op>
REFCOLOR_HOST_DEVICE inline A combine_warp_totals(const A* totals, Op op) {
  A value = totals[0];
  for (int w = 1; w < kScftWarps; ++w) value = op(value, totals[w]);
  return value;
}

// Forward: block `block` owns row `block` of the contiguous (rows, M) logits, softmaxed in place.
REFCOLOR_HOST_DEVICE inline int64_t softmax_row_offset(int64_t block, int64_t M) {
  return block * M;
}

// Thread `thread`'s maximum of scale * S over its elements of the row (-inf when it has none).
// INFINITY (a float constant) rather than std::numeric_limits, whose constexpr host function needs
// nvcc's --expt-relaxed-constexpr in device code; the cast keeps it infinite for a double acc_t.
template <typename acc_t, typename T, typename Load>
REFCOLOR_HOST_DEVICE inline acc_t softmax_thread_max(const T* row, int64_t M, int thread, acc_t scale, Load load) {
  acc_t shift = -static_cast<acc_t>(INFINITY);
  for (int64_t j = thread; j < M; j += kScftThreads) shift = ScftMax()(shift, scale * load(row + j));
  return shift;
}

// Thread `thread`'s sum of exp(scale * S - shift) over its elements of the row.
template <typename acc_t, typename T, typename Load, typename Exp>
REFCOLOR_HOST_DEVICE inline acc_t softmax_thread_sum(const T* row, int64_t M, int thread, acc_t scale, acc_t shift,
                                                     Load load, Exp exp) {
  acc_t total = 0;
  for (int64_t j = thread; j < M; j += kScftThreads) total += exp(scale * load(row + j) - shift);
  return total;
}

// Thread `thread` overwrites its elements of the row with exp(scale * S - shift) * inv.
template <typename acc_t, typename T, typename Load, typename Store, typename Exp>
REFCOLOR_HOST_DEVICE inline void softmax_thread_write(T* row, int64_t M, int thread, acc_t scale, acc_t shift,
                                                      acc_t inv, Load load, Store store, Exp exp) {
  for (int64_t j = thread; j < M; j += kScftThreads) store(row + j, exp(scale * load(row + j) - shift) * inv);
}

// Backward: thread `thread`'s part of delta = sum_j P_j dP_j over the row.
template <typename acc_t, typename T, typename Load>
REFCOLOR_HOST_DEVICE inline acc_t softmax_grad_thread_dot(const T* p, const T* dp, int64_t M, int thread, Load load) {
  acc_t delta = 0;
  for (int64_t j = thread; j < M; j += kScftThreads) delta += load(p + j) * load(dp + j);
  return delta;
}

// Thread `thread` overwrites its elements of dP with dS.
template <typename acc_t, typename T, typename Load, typename Store>
REFCOLOR_HOST_DEVICE inline void softmax_grad_thread_write(const T* p, T* dp, int64_t M, int thread, acc_t delta,
                                                           acc_t scale, Load load, Store store) {
  for (int64_t j = thread; j < M; j += kScftThreads)
    store(dp + j, softmax_grad_element<acc_t>(load(p + j), load(dp + j), delta, scale));
}

// Rows of a block of the backward: the CUDA backward computes dP for rows [row0, row0 + rows) of
// every sample at once into a (B, rows, M) scratch; row `i` of that scratch is this row of the
// (B, N, M) probabilities. Kept here so that the CPU tests check the index arithmetic.
REFCOLOR_HOST_DEVICE inline int64_t block_row_to_prob_row(int64_t i, int64_t rows, int64_t row0, int64_t N) {
  return (i / rows) * N + row0 + i % rows;
}

// Backward: block `block` of a launch over a row block reads that row of the probabilities and
// owns row `block` of the (B, rows, M) scratch; element offsets of the two rows.
struct ScftGradRowOffsets {
  int64_t probs, grad;
};
REFCOLOR_HOST_DEVICE inline ScftGradRowOffsets softmax_grad_row_offsets(int64_t block, int64_t rows, int64_t row0,
                                                                        int64_t N, int64_t M) {
  return {block_row_to_prob_row(block, rows, row0, N) * M, block * M};
}

// Row-block height of the CUDA backward: as many rows as fit `budget` scratch elements for all
// B samples (at least one row, at most N).
REFCOLOR_HOST_DEVICE inline int64_t backward_block_rows(int64_t B, int64_t N, int64_t M, int64_t budget) {
  const int64_t rows = budget / (B * M);
  return rows < 1 ? 1 : rows > N ? N : rows;
}

// Rows in the backward's block that starts at row0 (the last block may be shorter).
REFCOLOR_HOST_DEVICE inline int64_t backward_block_rows_at(int64_t row0, int64_t block, int64_t N) {
  return N - row0 < block ? N - row0 : block;
}

}  // namespace refcolor
