// C++ CPU kernels of scft_attention: the six GEMMs by torch's BLAS (MKL / OpenBLAS through
// at::bmm / at::mm, which take transposed and row-strided operands as they are), and two fused
// row passes written here.
//
// Why GEMMs and not a tiled online-softmax (flash) kernel: the op's cost is six GEMMs of 2 B N M d
// FLOPs each (two forward, four backward); every implementation does them, so their time alone is
// the floor. A flash kernel keeps no N x M matrix, so its backward recomputes S = q k^T: seven GEMMs,
// >= 7/6 = 1.17x the floor even with MKL-speed tiles, above the 1.15x target at every d. Saving
// P = softmax(scale S) costs one (B, N, M) matrix, which is the memory budget. What is left to win
// is the naive path's extra passes over N x M matrices (measured: 1.40x the floor at d = 992,
// 1.63-1.65x at d = 64-256): torch scales S, softmaxes into a new matrix, and in the backward
// writes dP, the softmax gradient and its scaled copy as three more matrices. Here:
//   forward:  per block of rows, P = q k^T (GEMM), softmax(scale P) in place (one fused pass,
//             the rows in cache), out = residual + P v (GEMM with beta = 1 into a copy of the
//             residual).
//   backward: dV = P^T dO (GEMM); then per sample and block of rows sized to stay in cache,
//             dP_block = dO_block v^T (GEMM into a small scratch), dS = scale P (dP - rowsum(P dP))
//             over it (fused pass, dP still in cache), dQ_block = dS_block k and
//             dK += dS_block^T q_block (GEMMs). Peak: P plus a few MB of scratch.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "scft_attention/scft_attention_host.h"
#include "scft_attention/scft_attention_math.h"

