// Op schemas of the compiled segment_hint_colors kernels. Device implementations live in cpu/ and
// cuda/; autograd, input validation and backend choice live in refcolor/ops/segment_hint_colors.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(refcolor, m) {
  // Returns hints (B, C, H, W), mask (B, 1, H, W), and for the backward the masked mean colours
  // (B, Nc, C) and the segment pixel counts (B, Nc; zero for inactive segments).
  m.def(
      "segment_hint_colors_forward_kernel(Tensor segments, Tensor image, Tensor num_hints)"
      " -> (Tensor hints, Tensor mask, Tensor colors, Tensor counts)");
  m.def(
      "segment_hint_colors_backward_kernel(Tensor grad_hints, Tensor grad_mask, Tensor segments,"
      " Tensor image, Tensor num_hints, Tensor colors, Tensor counts)"
      " -> (Tensor grad_segments, Tensor grad_image)");
  // Test-only: the CUDA kernels' block/thread logic run on the host (cpu/..._cuda_emulation.cpp).
  // Returns hints, mask, grad_segments, grad_image.
  m.def(
      "segment_hint_colors_cuda_emulation(Tensor segments, Tensor image, Tensor num_hints, Tensor grad_hints,"
      " Tensor grad_mask) -> (Tensor, Tensor, Tensor, Tensor)");
}
