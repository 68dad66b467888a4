// Op schemas of the compiled region_mean kernels. Device implementations live in cpu/ and cuda/;
// autograd, input validation and backend choice live in refcolor/ops/region_mean.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(refcolor, m) {
  // Returns painted (B, C, H, W) in the image's dtype and layout, and for the backward (and the
  // caller) the means (B, R, C) and weight totals (B, R) in the accumulator type (float32, or
  // float64 for float64). weight: (B, 1, H, W) or None (every pixel weighs 1).
  m.def(
      "region_mean_forward_kernel(Tensor image, Tensor labels, Tensor? weight, int num_regions)"
      " -> (Tensor painted, Tensor means, Tensor totals)");
  // grad_means: the gradient of the means output (B, R, C), or None. grad_weight is computed only
  // when weight_grad (and a weight is given); otherwise an empty tensor comes back.
  m.def(
      "region_mean_backward_kernel(Tensor grad_painted, Tensor? grad_means, Tensor image, Tensor labels,"
      " Tensor? weight, Tensor means, Tensor totals, bool weight_grad) -> (Tensor grad_image, Tensor grad_weight)");
  // Test-only: the CUDA kernels' block/thread logic run on the host (cpu/region_mean_cuda_emulation.cpp).
  // Returns painted, means, grad_image, grad_weight (empty without a weight).
  m.def(
      "region_mean_cuda_emulation(Tensor image, Tensor labels, Tensor? weight, int num_regions, Tensor grad_painted,"
      " Tensor? grad_means) -> (Tensor, Tensor, Tensor, Tensor)");
}
