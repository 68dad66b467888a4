// Torch glue of the tps_warp CUDA kernels: checks, allocation, stream, dtype mapping. The kernels
// are in tps_warp_kernel.cu, which includes no torch headers.
#include <ATen/Context.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "tps_warp/cuda/tps_warp_kernel.h"
#include "tps_warp/tps_warp_host.h"

namespace refcolor {
namespace {

cuda::TpsDType kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return cuda::TpsDType::Float32;
    case at::kDouble:
      return cuda::TpsDType::Float64;
    case at::kHalf:
      return cuda::TpsDType::Float16;
    case at::kBFloat16:
      return cuda::TpsDType::BFloat16;
    default:
      TORCH_CHECK(false, "the CUDA kernel of tps_warp takes float16/bfloat16/float32/float64, got ", t);
  }
}

at::ScalarType compute_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

cuda::TpsWarpShape kernel_shape(const TpsWarpSizes& z) {
  TORCH_CHECK(z.batch <= 65535, "the CUDA kernel of tps_warp takes batches of at most 65535 (grid y), got ", z.batch);
  return {z.batch, z.channels, z.height, z.width, z.points};
}

at::Tensor forward_cuda(const at::Tensor& image, const at::Tensor& params, const at::Tensor& ctrl,
                        int64_t padding_mode) {
  const TpsWarpSizes z = tps_warp_sizes(image, params, ctrl, padding_mode);
  const c10::cuda::CUDAGuard guard(image.device());
  const auto acc = compute_type(image.scalar_type());
  const at::Tensor p = params.to(acc).contiguous(), c = ctrl.to(acc).contiguous();  // (B, K + 3, 2): small
  at::Tensor out = at::empty_like(image);                                           // the image's layout
  if (image.numel() == 0) return out;
  const cudaError_t err =
      cuda::tps_warp_forward(kernel_dtype(image.scalar_type()), kernel_shape(z), image.data_ptr(),
                             tps_strides_of(image), p.data_ptr(), c.data_ptr(), out.data_ptr(), tps_strides_of(out),
                             static_cast<int>(padding_mode), c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "tps_warp forward kernel failed: ", cudaGetErrorString(err));
  return out;
}

at::Tensor backward_cuda(const at::Tensor& grad_out, const at::Tensor& image, const at::Tensor& params,
                         const at::Tensor& ctrl, int64_t padding_mode) {
  const TpsWarpSizes z = tps_warp_sizes(grad_out, params, ctrl, padding_mode);
  check_same_shape(grad_out, image);
  // Overlapping taps are summed with atomicAdd: the rounding depends on the threads' order.
  at::globalContext().alertNotDeterministic("tps_warp_backward_kernel (CUDA, atomicAdd)");
  const c10::cuda::CUDAGuard guard(grad_out.device());
  const auto acc = compute_type(grad_out.scalar_type());
  const at::Tensor p = params.to(acc).contiguous(), c = ctrl.to(acc).contiguous();
  // Accumulated in float32 (float64 for float64) in the image's layout; for float32 images that
  // buffer is the gradient itself.
  at::Tensor grad_acc = at::zeros_like(image, image.options().dtype(acc));
  if (image.numel() == 0) return grad_acc.to(grad_out.scalar_type());
  const cudaError_t err = cuda::tps_warp_backward(
      kernel_dtype(grad_out.scalar_type()), kernel_shape(z), grad_out.data_ptr(), tps_strides_of(grad_out),
      p.data_ptr(), c.data_ptr(), grad_acc.data_ptr(), tps_strides_of(grad_acc), static_cast<int>(padding_mode),
      c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "tps_warp backward kernel failed: ", cudaGetErrorString(err));
  return grad_acc.to(grad_out.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(refcolor, CUDA, m) {
  m.impl("tps_warp_forward_kernel", &forward_cuda);
  m.impl("tps_warp_backward_kernel", &backward_cuda);
}

}  // namespace refcolor
