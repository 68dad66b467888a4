// Torch glue of the scft_attention CUDA kernels: checks, allocation, stream, dtype mapping, and the
// GEMMs, which are cuBLAS's through at::bmm / at::baddbmm (they take transposed and row-strided
// operands as they are; 16-bit GEMMs accumulate in float32). The row kernels (softmax, and the
// softmax gradient) are in scft_attention_kernel.cu, which includes no torch headers.
//
// The plan is the CPU one (cpu/scft_attention_cpu.cpp says why GEMMs): P = q k^T, softmax in place,
// out = residual + P v; backward dV = P^T dO, then by row blocks of all samples, in a bounded
// scratch: dP = dO v^T, dS over it (kernel), dQ_block = dS k, dK += dS^T q_block. P stays intact.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "scft_attention/cuda/scft_attention_kernel.h"
#include "scft_attention/scft_attention_host.h"
#include "scft_attention/scft_attention_math.h"

namespace refcolor {
namespace {

// Scratch of the backward's dP blocks, in elements (16 MB in 16-bit, 32 MB in float32): a
// workspace of fixed size, like cuBLAS's own, rather than a second (B, N, M) matrix. At the paper's
// shape (B = 16, N = M = 256) the whole dP fits, so the backward runs one GEMM per product; at
// B = 2, N = M = 4096 it takes four blocks of 1024 rows, GEMMs still large enough for cuBLAS.
constexpr int64_t kScratchElements = int64_t(1) << 23;

cuda::ScftDType kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return cuda::ScftDType::Float32;
    case at::kDouble:
      return cuda::ScftDType::Float64;
    case at::kHalf:
      return cuda::ScftDType::Float16;
    case at::kBFloat16:
      return cuda::ScftDType::BFloat16;
    default:
      TORCH_CHECK(false, "the CUDA kernel of scft_attention takes float16/bfloat16/float32/float64, got ", t);
  }
}

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                const c10::optional<at::Tensor>& residual, double scale,
                                                bool keep_probs) {
  const ScftSizes z = scft_sizes(q, k, v);
  if (residual.has_value()) check_residual(*residual, q, z);
  const c10::cuda::CUDAGuard guard(q.device());
  const cuda::ScftDType dtype = kernel_dtype(q.scalar_type());
  at::Tensor probs = at::empty({z.batch, z.queries, z.keys}, q.options());
  // The logits are scaled inside the GEMM (cuBLAS applies alpha in float32, before rounding to the
  // storage type): unscaled 16-bit logits overflow once |q.k| > 65504, e.g. d ~ 1000 with entries of
  // about 8. beta = 0: the uninitialised `probs` is not read.
  at::baddbmm_out(probs, probs, q, k.transpose(1, 2), /*beta=*/0, /*alpha=*/scale);
  const cudaError_t err = cuda::scft_softmax_rows(dtype, probs.data_ptr(), z.batch * z.queries, z.keys, 1.0,
                                                  c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "scft_attention softmax kernel failed: ", cudaGetErrorString(err));
  at::Tensor out = attention_output(probs, v, residual, z);
  return {out, keep_probs ? probs : at::empty({0}, q.options())};  // P is freed (to the caching allocator) here
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad_out, const at::Tensor& q,
                                                             const at::Tensor& k, const at::Tensor& v,
                                                             const at::Tensor& probs, double scale) {
  const ScftSizes z = scft_sizes(q, k, v);
  check_probs(probs, grad_out, z);
  const c10::cuda::CUDAGuard guard(q.device());
  const cuda::ScftDType dtype = kernel_dtype(q.scalar_type());
  at::Tensor grad_v = empty_in_layout_of(v), grad_q = empty_in_layout_of(q), grad_k = empty_in_layout_of(k);
  matmul_into(grad_v, probs.transpose(1, 2), grad_out);
  const int64_t N = z.queries, M = z.keys;
  const int64_t block = backward_block_rows(z.batch, N, M, kScratchElements);
  at::Tensor scratch = at::empty({z.batch * block * M}, probs.options());
  const at::Tensor vt = v.transpose(1, 2);
  // dK sums over the row blocks. In 16-bit, the sum runs in a float32 accumulator (cuBLAS's
  // out_dtype GEMM: 16-bit operands, float32 output), rounded to 16 bits once, as one GEMM would.
  const bool split = block < N, half = q.scalar_type() == at::kHalf || q.scalar_type() == at::kBFloat16;
  at::Tensor dk_acc = split && half ? at::empty({z.batch, M, z.dim}, k.options().dtype(at::kFloat)) : grad_k;
  for (int64_t row0 = 0; row0 < N; row0 += block) {
    const int64_t rows = backward_block_rows_at(row0, block, N);
    // dP, then dS over it: a contiguous (B, rows, M) view of the scratch, the layout the kernel reads.
    at::Tensor ds = scratch.narrow(0, 0, z.batch * rows * M).view({z.batch, rows, M});
    at::bmm_out(ds, grad_out.narrow(1, row0, rows), vt);
    const cudaError_t err = cuda::scft_softmax_grad_rows(dtype, probs.data_ptr(), ds.data_ptr(), z.batch, rows, row0, N,
                                                         M, scale, c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == cudaSuccess, "scft_attention softmax gradient kernel failed: ", cudaGetErrorString(err));
    at::Tensor dq = grad_q.narrow(1, row0, rows);
    matmul_into(dq, ds, k);
    const at::Tensor q_rows = q.narrow(1, row0, rows);
    if (dk_acc.scalar_type() == q.scalar_type()) {
      if (row0 == 0) {
        matmul_into(dk_acc, ds.transpose(1, 2), q_rows);
      } else {
        matmul_add_into(dk_acc, dk_acc, ds.transpose(1, 2), q_rows);
      }
    } else if (row0 == 0) {
      at::bmm_out(dk_acc, ds.transpose(1, 2), q_rows, at::kFloat);
    } else {
      at::baddbmm_out(dk_acc, dk_acc, ds.transpose(1, 2), q_rows, at::kFloat);
    }
  }
  if (!dk_acc.is_same(grad_k)) grad_k.copy_(dk_acc);
  return {grad_q, grad_k, grad_v};
}

}  // namespace

TORCH_LIBRARY_IMPL(refcolor, CUDA, m) {
  m.impl("scft_attention_forward_kernel", &forward_cuda);
  m.impl("scft_attention_backward_kernel", &backward_cuda);
}

}  // namespace refcolor
