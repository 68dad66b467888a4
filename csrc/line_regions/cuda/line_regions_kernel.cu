// CUDA kernels of line_regions (the steps of refcolor/ops/line_regions.py). No torch headers: this
// file builds with nvcc alone. Per sample:
//   1-2. line mask (sketch < threshold in the sketch's dtype), capped per-column distances (one
//        thread per column, down then up), kinds (line / core / margin) by the exact bounded-radius
//        test dx^2 + dy^2 <= floor((gap + 1)^2 / 4) over |dx| <= r;
//   3.   union-find labelling of the cores on pixel indices as in Playne & Hawick 2018: every core
//        pixel is united with its left and upper core neighbours by atomicMin on roots, so a root is
//        always the smallest pixel index of its component (= its first pixel in raster order);
//        then paths are flattened, roots flagged and counted by an exclusive scan, which numbers the
//        components in raster order of their first pixels;
//   4-6. growth by level-synchronous rounds (double-buffered: a pixel of the open kind takes the
//        smallest positive label among its 4-neighbours of the previous round), batches of rounds
//        until one changes nothing; slivers labelled as the cores; the line pixels;
//   7-8. area and first pixel per provisional label (atomics from the start of each row run), the
//        shared pixel edges when min_area asks for merges, and the merge and final numbering on the
//        host (line_regions_graph.h, the same code as the CPU kernel), then one gather to int64.
// The host waits on the stream for each count it needs (components, growth rounds, the graph).
// What each thread computes is in line_regions_cuda_logic.h, shared with the host emulation that
// the CPU tests run (tests/test_line_regions.py::test_cuda_logic_emulated_on_host).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "line_regions/cuda/line_regions_kernel.h"
#include "line_regions/line_regions_cuda_logic.h"
#include "line_regions/line_regions_graph.h"

namespace refcolor {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kScanThreads = 1024;
constexpr int kRoundsPerCheck = 8;    // growth rounds launched between two reads of the changed flag
constexpr int32_t kLine = INT32_MIN;  // a line pixel that growth has not reached yet
constexpr uint8_t kLineBit = 1;       // kind bytes: kLineBit, kCoreBit, or 0 for a margin pixel
constexpr uint8_t kCoreBit = 2;

int blocks_for(int64_t n, int threads = kThreads) {
  return static_cast<int>((n + threads - 1) / threads);
}

__device__ __forceinline__ double widen(float v) {
  return v;
}
__device__ __forceinline__ double widen(double v) {
  return v;
}
__device__ __forceinline__ double widen(__half v) {
  return __half2float(v);
}
__device__ __forceinline__ double widen(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// The threshold is exactly representable in T, so comparing widened values decides as T does.
template <typename T>
__global__ void __launch_bounds__(kThreads) line_kernel(const T* __restrict__ s, int64_t sr, int64_t sc, int H, int W,
                                                        double threshold, uint8_t* __restrict__ line) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= H * W) return;
  const int y = p / W, x = p - y * W;
  line[p] = widen(s[y * sr + x * sc]) < threshold;
}

__global__ void __launch_bounds__(kThreads)
    column_kernel(const uint8_t* __restrict__ line, int H, int W, int cap, int* __restrict__ vd) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  if (x < W) lr::column_distances(line, H, W, cap, vd, x);
}

__global__ void __launch_bounds__(kThreads)
    kind_kernel(const uint8_t* __restrict__ line, const int* __restrict__ vd, const int* __restrict__ h, int H, int W,
                int r, uint8_t* __restrict__ kind) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p < H * W) kind[p] = lr::kind_at(line, vd, h, W, r, p);
}

__global__ void __launch_bounds__(kThreads)
    core_mask_kernel(const uint8_t* __restrict__ kind, int n, uint8_t* __restrict__ mask) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p < n) mask[p] = kind[p] == kCoreBit;
}

// Slivers: margin pixels that growth did not reach (still 0).
__global__ void __launch_bounds__(kThreads)
    open_mask_kernel(const int* __restrict__ L, int n, uint8_t* __restrict__ mask) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p < n) mask[p] = L[p] == 0;
}

// ---- union-find (Playne & Hawick 2018) ---------------------------------------------------------

