// Torch glue of the region_mean CUDA kernels: checks, allocation, stream, dtype mapping, and the
// determinism alert. The kernels themselves are in region_mean_kernel.cu (no torch headers).
#include <ATen/Context.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "region_mean/cuda/region_mean_kernel.h"
#include "region_mean/region_mean_host.h"

namespace refcolor {
namespace region_mean {
namespace {

cuda::RegionMeanDType kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return cuda::RegionMeanDType::Float32;
    case at::kDouble:
      return cuda::RegionMeanDType::Float64;
    case at::kHalf:
      return cuda::RegionMeanDType::Float16;
    case at::kBFloat16:
      return cuda::RegionMeanDType::BFloat16;
    default:
      TORCH_CHECK(false, "the CUDA kernel of region_mean takes float16/bfloat16/float32/float64, got ", t);
  }
}

cuda::RegionMeanShape kernel_shape(const RegionMeanSizes& z) {
  TORCH_CHECK(z.batch <= 65535, "the CUDA kernel of region_mean takes batches of at most 65535 (grid y), got ",
              z.batch);
  return {z.batch, z.channels, z.pixels, z.regions};
}

// The reductions add with float atomicAdd: torch's rule for such ops (an error under
// torch.use_deterministic_algorithms(True), a warning with warn_only=True). refcolor.ops.region_mean
// routes backend="auto" to the deterministic reference in that mode before it gets here.
void alert_atomics(const char* direction) {
  at::globalContext().alertNotDeterministic(direction);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cuda(const at::Tensor& image, const at::Tensor& labels,
                                                            const std::optional<at::Tensor>& weight,
                                                            int64_t num_regions) {
  const RegionMeanSizes z = region_mean_sizes(image, labels, weight, num_regions);
  alert_atomics("refcolor::region_mean_forward_kernel (cuda)");
  const c10::cuda::CUDAGuard guard(image.device());
  const auto acc = image.options().dtype(accumulate_type(image.scalar_type()));
  at::Tensor painted = gradient_like(image);  // the image's layout
  at::Tensor means = at::empty({z.batch, z.regions, z.channels}, acc);
  at::Tensor totals = at::empty({z.batch, z.regions}, acc);
  at::Tensor table = at::zeros({z.batch, z.regions, z.channels + 1}, acc);
  const at::Tensor labels4 = labels_4d(labels), w = weight ? *weight : at::Tensor();
  cuda::RegionMeanLayout layout{};
  layout.width = row_width(z, {&image, &labels4, &w, &painted});
  layout.image = strides_of(image);
  layout.labels = strides_of(labels4);
  layout.weight = strides_or_zero(w);
  layout.out = strides_of(painted);
  const cudaError_t err = cuda::region_mean_forward(
      kernel_dtype(image.scalar_type()), kernel_shape(z), layout, image.data_ptr(), labels.data_ptr<int64_t>(),
      w.defined() ? w.data_ptr() : nullptr, painted.data_ptr(), table.data_ptr(), means.data_ptr(), totals.data_ptr(),
      c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "region_mean forward kernel failed: ", cudaGetErrorString(err));
  return {painted, means, totals};
}

std::tuple<at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad_painted,
                                                 const std::optional<at::Tensor>& grad_means, const at::Tensor& image,
                                                 const at::Tensor& labels, const std::optional<at::Tensor>& weight,
                                                 const at::Tensor& means, const at::Tensor& totals, bool weight_grad) {
  const RegionMeanSizes z = region_mean_sizes(image, labels, weight, means.size(1));
  check_backward_shapes(grad_painted, grad_means, image, means, totals, z);
  alert_atomics("refcolor::region_mean_backward_kernel (cuda)");
  const c10::cuda::CUDAGuard guard(image.device());
  const auto acc = image.options().dtype(accumulate_type(image.scalar_type()));
  const at::Tensor gP = grad_painted.to(image.scalar_type());
  const at::Tensor mn = means.to(acc.dtype()).contiguous(), tot = totals.to(acc.dtype()).contiguous();
  const at::Tensor gm = grad_means ? grad_means->to(acc.dtype()).contiguous() : at::Tensor();
  const at::Tensor labels4 = labels_4d(labels), w = weight ? *weight : at::Tensor();
  at::Tensor dY = gradient_like(image);
  at::Tensor dw = weight && weight_grad ? gradient_like(*weight) : at::Tensor();
  at::Tensor table = at::zeros({z.batch, z.regions, z.channels + 1}, acc);
  at::Tensor grad_sum = at::empty({z.batch, z.regions, z.channels}, acc);
  at::Tensor grad_total = at::empty({z.batch, z.regions}, acc);
  cuda::RegionMeanLayout layout{};
  layout.width = row_width(z, {&gP, &image, &labels4, &w, &dY, &dw});
  layout.image = strides_of(image);
  layout.out = strides_of(gP);
  layout.labels = strides_of(labels4);
  layout.weight = strides_or_zero(w);
  layout.grad_image = strides_of(dY);
  layout.grad_weight = strides_or_zero(dw);
  const cudaError_t err = cuda::region_mean_backward(
      kernel_dtype(image.scalar_type()), kernel_shape(z), layout, gP.data_ptr(), gm.defined() ? gm.data_ptr() : nullptr,
      image.data_ptr(), labels.data_ptr<int64_t>(), w.defined() ? w.data_ptr() : nullptr, mn.data_ptr(), tot.data_ptr(),
      dY.data_ptr(), dw.defined() ? dw.data_ptr() : nullptr, table.data_ptr(), grad_sum.data_ptr(),
      grad_total.data_ptr(), c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "region_mean backward kernel failed: ", cudaGetErrorString(err));
  return {dY, dw.defined() ? dw : at::empty({0}, image.options())};
}

}  // namespace
}  // namespace region_mean

TORCH_LIBRARY_IMPL(refcolor, CUDA, m) {
  m.impl("region_mean_forward_kernel", &region_mean::forward_cuda);
  m.impl("region_mean_backward_kernel", &region_mean::backward_cuda);
}

}  // namespace refcolor
