#pragma once
// Host-side checks shared by the CPU and CUDA glue (torch headers allowed here, never in .cu).
#include <ATen/ATen.h>

#include "tps_warp/tps_warp_math.h"

namespace refcolor {

struct TpsWarpSizes {
  int64_t batch, channels, height, width, points;
};

// Safety net only: refcolor.ops.tps_warp validates with user-facing messages first.
inline TpsWarpSizes tps_warp_sizes(const at::Tensor& image, const at::Tensor& params, const at::Tensor& ctrl,
                                   int64_t padding_mode) {
  TORCH_CHECK(image.dim() == 4, "image must be (B, C, H, W), got ", image.sizes());
  TORCH_CHECK(ctrl.dim() == 3 && ctrl.size(0) == image.size(0) && ctrl.size(2) == 2, "ctrl must be (B, K, 2), got ",
              ctrl.sizes());
  TORCH_CHECK(
      params.dim() == 3 && params.size(0) == image.size(0) && params.size(1) == ctrl.size(1) + 3 && params.size(2) == 2,
      "params must be (B, K + 3, 2), got ", params.sizes(), " for ctrl ", ctrl.sizes());
  TORCH_CHECK(params.scalar_type() == ctrl.scalar_type(), "params and ctrl must share a dtype");
  TORCH_CHECK(padding_mode == 0 || padding_mode == 1, "padding_mode must be 0 (zeros) or 1 (border)");
  TORCH_CHECK(image.device() == params.device() && image.device() == ctrl.device(),
              "image, params and ctrl must be on one device");
  return {image.size(0), image.size(1), image.size(2), image.size(3), ctrl.size(1)};
}

inline TpsStrides tps_strides_of(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

inline void check_same_shape(const at::Tensor& grad_out, const at::Tensor& image) {
  TORCH_CHECK(grad_out.sizes() == image.sizes(), "grad_out ", grad_out.sizes(), " must match image ", image.sizes());
  TORCH_CHECK(grad_out.scalar_type() == image.scalar_type(), "grad_out dtype ", grad_out.scalar_type(),
              " must match image dtype ", image.scalar_type());
}

}  // namespace refcolor
