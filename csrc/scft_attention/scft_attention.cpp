// Op schemas of the compiled scft_attention kernels. Device implementations live in cpu/ and cuda/;
// autograd, validation and backend choice live in refcolor/ops/scft_attention.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(refcolor, m) {
  // q (B, N, d), k (B, M, d), v (B, M, dv), residual (B, N, dv) or None, any strides.
  // Returns out = residual + P v (B, N, dv; the residual's strides when it has a dense layout) and
  // P = softmax(scale q k^T) (B, N, M, contiguous, the input dtype) for the backward, or an empty
  // tensor when keep_probs is false (no backward to come: the CPU kernel then never holds P whole).
  m.def(
      "scft_attention_forward_kernel(Tensor q, Tensor k, Tensor v, Tensor? residual, float scale,"
      " bool keep_probs) -> (Tensor, Tensor)");
  // Gradients of q, k, v (each in its input's strides when dense), from the forward's P (left
  // intact: the logits' gradient dS is formed block by block in a bounded scratch).
  m.def(
      "scft_attention_backward_kernel(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor probs,"
      " float scale) -> (Tensor, Tensor, Tensor)");
  // Test-only: the CUDA row kernels' per-thread logic run on the host
  // (cpu/scft_attention_cuda_emulation.cpp). logits and grad_probs (B, N, M); returns the forward's
  // P = softmax(scale logits) and the backward's dS, the latter in the glue's row blocks for a
  // scratch of scratch_elements elements.
  m.def(
      "scft_attention_cuda_emulation(Tensor logits, Tensor grad_probs, float scale, int scratch_elements)"
      " -> (Tensor, Tensor)");
}