namespace refcolor {
namespace {

// Reductions keep kLanes partial results in a local array, a pattern GCC vectorises without
// -ffast-math (a single running max or sum is a serial dependency it may not reorder).
constexpr int64_t kLanes = 16;

template <typename T>
REFCOLOR_FORCE_INLINE T row_max_scaled(const T* __restrict__ row, int64_t M, T scale) {
  T lanes[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) lanes[l] = -std::numeric_limits<T>::infinity();
  int64_t j = 0;
  for (; j + kLanes <= M; j += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) {
      const T x = scale * row[j + l];
      lanes[l] = x > lanes[l] ? x : lanes[l];
    }
  T best = -std::numeric_limits<T>::infinity();
  for (; j < M; ++j) best = std::max(best, scale * row[j]);
  for (int64_t l = 0; l < kLanes; ++l) best = std::max(best, lanes[l]);
  return best;
}

// P = softmax(scale * S) over one row, in place: max, then exp and sum, then normalise; the row
// (at most tens of KB) stays in L1/L2 between the three sweeps, so memory sees one read and one write.
template <typename T>
REFCOLOR_FORCE_INLINE void softmax_row_impl(T* __restrict__ row, int64_t M, T scale) {
  const T shift = row_max_scaled(row, M, scale);
  T lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= M; j += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) {
      const T e = exp_nonpositive(scale * row[j + l] - shift);
      row[j + l] = e;
      lanes[l] += e;
    }
  T total = 0;
  for (; j < M; ++j) {
    const T e = exp_nonpositive(scale * row[j] - shift);
    row[j] = e;
    total += e;
  }
  for (int64_t l = 0; l < kLanes; ++l) total += lanes[l];
  const T inv = T(1) / total;
  for (j = 0; j < M; ++j) row[j] *= inv;
}

// dS = scale * P * (dP - rowsum(P * dP)) over one row, written over dP.
template <typename T>
REFCOLOR_FORCE_INLINE void softmax_grad_row_impl(const T* __restrict__ p, T* __restrict__ dp, int64_t M, T scale) {
  T lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= M; j += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += p[j + l] * dp[j + l];
  T delta = 0;
  for (; j < M; ++j) delta += p[j] * dp[j];
  for (int64_t l = 0; l < kLanes; ++l) delta += lanes[l];
  for (j = 0; j < M; ++j) dp[j] = softmax_grad_element(p[j], dp[j], delta, scale);
}

// Per-dtype entry points over a range of rows, cloned for AVX2+FMA and baseline x86-64 (macros.h).
REFCOLOR_CPU_CLONES void softmax_rows(float* rows, int64_t count, int64_t M, float scale) {
  for (int64_t i = 0; i < count; ++i) softmax_row_impl(rows + i * M, M, scale);
}
REFCOLOR_CPU_CLONES void softmax_rows(double* rows, int64_t count, int64_t M, double scale) {
  for (int64_t i = 0; i < count; ++i) softmax_row_impl(rows + i * M, M, scale);
}
REFCOLOR_CPU_CLONES void softmax_grad_rows(const float* p, float* dp, int64_t count, int64_t M, float scale) {
  for (int64_t i = 0; i < count; ++i) softmax_grad_row_impl(p + i * M, dp + i * M, M, scale);
}
REFCOLOR_CPU_CLONES void softmax_grad_rows(const double* p, double* dp, int64_t count, int64_t M, double scale) {
  for (int64_t i = 0; i < count; ++i) softmax_grad_row_impl(p + i * M, dp + i * M, M, scale);
}

// Rows of one task: a block of ~2 MB of the (N, M) matrix (float32), so that the row passes find
// what the task's GEMM just wrote still in cache; at least 128 rows: measured single-threaded at
// N = M = 4096, d = 256, 64-row GEMMs took 1.2x the time of one batched GEMM, 128 to 512 rows 1.0x.
int64_t block_rows(int64_t N, int64_t M) {
  return std::min(N, std::max<int64_t>(128, (int64_t(1) << 19) / M));
}

// The backward's blocks are 4x taller (~8 MB, in L3): besides dQ_block, each block adds
// dS_block^T q_block into dK, a GEMM whose depth is the block height and which reads and writes all
// of dK (M x d) per block; 128-row blocks made the backward 1.2x its GEMMs at N = M = 4096, d = 256.
int64_t backward_block_rows(int64_t N, int64_t M) {
  return std::min(N, std::max<int64_t>(128, (int64_t(1) << 21) / M));
}

void check_cpu(const at::Tensor& q) {
  TORCH_CHECK(q.device().is_cpu(), "the C++ CPU kernel of scft_attention takes CPU tensors, got ", q.device());
  TORCH_CHECK(q.scalar_type() == at::kFloat || q.scalar_type() == at::kDouble,
              "the C++ CPU kernel of scft_attention takes float32/float64, got ", q.scalar_type());
}

// Runs task(b, row0, rows, thread) for every block of rows of every sample, in one parallel region.
// One region, not one per GEMM: on a busy machine each region's barrier can wait a scheduler slice
// (measured here: a 256 x 64 x 1024 at::mm took 40 ms on two shared cores, 20 of its 33 MFLOP
// worth of time). Inside the region at::mm runs single-threaded (ATen and MKL do not nest).
template <typename Task>
void for_each_row_block(int64_t B, int64_t N, int64_t block, const Task& task) {
  const int64_t blocks = (N + block - 1) / block;
  // The caller's dispatcher state (autograd keys excluded inside this op, grad mode) for the
  // worker threads too: without it their at::mm would see q's requires_grad and refuse out=.
  const at::ThreadLocalState caller;
  at::parallel_for(0, B * blocks, 1, [&](int64_t begin, int64_t end) {
    const at::ThreadLocalStateGuard same_state(caller);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / blocks, row0 = (t % blocks) * block;
      task(b, row0, std::min(block, N - row0));
    }
  });
}

// Forward, per block of rows (all row-local): P_block = q_block k^T (GEMM straight into P, or into
// a per-thread scratch when no backward needs P), softmax in place while the block is in cache,
// out_block = residual_block + P_block v.
std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                               const c10::optional<at::Tensor>& residual, double scale,
                                               bool keep_probs) {
  const ScftSizes z = scft_sizes(q, k, v);
  check_cpu(q);
  if (residual.has_value()) check_residual(*residual, q, z);
  const int64_t N = z.queries, M = z.keys;
  const int64_t block = block_rows(N, M);
  at::Tensor probs = keep_probs ? at::empty({z.batch, N, M}, q.options()) : at::empty({0}, q.options());
  // No transparent-huge-page advice here, unlike segment_hint_colors' gradient (cpu_memory.h):
  // measured under glibc's malloc (B=2, N=M=4096, d=256, fwd+bwd), huge pages on this buffer cost
  // 1.77-1.90x the GEMM floor against 1.12-1.14x with 4 KB pages (benchmarks/results/*-floors.md).
  at::Tensor scratch = at::empty({keep_probs ? 0 : at::get_num_threads(), block, M}, q.options());
  at::Tensor out =
      residual.has_value() ? empty_in_layout_of(*residual) : at::empty({z.batch, N, z.value_dim}, v.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "scft_attention_forward_cpu", [&] {
    for_each_row_block(z.batch, N, block, [&](int64_t b, int64_t row0, int64_t rows) {
      at::Tensor p = keep_probs ? probs[b].narrow(0, row0, rows) : scratch[at::get_thread_num()].narrow(0, 0, rows);
      at::Tensor o = out[b].narrow(0, row0, rows);
      at::mm_out(p, q[b].narrow(0, row0, rows), k[b].t());
      softmax_rows(p.data_ptr<scalar_t>(), rows, M, static_cast<scalar_t>(scale));
      if (residual.has_value()) {
        matmul_add_into(o, (*residual)[b].narrow(0, row0, rows), p, v[b]);
      } else {
        matmul_into(o, p, v[b]);
      }
    });
  });
  return {out, probs};
}

