// Test-only: the line_regions CUDA kernels run on the host, kernel by kernel, with each thread's work
// taken from line_regions_cuda_logic.h (the code the .cu kernels call) and the launches as loops:
// one pass over every pixel (or column) per kernel, in the order line_regions_sample launches them,
// growth rounds double-buffered in batches as on the device, the scan and the region graph as there.
// The loops run threads one after another, so the atomics are plain reads and writes here; what
// this checks is everything else (the kinds, the union-find and its numbering, growth, statistics,
// edges, the graph) against the reference (tests/test_line_regions.py).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "line_regions/line_regions_cuda_logic.h"
#include "line_regions/line_regions_graph.h"
#include "line_regions/line_regions_host.h"

namespace refcolor {
namespace {

constexpr int kRoundsPerCheck = 8;  // as line_regions_kernel.cu

struct HostRead {
  const std::vector<int>* parent;
  int operator()(int x) const { return (*parent)[x]; }
};
struct HostAtomicMin {
  std::vector<int>* parent;
  int operator()(int at, int value) const {
    const int old = (*parent)[at];
    (*parent)[at] = std::min(old, value);
    return old;
  }
};

// label_components of the .cu file: init, merge, flatten + root flags, exclusive scan, numbering.
int64_t label_components(const std::vector<uint8_t>& mask, int H, int W, int first, std::vector<int>& L) {
  const int n = H * W;
  std::vector<int> parent(n), flag(n), rank(n);
  for (int p = 0; p < n; ++p) parent[p] = mask[p] ? p : -1;
  for (int p = 0; p < n; ++p) lr::merge_at(mask.data(), H, W, HostRead{&parent}, HostAtomicMin{&parent}, p);
  for (int p = 0; p < n; ++p) {
    if (!mask[p]) {
      flag[p] = 0;
      continue;
    }
    const int root = lr::find_root(HostRead{&parent}, p);
    parent[p] = root;
    flag[p] = root == p;
  }
  int64_t total = 0;
  for (int p = 0; p < n; ++p) {
    rank[p] = static_cast<int>(total);
    total += flag[p];
  }
  for (int p = 0; p < n; ++p)
    if (mask[p]) L[p] = first + rank[parent[p]];
  return total;
}

void grow(std::vector<int>& L, std::vector<int>& other, int H, int W, int open) {
  while (true) {
    bool changed = false;
    for (int k = 0; k < kRoundsPerCheck; ++k) {
      for (int p = 0; p < H * W; ++p) {
        bool grew = false;
        other[p] = lr::grow_at(L.data(), H, W, open, p, &grew);
        changed = changed || grew;
      }
      L.swap(other);
    }
    if (!changed) return;
  }
}

void emulate_sample(const double* values, int H, int W, double threshold, int64_t gap, int64_t min_area, int64_t* out) {
  const int n = H * W;
  std::vector<uint8_t> line(n), kind(n), mask(n);
  for (int p = 0; p < n; ++p) line[p] = values[p] < threshold;
  const int64_t R2 = gap > 0 ? line_regions_near_radius2(gap) : 0;
  const int r = static_cast<int>(std::min<int64_t>(line_regions_isqrt(R2), int64_t(H) + W));
  std::vector<int> h(r + 1), vd(n, 0);  // on the device vd is left unwritten at gap 0
  for (int d = 0; d <= r; ++d) h[d] = static_cast<int>(std::min<int64_t>(line_regions_isqrt(R2 - int64_t(d) * d), r));
  if (r > 0)
    for (int x = 0; x < W; ++x) lr::column_distances(line.data(), H, W, r + 1, vd.data(), x);
  for (int p = 0; p < n; ++p) kind[p] = lr::kind_at(line.data(), vd.data(), h.data(), W, r, p);
  std::vector<int> L(n), other(n);
  for (int p = 0; p < n; ++p) L[p] = kind[p] == lr::kLineBit ? lr::kLine : 0;
  for (int p = 0; p < n; ++p) mask[p] = kind[p] == lr::kCoreBit;
  const int64_t cores = label_components(mask, H, W, 1, L);
  grow(L, other, H, W, 0);
  for (int p = 0; p < n; ++p) mask[p] = L[p] == 0;
  const int64_t slivers = label_components(mask, H, W, static_cast<int>(cores + 1), L);
  // At gap 0 every non-line pixel must have been a core: slivers there would mean the kinds read
  // the distances, which the device does not compute at gap 0 (the labels would still agree, as
  // slivers are numbered like cores, so the tests could not see it otherwise).
  TORCH_CHECK(r > 0 || slivers == 0, "line_regions CUDA emulation: ", slivers, " slivers at gap 0");
  const int64_t count = cores + slivers;
  if (count == 0) {
    std::fill(out, out + n, int64_t(0));
    return;
  }
  grow(L, other, H, W, lr::kLine);
  const bool graph = min_area > 1 && count > 1;
  std::vector<int64_t> area(graph ? count + 1 : 0, 0), first(count + 1, INT64_MAX);
  for (int p = 0; p < n; ++p) {
    const int length = lr::run_from(L.data(), W, p);
    if (length == 0) continue;
    first[L[p]] = std::min<int64_t>(first[L[p]], p);
    if (graph) area[L[p]] += length;
  }
  std::vector<RegionEdges> edges;
  if (graph) {
    std::vector<unsigned long long> keys;
    for (int p = 0; p < n; ++p) {
      unsigned long long mine[2];
      const int k = lr::edges_at(L.data(), H, W, p, mine);
      keys.insert(keys.end(), mine, mine + k);
    }
    std::sort(keys.begin(), keys.end());
    for (size_t i = 0; i < keys.size();) {
      size_t j = i;
      while (j < keys.size() && keys[j] == keys[i]) ++j;
      edges.push_back({static_cast<int32_t>(keys[i] >> 32), static_cast<int32_t>(keys[i] & 0xffffffffu),
                       static_cast<int64_t>(j - i)});
      i = j;
    }
  }
  const std::vector<int64_t> final_label = line_regions_final_labels(count, std::move(area), first, edges, min_area);
  for (int p = 0; p < n; ++p) out[p] = final_label[L[p]];
}

at::Tensor line_regions_cuda_emulation(const at::Tensor& sketch, double threshold, int64_t gap, int64_t min_area) {
  TORCH_CHECK(sketch.dim() == 4 && sketch.size(1) == 1, "line_regions: sketch must be (B, 1, H, W), got ",
              sketch.sizes());
  const int64_t B = sketch.size(0), H = sketch.size(2), W = sketch.size(3);
  TORCH_CHECK(H * W < INT32_MAX / 2, "line_regions: images of fewer than 2^30 pixels, got ", H, " x ", W);
  // As the CUDA glue: the threshold rounded to the sketch's dtype, values widened exactly to double.
  const double thr = line_regions_rounded_threshold(sketch.scalar_type(), threshold);
  const at::Tensor values = sketch.cpu().to(at::kDouble).contiguous();
  at::Tensor out = at::empty({B, H, W}, sketch.options().device(at::kCPU).dtype(at::kLong));
  for (int64_t b = 0; b < B && H * W > 0; ++b)
    emulate_sample(values.data_ptr<double>() + b * H * W, static_cast<int>(H), static_cast<int>(W), thr,
                   line_regions_effective_gap(gap, H, W), min_area, out.data_ptr<int64_t>() + b * H * W);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(refcolor, CPU, m) {
  m.impl("line_regions_cuda_emulation", &line_regions_cuda_emulation);
}

}  // namespace refcolor