// Parents are read volatile: other threads relink roots while a path is walked.
struct VolatileRead {
  const int* parent;
  __device__ int operator()(int x) const { return static_cast<const volatile int*>(parent)[x]; }
};
struct AtomicMinParent {
  int* parent;
  __device__ int operator()(int at, int value) const { return atomicMin(&parent[at], value); }
};

__global__ void __launch_bounds__(kThreads)
    ccl_init_kernel(const uint8_t* __restrict__ mask, int n, int* __restrict__ parent) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p < n) parent[p] = mask[p] ? p : -1;
}

__global__ void __launch_bounds__(kThreads)
    ccl_merge_kernel(const uint8_t* __restrict__ mask, int H, int W, int* parent) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p < H * W) lr::merge_at(mask, H, W, VolatileRead{parent}, AtomicMinParent{parent}, p);
}

// Flattens every path to its root and flags the roots (the first pixel of each component).
__global__ void __launch_bounds__(kThreads)
    ccl_flatten_kernel(const uint8_t* __restrict__ mask, int n, int* parent, int* __restrict__ root_flag) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= n) return;
  if (!mask[p]) {
    root_flag[p] = 0;
    return;
  }
  const int root = lr::find_root(VolatileRead{parent}, p);
  parent[p] = root;
  root_flag[p] = root == p;
}

// Exclusive scan of `in` within blocks of kScanThreads; each block's total goes to sums.
__global__ void __launch_bounds__(kScanThreads)
    scan_blocks_kernel(const int* __restrict__ in, int n, int* __restrict__ out, int* __restrict__ sums) {
  __shared__ int buf[kScanThreads];
  const int i = blockIdx.x * kScanThreads + threadIdx.x;
  const int v = i < n ? in[i] : 0;
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int offset = 1; offset < kScanThreads; offset <<= 1) {
    const int t = threadIdx.x >= offset ? buf[threadIdx.x - offset] : 0;
    __syncthreads();
    buf[threadIdx.x] += t;
    __syncthreads();
  }
  if (i < n) out[i] = buf[threadIdx.x] - v;
  if (threadIdx.x == kScanThreads - 1) sums[blockIdx.x] = buf[threadIdx.x];
}

__global__ void __launch_bounds__(kScanThreads)
    scan_add_kernel(int* __restrict__ out, int n, const int* __restrict__ block_offsets) {
  const int i = blockIdx.x * kScanThreads + threadIdx.x;
  if (i < n) out[i] += block_offsets[blockIdx.x];
}

// Component number first + rank of its root among all roots, into L.
__global__ void __launch_bounds__(kThreads)
    ccl_number_kernel(const uint8_t* __restrict__ mask, const int* __restrict__ parent, const int* __restrict__ rank,
                      int n, int first, int* __restrict__ L) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p < n && mask[p]) L[p] = first + rank[parent[p]];
}

// Labels before growth: kLine on line pixels, 0 on margins (cores are numbered afterwards).
__global__ void __launch_bounds__(kThreads)
    init_labels_kernel(const uint8_t* __restrict__ kind, int n, int* __restrict__ L) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p < n) L[p] = kind[p] == kLineBit ? kLine : 0;
}

// One growth round (double-buffered, so every pixel reads the previous round).
__global__ void __launch_bounds__(kThreads)
    grow_kernel(const int* __restrict__ in, int* __restrict__ out, int H, int W, int open, int* __restrict__ changed) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= H * W) return;
  bool grew = false;
  out[p] = lr::grow_at(in, H, W, open, p, &grew);
  if (grew) *changed = 1;
}

// From the first pixel of each row run of one label: the label's first pixel, and its area.
__global__ void __launch_bounds__(kThreads)
    stats_kernel(const int* __restrict__ L, int H, int W, bool with_area, unsigned long long* __restrict__ area,
                 long long* __restrict__ first) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= H * W) return;
  const int length = lr::run_from(L, W, p);
  if (length == 0) return;
  atomicMin(&first[L[p]], static_cast<long long>(p));
  if (with_area) atomicAdd(&area[L[p]], static_cast<unsigned long long>(length));
}