// Backward: dV = P^T dO (one batched GEMM: it sums over all rows). Then per block of rows, all
// while the block is in cache: dP_block = dO_block v^T into a per-worker scratch, dS_block over it,
// dQ_block = dS_block k, and dK += dS_block^T q_block. dS never exists as a whole, and P is left
// intact (so the graph can be differentiated again, and torch.compile sees no mutation).
//
// dK sums over the blocks of a sample: each worker owns a contiguous range of (sample, block)
// tasks; samples whose blocks all fall in one range accumulate straight into grad_k, the (at most
// two) samples a range shares with its neighbours accumulate into that worker's private partials,
// added up after the parallel region. Deterministic for a given thread count.
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad_out, const at::Tensor& q,
                                                            const at::Tensor& k, const at::Tensor& v,
                                                            const at::Tensor& probs, double scale) {
  const ScftSizes z = scft_sizes(q, k, v);
  check_cpu(q);
  check_probs(probs, grad_out, z);
  const int64_t B = z.batch, N = z.queries, M = z.keys, block = backward_block_rows(N, M);
  const int64_t blocks = (N + block - 1) / block, tasks = B * blocks;
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), tasks);
  at::Tensor grad_v = empty_in_layout_of(v), grad_q = empty_in_layout_of(q), grad_k = empty_in_layout_of(k);
  matmul_into(grad_v, probs.transpose(1, 2), grad_out);
  at::Tensor scratch = at::empty({workers, block, M}, probs.options());
  at::Tensor partials = at::empty({workers, 2, M, z.dim}, k.options());
  auto range_begin = [&](int64_t w) { return w * tasks / workers; };
  const at::ThreadLocalState caller;  // see for_each_row_block
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "scft_attention_backward_cpu", [&] {
    at::parallel_for(0, workers, 1, [&](int64_t w_begin, int64_t w_end) {
      const at::ThreadLocalStateGuard same_state(caller);
      for (int64_t w = w_begin; w < w_end; ++w) {
        const int64_t t0 = range_begin(w), t1 = range_begin(w + 1);
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t b = t / blocks, row0 = (t % blocks) * block, rows = std::min(block, N - row0);
          const at::Tensor p = probs[b].narrow(0, row0, rows), q_rows = q[b].narrow(0, row0, rows);
          at::Tensor ds = scratch[w].narrow(0, 0, rows), dq = grad_q[b].narrow(0, row0, rows);
          at::mm_out(ds, grad_out[b].narrow(0, row0, rows), v[b].t());
          softmax_grad_rows(p.data_ptr<scalar_t>(), ds.data_ptr<scalar_t>(), rows, M, static_cast<scalar_t>(scale));
          matmul_into(dq, ds, k[b]);
          const bool owned = t0 <= b * blocks && (b + 1) * blocks <= t1;
          at::Tensor dk = owned ? grad_k[b] : partials[w][b == t0 / blocks ? 0 : 1];
          if (t == t0 || t % blocks == 0) {  // the first block of this sample in this range
            matmul_into(dk, ds.t(), q_rows);
          } else {
            matmul_add_into(dk, dk, ds.t(), q_rows);
          }
        }
      }
    });
  });
  // The shared samples: the sum of the partials of the workers that touched them, in worker order.
  for (int64_t b = 0; b < B; ++b) {
    bool first = true;
    for (int64_t w = 0; w < workers; ++w) {
      const int64_t t0 = range_begin(w), t1 = range_begin(w + 1);
      const bool touches = t0 < (b + 1) * blocks && b * blocks < t1;
      const bool owned = t0 <= b * blocks && (b + 1) * blocks <= t1;
      if (!touches || owned) continue;
      const at::Tensor part = partials[w][b == t0 / blocks ? 0 : 1];
      at::Tensor dk = grad_k[b];
      if (first)
        dk.copy_(part);
      else
        dk.add_(part);
      first = false;
    }
  }
  return {grad_q, grad_k, grad_v};
}

}  // namespace

TORCH_LIBRARY_IMPL(refcolor, CPU, m) {
  m.impl("scft_attention_forward_kernel", &forward_cpu);
  m.impl("scft_attention_backward_kernel", &backward_cpu);
}

}  // namespace refcolor
