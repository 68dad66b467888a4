#pragma once
// Launchers of the scft_attention CUDA row kernels. Plain C++/CUDA types only, so that the .cu file
// builds with nvcc alone (no torch headers); the GEMMs and the torch glue are in scft_attention_cuda.cpp.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace refcolor {
namespace cuda {

enum class ScftDType { Float32, Float64, Float16, BFloat16 };

// probs: contiguous (rows, M) logits S in `dtype`, overwritten with softmax(scale * S) per row
// (float32 math for 16-bit and float32 storage, float64 for Float64).
cudaError_t scft_softmax_rows(ScftDType dtype, void* probs, int64_t rows, int64_t M, double scale, cudaStream_t stream);

// probs: contiguous (B, N, M) probabilities; grad_probs: contiguous (B, block_rows, M), dP for rows
// [row0, row0 + block_rows) of every sample, overwritten with dS = scale * P * (dP - rowsum(P * dP)).
cudaError_t scft_softmax_grad_rows(ScftDType dtype, const void* probs, void* grad_probs, int64_t batch,
                                   int64_t block_rows, int64_t row0, int64_t N, int64_t M, double scale,
                                   cudaStream_t stream);

}  // namespace cuda
}  // namespace refcolor
