// Op schemas of the compiled tps_warp kernels. Device implementations live in cpu/ and cuda/;
// the spline solve, autograd, validation and backend choice live in refcolor/ops/tps_warp.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(refcolor, m) {
  // image (B, C, H, W) of any strides, output in the image's layout; params (B, K + 3, 2) and ctrl (B, K, 2) in the
  // compute dtype (float32, or float64 for float64 images); padding_mode 0 = zeros, 1 = border. Returns (B, C, H, W).
  m.def("tps_warp_forward_kernel(Tensor image, Tensor params, Tensor ctrl, int padding_mode) -> Tensor");
  // Gradient with respect to the image (that of grid_sample on the same grid), in the image's
  // layout (`image` gives only that layout and is not read). grad_out of any strides.
  m.def(
      "tps_warp_backward_kernel(Tensor grad_out, Tensor image, Tensor params, Tensor ctrl, int padding_mode)"
      " -> Tensor");
  // Test-only: the CUDA kernels' per-thread logic run on the host (cpu/tps_warp_cuda_emulation.cpp).
  m.def(
      "tps_warp_cuda_emulation(Tensor image, Tensor params, Tensor ctrl, int padding_mode, Tensor grad_out)"
      " -> (Tensor, Tensor)");
}