// Pixel edges between different labels as keys (lr::edges_at); with keys == nullptr only counts them.
__global__ void __launch_bounds__(kThreads)
    edges_kernel(const int* __restrict__ L, int H, int W, unsigned long long* __restrict__ keys,
                 unsigned int* __restrict__ counter) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= H * W) return;
  unsigned long long mine[2];
  const int n = lr::edges_at(L, H, W, p, mine);
  for (int k = 0; k < n; ++k) {
    const unsigned int slot = atomicAdd(counter, 1u);
    if (keys) keys[slot] = mine[k];
  }
}

__global__ void __launch_bounds__(kThreads)
    output_kernel(const int* __restrict__ L, int n, const long long* __restrict__ final_label,
                  int64_t* __restrict__ out) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p < n) out[p] = final_label[L[p]];
}

// ---- host driver -------------------------------------------------------------------------------

#define LR_TRY(expr)                            \
  do {                                          \
    const cudaError_t lr_err_ = (expr);         \
    if (lr_err_ != cudaSuccess) return lr_err_; \
  } while (0)

// Device scratch freed (stream-ordered) when the driver returns, whatever path it takes.
struct Scratch {
  cudaStream_t stream;
  std::vector<void*> blocks;
  template <typename T>
  cudaError_t get(T** ptr, size_t count) {
    void* p = nullptr;
    const cudaError_t err = cudaMallocAsync(&p, std::max<size_t>(1, count) * sizeof(T), stream);
    if (err == cudaSuccess) blocks.push_back(p);
    *ptr = static_cast<T*>(p);
    return err;
  }
  ~Scratch() {
    for (void* p : blocks) cudaFreeAsync(p, stream);
  }
};

// Numbers the 4-connected components of `mask` first, first + 1, ... in raster order of their first
// pixels, into L (pixels outside the mask untouched). Returns the count in *count.
cudaError_t label_components(const uint8_t* mask, int H, int W, int first, int* L, int* parent, int* flag, int* rank,
                             Scratch& scratch, int64_t* count) {
  const int n = H * W, blocks = blocks_for(n), scan_blocks = blocks_for(n, kScanThreads);
  cudaStream_t s = scratch.stream;
  ccl_init_kernel<<<blocks, kThreads, 0, s>>>(mask, n, parent);
  ccl_merge_kernel<<<blocks, kThreads, 0, s>>>(mask, H, W, parent);
  ccl_flatten_kernel<<<blocks, kThreads, 0, s>>>(mask, n, parent, flag);
  int* sums = nullptr;
  LR_TRY(scratch.get(&sums, scan_blocks));
  scan_blocks_kernel<<<scan_blocks, kScanThreads, 0, s>>>(flag, n, rank, sums);
  std::vector<int> host(scan_blocks);
  LR_TRY(cudaMemcpyAsync(host.data(), sums, scan_blocks * sizeof(int), cudaMemcpyDeviceToHost, s));
  LR_TRY(cudaStreamSynchronize(s));
  int64_t total = 0;
  for (int& v : host) {
    const int64_t block_total = v;
    v = static_cast<int>(total);
    total += block_total;
  }
  LR_TRY(cudaMemcpyAsync(sums, host.data(), scan_blocks * sizeof(int), cudaMemcpyHostToDevice, s));
  scan_add_kernel<<<scan_blocks, kScanThreads, 0, s>>>(rank, n, sums);
  ccl_number_kernel<<<blocks, kThreads, 0, s>>>(mask, parent, rank, n, first, L);
  LR_TRY(cudaGetLastError());
  LR_TRY(cudaStreamSynchronize(s));  // `host` is read by the copy above until here
  *count = total;
  return cudaSuccess;
}

