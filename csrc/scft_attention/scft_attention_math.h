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

// Rows of a block of the backward: the CUDA backward computes dP for rows [row0, row0 + rows) of
// every sample at once into a (B, rows, M) scratch; row `i` of that scratch is this row of the
// (B, N, M) probabilities. Kept here so that the CPU tests check the index arithmetic.
REFCOLOR_HOST_DEVICE inline int64_t block_row_to_prob_row(int64_t i, int64_t rows, int64_t row0, int64_t N) {
  return (i / rows) * N + row0 + i % rows;
}

// Row-block height of the CUDA backward: as many rows as fit `budget` scratch elements for all
// B samples (at least one row, at most N).
REFCOLOR_HOST_DEVICE inline int64_t backward_block_rows(int64_t B, int64_t N, int64_t M, int64_t budget) {
  const int64_t rows = budget / (B * M);
  return rows < 1 ? 1 : rows > N ? N : rows;
}

}  // namespace refcolor
