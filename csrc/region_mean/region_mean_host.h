#pragma once
// Host-side shape handling shared by the CPU and CUDA glue of region_mean (torch headers allowed
// here, never in .cu). Strides and layout helpers are segment_hint_colors' (one rule for all ops).
#include <ATen/ATen.h>

#include <optional>

#include "region_mean/region_mean_math.h"
#include "segment_hint_colors/segment_hint_colors_host.h"

namespace refcolor {
namespace region_mean {

struct RegionMeanSizes {
  int64_t batch, channels, height, width, pixels, regions;
};

// Safety net only: refcolor.ops validates with user-facing messages before calling the kernels.
inline RegionMeanSizes region_mean_sizes(const at::Tensor& image, const at::Tensor& labels,
                                         const std::optional<at::Tensor>& weight, int64_t num_regions) {
  TORCH_CHECK(image.dim() == 4, "region_mean: image must be (B, C, H, W), got ", image.sizes());
  TORCH_CHECK(labels.dim() == 3 && labels.size(0) == image.size(0) && labels.size(1) == image.size(2) &&
                  labels.size(2) == image.size(3),
              "region_mean: labels must be (B, H, W) matching image ", image.sizes(), ", got ", labels.sizes());
  TORCH_CHECK(labels.scalar_type() == at::kLong, "region_mean: labels must be int64, got ", labels.scalar_type());
  TORCH_CHECK(labels.device() == image.device(), "region_mean: labels and image must be on one device");
  TORCH_CHECK(num_regions >= 1, "region_mean: num_regions must be >= 1, got ", num_regions);
  if (weight) {
    TORCH_CHECK(weight->dim() == 4 && weight->size(0) == image.size(0) && weight->size(1) == 1 &&
                    weight->size(2) == image.size(2) && weight->size(3) == image.size(3),
                "region_mean: weight must be (B, 1, H, W), got ", weight->sizes());
    TORCH_CHECK(weight->scalar_type() == image.scalar_type() && weight->device() == image.device(),
                "region_mean: weight must have the image's dtype and device");
  }
  RegionMeanSizes s;
  s.batch = image.size(0);
  s.channels = image.size(1);
  s.height = image.size(2);
  s.width = image.size(3);
  s.pixels = s.height * s.width;
  s.regions = num_regions;
  return s;
}

// Labels (B, H, W) seen as a (B, 1, H, W) tensor, so one Strides4 rule addresses every tensor.
inline at::Tensor labels_4d(const at::Tensor& labels) {
  return labels.unsqueeze(1);
}

// H * W when every tensor's pixels form one strided axis (see pixels_collapse), else W.
inline int64_t row_width(const RegionMeanSizes& z, std::initializer_list<const at::Tensor*> tensors) {
  for (const at::Tensor* t : tensors)
    if (t->defined() && !pixels_collapse(*t)) return z.width;
  return z.pixels;
}

inline Strides4 strides_or_zero(const at::Tensor& t) {
  return t.defined() ? strides_of(t) : Strides4{0, 0, 0, 0};
}

inline void check_backward_shapes(const at::Tensor& grad_painted, const std::optional<at::Tensor>& grad_means,
                                  const at::Tensor& image, const at::Tensor& means, const at::Tensor& totals,
                                  const RegionMeanSizes& z) {
  TORCH_CHECK(grad_painted.sizes() == image.sizes(), "region_mean: grad_painted must match image ", image.sizes(),
              ", got ", grad_painted.sizes());
  TORCH_CHECK(means.dim() == 3 && means.size(0) == z.batch && means.size(1) == z.regions && means.size(2) == z.channels,
              "region_mean: means must be (B, R, C), got ", means.sizes());
  TORCH_CHECK(totals.dim() == 2 && totals.size(0) == z.batch && totals.size(1) == z.regions,
              "region_mean: totals must be (B, R), got ", totals.sizes());
  if (grad_means)
    TORCH_CHECK(grad_means->sizes() == means.sizes(), "region_mean: grad_means must match means ", means.sizes(),
                ", got ", grad_means->sizes());
}

}  // namespace region_mean
}  // namespace refcolor