// Growth rounds into `open` pixels until a batch of rounds changes nothing; *L ends up pointing at
// the buffer holding the result (the other one is scratch).
cudaError_t grow(int** L, int** other, int H, int W, int open, int* changed, cudaStream_t s) {
  const int blocks = blocks_for(int64_t(H) * W);
  while (true) {
    LR_TRY(cudaMemsetAsync(changed, 0, sizeof(int), s));
    for (int k = 0; k < kRoundsPerCheck; ++k) {
      grow_kernel<<<blocks, kThreads, 0, s>>>(*L, *other, H, W, open, changed);
      std::swap(*L, *other);
    }
    LR_TRY(cudaGetLastError());
    int host = 0;
    LR_TRY(cudaMemcpyAsync(&host, changed, sizeof(int), cudaMemcpyDeviceToHost, s));
    LR_TRY(cudaStreamSynchronize(s));
    if (!host) return cudaSuccess;
  }
}

template <typename T>
void launch_line(const void* sketch, int64_t sr, int64_t sc, int H, int W, double threshold, uint8_t* line,
                 cudaStream_t s) {
  line_kernel<T>
      <<<blocks_for(int64_t(H) * W), kThreads, 0, s>>>(static_cast<const T*>(sketch), sr, sc, H, W, threshold, line);
}

}  // namespace

