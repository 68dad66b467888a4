// Op schemas of the compiled tps_warp kernels. Device implementations live in cpu/ and cuda/;
// the spline solve, autograd, validation and backend choice live in refcolor/ops/tps_warp.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(refcolor, m) {
  // image (B, C, H, W); params (B, K + 3, 2) and ctrl (B, K, 2) in the compute dtype (float32, or
  // float64 for float64 images); padding_mode 0 = zeros, 1 = border. Returns (B, C, H, W).
  m.def("tps_warp_forward_kernel(Tensor image, Tensor params, Tensor ctrl, int padding_mode) -> Tensor");
  // Gradient with respect to the image (that of grid_sample on the same grid).
  m.def("tps_warp_backward_kernel(Tensor grad_out, Tensor params, Tensor ctrl, int padding_mode) -> Tensor");
}
