#pragma once
// Host-side checks and allocation shared by the CPU and CUDA glue (torch headers allowed here,
// never in .cu).
#include <ATen/ATen.h>

namespace refcolor {

struct ScftSizes {
  int64_t batch, queries, keys, dim, value_dim;
};

// Safety net only: refcolor.ops.scft_attention validates with user-facing messages first.
inline ScftSizes scft_sizes(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  TORCH_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3, "q, k, v must be (B, N, d), (B, M, d), (B, M, dv), got ",
              q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(k.size(0) == q.size(0) && v.size(0) == q.size(0) && k.size(2) == q.size(2) && v.size(1) == k.size(1),
              "q, k, v must be (B, N, d), (B, M, d), (B, M, dv), got ", q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), "q, k, v must share a dtype");
  TORCH_CHECK(k.device() == q.device() && v.device() == q.device(), "q, k, v must be on one device");
  return {q.size(0), q.size(1), k.size(1), q.size(2), v.size(2)};
}

inline void check_residual(const at::Tensor& residual, const at::Tensor& q, const ScftSizes& z) {
  TORCH_CHECK(residual.dim() == 3 && residual.size(0) == z.batch && residual.size(1) == z.queries &&
                  residual.size(2) == z.value_dim,
              "residual must be (B, N, dv), got ", residual.sizes());
  TORCH_CHECK(residual.scalar_type() == q.scalar_type() && residual.device() == q.device(),
              "residual must match q's dtype and device");
}

inline void check_probs(const at::Tensor& probs, const at::Tensor& grad_out, const ScftSizes& z) {
  TORCH_CHECK(probs.dim() == 3 && probs.size(0) == z.batch && probs.size(1) == z.queries && probs.size(2) == z.keys &&
                  probs.is_contiguous(),
              "probs must be the forward's contiguous (B, N, M) probabilities, got ", probs.sizes());
  TORCH_CHECK(grad_out.dim() == 3 && grad_out.size(0) == z.batch && grad_out.size(1) == z.queries &&
                  grad_out.size(2) == z.value_dim,
              "grad_out must be (B, N, dv), got ", grad_out.sizes());
  TORCH_CHECK(probs.scalar_type() == grad_out.scalar_type() && probs.device() == grad_out.device(),
              "probs and grad_out must match q's dtype and device");
}

// A result "like" an input: its strides when they form a dense layout (a transposed or permuted
// view), so that the result flows back through the view that made the input without a copy (and
// autograd's AccumulateGrad keeps it as is); contiguous otherwise (a sliced view).
inline at::Tensor empty_in_layout_of(const at::Tensor& like) {
  return at::empty_like(like, at::MemoryFormat::Preserve);
}

// A column-major result (the last two dims transposed: what an input viewed through a transpose
// gets from empty_in_layout_of) is computed as its transpose, out^T = b^T a^T, which is row-major:
// measured on CPU, ATen's bmm into a column-major (4, 1024, 64) output took 7x the time of the same
// product into a row-major one (157 vs 22 ms, 2 threads), and mm into a column-major block 1.25x.
inline bool column_major(const at::Tensor& out) {
  const int64_t r = out.dim() - 2, c = out.dim() - 1;
  return out.stride(c) != 1 && out.stride(r) == 1;
}

inline at::Tensor last_two_swapped(const at::Tensor& t) {
  return t.transpose(t.dim() - 2, t.dim() - 1);
}

// out = a b (2-D or batched 3-D), written straight into `out` whatever its dense layout.
inline void matmul_into(at::Tensor out, const at::Tensor& a, const at::Tensor& b) {
  if (column_major(out)) return matmul_into(last_two_swapped(out), last_two_swapped(b), last_two_swapped(a));
  if (out.dim() == 3) {
    at::bmm_out(out, a, b);
  } else {
    at::mm_out(out, a, b);
  }
}

// out = self + a b (self may be out itself: an accumulation). With self distinct, ATen copies it
// into out and runs the GEMM with beta = 1, so the add costs no pass of its own.
inline void matmul_add_into(at::Tensor out, const at::Tensor& self, const at::Tensor& a, const at::Tensor& b) {
  if (column_major(out))
    return matmul_add_into(last_two_swapped(out), last_two_swapped(self), last_two_swapped(b), last_two_swapped(a));
  if (out.dim() == 3) {
    at::baddbmm_out(out, self, a, b);
  } else {
    at::addmm_out(out, self, a, b);
  }
}

// out = residual + P v, or P v: one GEMM into the residual's layout.
inline at::Tensor attention_output(const at::Tensor& probs, const at::Tensor& v,
                                   const c10::optional<at::Tensor>& residual, const ScftSizes& z) {
  if (residual.has_value()) {
    at::Tensor out = empty_in_layout_of(*residual);
    matmul_add_into(out, *residual, probs, v);
    return out;
  }
  at::Tensor out = at::empty({z.batch, z.queries, z.value_dim}, v.options());
  matmul_into(out, probs, v);
  return out;
}

}  // namespace refcolor