cudaError_t line_regions_sample(LineDType dtype, const void* sketch, int64_t row_stride, int64_t col_stride,
                                int64_t height, int64_t width, double threshold, int64_t gap, int64_t min_area,
                                int64_t* out, cudaStream_t stream) {
  const int H = static_cast<int>(height), W = static_cast<int>(width), n = H * W, blocks = blocks_for(n);
  Scratch scratch{stream, {}};
  uint8_t *line = nullptr, *kind = nullptr, *mask = nullptr;
  int *A = nullptr, *B = nullptr, *parent = nullptr, *flag = nullptr, *rank = nullptr, *changed = nullptr;
  LR_TRY(scratch.get(&line, n));
  LR_TRY(scratch.get(&kind, n));
  LR_TRY(scratch.get(&mask, n));
  LR_TRY(scratch.get(&A, n));
  LR_TRY(scratch.get(&B, n));
  LR_TRY(scratch.get(&parent, n));
  LR_TRY(scratch.get(&flag, n));
  LR_TRY(scratch.get(&rank, n));
  LR_TRY(scratch.get(&changed, 1));

  switch (dtype) {
    case LineDType::Float32:
      launch_line<float>(sketch, row_stride, col_stride, H, W, threshold, line, stream);
      break;
    case LineDType::Float64:
      launch_line<double>(sketch, row_stride, col_stride, H, W, threshold, line, stream);
      break;
    case LineDType::Float16:
      launch_line<__half>(sketch, row_stride, col_stride, H, W, threshold, line, stream);
      break;
    case LineDType::BFloat16:
      launch_line<__nv_bfloat16>(sketch, row_stride, col_stride, H, W, threshold, line, stream);
      break;
  }
  // Step 2. r = 0 (gap 0): every non-line pixel is a core; the distances are not needed.
  const int64_t R2 = gap > 0 ? line_regions_near_radius2(gap) : 0;
  const int r = static_cast<int>(std::min<int64_t>(line_regions_isqrt(R2), height + width));
  std::vector<int> h(r + 1);
  for (int d = 0; d <= r; ++d) h[d] = static_cast<int>(std::min<int64_t>(line_regions_isqrt(R2 - int64_t(d) * d), r));
  int* h_dev = nullptr;
  LR_TRY(scratch.get(&h_dev, r + 1));
  LR_TRY(cudaMemcpyAsync(h_dev, h.data(), (r + 1) * sizeof(int), cudaMemcpyHostToDevice, stream));
  if (r > 0) column_kernel<<<blocks_for(W), kThreads, 0, stream>>>(line, H, W, r + 1, A);
  kind_kernel<<<blocks, kThreads, 0, stream>>>(line, A, h_dev, H, W, r, kind);
  // Step 3.
  init_labels_kernel<<<blocks, kThreads, 0, stream>>>(kind, n, B);
  core_mask_kernel<<<blocks, kThreads, 0, stream>>>(kind, n, mask);
  int64_t cores = 0, slivers = 0;
  LR_TRY(label_components(mask, H, W, 1, B, parent, flag, rank, scratch, &cores));
  int *L = B, *other = A;
  // Steps 4-5.
  LR_TRY(grow(&L, &other, H, W, 0, changed, stream));
  open_mask_kernel<<<blocks, kThreads, 0, stream>>>(L, n, mask);
  LR_TRY(label_components(mask, H, W, static_cast<int>(cores + 1), L, parent, flag, rank, scratch, &slivers));
  const int64_t count = cores + slivers;
  if (count == 0) return cudaMemsetAsync(out, 0, sizeof(int64_t) * n, stream);  // nothing but lines
  // Step 6.
  LR_TRY(grow(&L, &other, H, W, kLine, changed, stream));

  // Steps 7-8.
  const bool graph = min_area > 1 && count > 1;
  unsigned long long* area = nullptr;
  long long* first = nullptr;
  LR_TRY(scratch.get(&area, count + 1));
  LR_TRY(scratch.get(&first, count + 1));
  LR_TRY(cudaMemsetAsync(area, 0, sizeof(unsigned long long) * (count + 1), stream));
  LR_TRY(cudaMemsetAsync(first, 0x7f, sizeof(long long) * (count + 1), stream));  // a huge first pixel
  stats_kernel<<<blocks, kThreads, 0, stream>>>(L, H, W, graph, area, first);
  std::vector<int64_t> host_area(graph ? count + 1 : 0), host_first(count + 1);
  std::vector<RegionEdges> edges;
  if (graph) {
    unsigned int* counter = nullptr;
    LR_TRY(scratch.get(&counter, 1));
    LR_TRY(cudaMemsetAsync(counter, 0, sizeof(unsigned int), stream));
    edges_kernel<<<blocks, kThreads, 0, stream>>>(L, H, W, nullptr, counter);
    unsigned int total = 0;
    LR_TRY(cudaMemcpyAsync(&total, counter, sizeof(total), cudaMemcpyDeviceToHost, stream));
    LR_TRY(cudaStreamSynchronize(stream));
    unsigned long long* keys = nullptr;
    LR_TRY(scratch.get(&keys, total));
    LR_TRY(cudaMemsetAsync(counter, 0, sizeof(unsigned int), stream));
    edges_kernel<<<blocks, kThreads, 0, stream>>>(L, H, W, keys, counter);
    std::vector<unsigned long long> host_keys(total);
    LR_TRY(cudaMemcpyAsync(host_keys.data(), keys, sizeof(unsigned long long) * total, cudaMemcpyDeviceToHost, stream));
    LR_TRY(cudaMemcpyAsync(host_area.data(), area, sizeof(int64_t) * (count + 1), cudaMemcpyDeviceToHost, stream));
    LR_TRY(cudaMemcpyAsync(host_first.data(), first, sizeof(int64_t) * (count + 1), cudaMemcpyDeviceToHost, stream));
    LR_TRY(cudaStreamSynchronize(stream));
    // The kernel's order depends on scheduling; sorted, repeats of a pair become one count.
    std::sort(host_keys.begin(), host_keys.end());
    for (size_t i = 0; i < host_keys.size();) {
      size_t j = i;
      while (j < host_keys.size() && host_keys[j] == host_keys[i]) ++j;
      edges.push_back({static_cast<int32_t>(host_keys[i] >> 32), static_cast<int32_t>(host_keys[i] & 0xffffffffu),
                       static_cast<int64_t>(j - i)});
      i = j;
    }
  } else {
    LR_TRY(cudaMemcpyAsync(host_first.data(), first, sizeof(int64_t) * (count + 1), cudaMemcpyDeviceToHost, stream));
    LR_TRY(cudaStreamSynchronize(stream));
  }
  const std::vector<int64_t> final_label =
      line_regions_final_labels(count, std::move(host_area), host_first, edges, min_area);
  long long* final_dev = nullptr;
  LR_TRY(scratch.get(&final_dev, count + 1));
  LR_TRY(cudaMemcpyAsync(final_dev, final_label.data(), sizeof(int64_t) * (count + 1), cudaMemcpyHostToDevice, stream));
  output_kernel<<<blocks, kThreads, 0, stream>>>(L, n, final_dev, out);
  LR_TRY(cudaGetLastError());
  return cudaStreamSynchronize(stream);  // final_label (host memory) is read by the copy until here
}

}  // namespace cuda
}  // namespace refcolor
