// Torch glue of the segment_hint_colors CUDA kernels: checks, allocation, stream, dtype mapping.
// The kernels themselves are in segment_hint_colors_kernel.cu, which includes no torch headers.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "segment_hint_colors/cuda/segment_hint_colors_kernel.h"
#include "segment_hint_colors/segment_hint_colors_host.h"

namespace refcolor {
namespace {

cuda::DType kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return cuda::DType::Float32;
    case at::kDouble:
      return cuda::DType::Float64;
    case at::kHalf:
      return cuda::DType::Float16;
    case at::kBFloat16:
      return cuda::DType::BFloat16;
    default:
      TORCH_CHECK(false, "the CUDA kernel of segment_hint_colors takes float16/bfloat16/float32/float64, got ", t);
  }
}

cuda::SegmentHintShape kernel_shape(const SegmentHintSizes& z) {
  TORCH_CHECK(z.batch <= 65535, "the CUDA kernel of segment_hint_colors takes batches of at most 65535 (grid y), got ",
              z.batch);
  return {z.batch, z.segments, z.channels, z.pixels};
}

at::Tensor workspace(const SegmentHintSizes& z, const at::TensorOptions& acc) {
  return at::empty({cuda::segment_reduce_blocks(z.pixels) * z.batch * z.segments * (z.channels + 1)}, acc);
}

// Strides of every pixel tensor, and the row width: H * W (one flat pixel axis) when every tensor
// allows it, which saves the kernels a division per access.
SegmentHintLayout layout_of(const SegmentHintSizes& z, std::initializer_list<const at::Tensor*> tensors) {
  bool flat = true;
  for (const at::Tensor* t : tensors) flat = flat && pixels_collapse(*t);
  SegmentHintLayout l{};
  l.width = flat ? z.pixels : z.width;
  return l;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_cuda(const at::Tensor& segments,
                                                                        const at::Tensor& image,
                                                                        const at::Tensor& num_hints) {
  const SegmentHintSizes z = segment_hint_sizes(segments, image, num_hints);
  const c10::cuda::CUDAGuard guard(segments.device());
  const at::Tensor nh = num_hints.contiguous();
  const auto acc = segments.options().dtype(accumulate_type(segments.scalar_type()));
  at::Tensor hints = gradient_like(image);  // the image's layout
  at::Tensor mask = at::empty({z.batch, 1, z.height, z.width}, segments.options());
  at::Tensor colors = at::empty({z.batch, z.segments, z.channels}, acc);
  at::Tensor counts = at::empty({z.batch, z.segments}, acc);
  if (z.batch * z.pixels == 0) return {hints.zero_(), mask.zero_(), colors.zero_(), counts.zero_()};
  SegmentHintLayout layout = layout_of(z, {&segments, &image, &hints, &mask});
  layout.segments = strides_of(segments);
  layout.image = strides_of(image);
  layout.hints = strides_of(hints);
  layout.mask = strides_of(mask);
  at::Tensor ws = workspace(z, acc);
  const cudaError_t err = cuda::segment_hint_colors_forward(
      kernel_dtype(segments.scalar_type()), kernel_shape(z), layout, segments.data_ptr(), image.data_ptr(),
      nh.data_ptr<int64_t>(), hints.data_ptr(), mask.data_ptr(), colors.data_ptr(), counts.data_ptr(), ws.data_ptr(),
      c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "segment_hint_colors forward kernel failed: ", cudaGetErrorString(err));
  return {hints, mask, colors, counts};
}

std::tuple<at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad_hints, const at::Tensor& grad_mask,
                                                 const at::Tensor& segments, const at::Tensor& image,
                                                 const at::Tensor& num_hints, const at::Tensor& colors,
                                                 const at::Tensor& counts) {
  const SegmentHintSizes z = segment_hint_sizes(segments, image, num_hints);
  check_grad_shapes(grad_hints, grad_mask, image, z);
  const c10::cuda::CUDAGuard guard(segments.device());
  const at::Tensor nh = num_hints.contiguous();
  const auto acc = segments.options().dtype(accumulate_type(segments.scalar_type()));
  const at::Tensor gH = grad_hints.to(segments.scalar_type()), gM = grad_mask.to(segments.scalar_type());
  const at::Tensor col = colors.to(acc.dtype()).contiguous(), cnt = counts.to(acc.dtype()).contiguous();
  at::Tensor dS = gradient_like(segments), dY = gradient_like(image);
  if (z.batch * z.pixels == 0) return {dS.zero_(), dY.zero_()};
  SegmentHintLayout layout = layout_of(z, {&gH, &gM, &segments, &image, &dS, &dY});
  layout.hints = strides_of(gH);
  layout.mask = strides_of(gM);
  layout.segments = strides_of(segments);
  layout.image = strides_of(image);
  layout.grad_segments = strides_of(dS);
  layout.grad_image = strides_of(dY);
  at::Tensor ws = workspace(z, acc);
  at::Tensor grad_sum = at::empty({z.batch, z.segments, z.channels}, acc);
  at::Tensor grad_count = at::empty({z.batch, z.segments}, acc);
  const cudaError_t err = cuda::segment_hint_colors_backward(
      kernel_dtype(segments.scalar_type()), kernel_shape(z), layout, gH.data_ptr(), gM.data_ptr(), segments.data_ptr(),
      image.data_ptr(), nh.data_ptr<int64_t>(), col.data_ptr(), cnt.data_ptr(), dS.data_ptr(), dY.data_ptr(),
      ws.data_ptr(), grad_sum.data_ptr(), grad_count.data_ptr(), c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "segment_hint_colors backward kernel failed: ", cudaGetErrorString(err));
  return {dS, dY};
}

}  // namespace

TORCH_LIBRARY_IMPL(refcolor, CUDA, m) {
  m.impl("segment_hint_colors_forward_kernel", &forward_cuda);
  m.impl("segment_hint_colors_backward_kernel", &backward_cuda);
}

}  // namespace refcolor
