#pragma once
// Steps 7 and 8 of line_regions (refcolor/ops/line_regions.py) on the region adjacency graph, shared
// by the C++ CPU kernel and the CUDA host code (plain C++, no torch): the pixels are done by then, and
// what is left is a few thousand regions, where a host loop beats any kernel.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <queue>
#include <unordered_map>
#include <utility>
#include <vector>

namespace refcolor {

// Squared radius of the gap-closing test: a non-line pixel is a core pixel when the squared distance
// d2 to its nearest line pixel has 4 d2 > (gap + 1)^2, i.e. d2 > floor((gap + 1)^2 / 4). Distances
// are integer-valued squares, so this integer bound decides exactly.
inline int64_t line_regions_near_radius2(int64_t gap) {
  return (gap + 1) * (gap + 1) / 4;
}

// Largest integer r with r * r <= n (0 <= n < 2^62): the floating-point root, corrected to be exact.
inline int64_t line_regions_isqrt(int64_t n) {
  int64_t r = static_cast<int64_t>(std::sqrt(static_cast<double>(n)));
  while (r > 0 && r * r > n) --r;
  while ((r + 1) * (r + 1) <= n) ++r;
  return r;
}

// A gap wider than the image closes everything: any pixel is within (H + W) of any other, so gaps
// beyond 2 (H + W) decide exactly as that one does (and keep the squares below in range).
inline int64_t line_regions_effective_gap(int64_t gap, int64_t height, int64_t width) {
  return gap < 2 * (height + width) ? gap : 2 * (height + width);
}

// Pixel edges shared by provisional regions a and b (a != b; repeats of a pair add up).
struct RegionEdges {
  int32_t a, b;
  int64_t count;
};

// Provisional labels 1..count (index 0 unused) with their pixel counts `area` and first pixels
// `first` (raster index; every region has at least one pixel). Returns the final label 0..R-1 of
// each provisional label: step 7 (while some region has fewer than min_area pixels, the smallest,
// ties the smallest number, merges into the neighbour sharing most edges with it, ties the smallest
// number; a region without neighbours stays) and step 8 (final labels in raster order of each merged
// region's first pixel). The same sequence of merges as the reference's loop: a heap ordered by
// (area, label) yields the region that loop picks, stale entries (merged or grown) are skipped.
inline std::vector<int64_t> line_regions_final_labels(int64_t count, std::vector<int64_t> area,
                                                      const std::vector<int64_t>& first,
                                                      const std::vector<RegionEdges>& edges, int64_t min_area) {
  std::vector<int64_t> parent(count + 1);
  for (int64_t i = 0; i <= count; ++i) parent[i] = i;
  if (min_area > 1 && count > 1) {
    std::vector<std::unordered_map<int32_t, int64_t>> border(count + 1);
    for (const RegionEdges& e : edges) {
      if (e.a == e.b) continue;
      border[e.a][e.b] += e.count;
      border[e.b][e.a] += e.count;
    }
    using Entry = std::pair<int64_t, int64_t>;  // (area, label): the heap's top is the reference's choice
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
    for (int64_t i = 1; i <= count; ++i)
      if (area[i] < min_area) heap.push({area[i], i});
    while (!heap.empty()) {
      const auto [a, region] = heap.top();
      heap.pop();
      if (parent[region] != region || area[region] != a) continue;  // merged away, or grown since
      auto& mine = border[region];
      if (mine.empty()) continue;  // no neighbour: it stays, and nothing can become its neighbour later
      int64_t into = -1, most = -1;
      for (const auto& [other, n] : mine)
        if (n > most || (n == most && other < into)) most = n, into = other;
      parent[region] = into;
      area[into] += area[region];
      for (const auto& [other, n] : mine) {
        border[other].erase(static_cast<int32_t>(region));
        if (other == into) continue;
        border[into][other] += n;
        border[other][static_cast<int32_t>(into)] += n;
      }
      std::unordered_map<int32_t, int64_t>().swap(mine);
      if (area[into] < min_area) heap.push({area[into], into});
    }
    for (int64_t i = 1; i <= count; ++i) {  // merges point at live regions or earlier merges: resolve
      int64_t root = i;
      while (parent[root] != root) root = parent[root];
      for (int64_t j = i; parent[j] != root;) {
        const int64_t next = parent[j];
        parent[j] = root;
        j = next;
      }
    }
  }
  // A merged region starts where the first of its parts starts.
  std::vector<int64_t> start(count + 1, INT64_MAX);
  for (int64_t i = 1; i <= count; ++i) start[parent[i]] = std::min(start[parent[i]], first[i]);
  std::vector<std::pair<int64_t, int64_t>> roots;
  for (int64_t i = 1; i <= count; ++i)
    if (parent[i] == i) roots.push_back({start[i], i});
  std::sort(roots.begin(), roots.end());
  std::vector<int64_t> number(count + 1, 0);
  for (size_t k = 0; k < roots.size(); ++k) number[roots[k].second] = static_cast<int64_t>(k);
  std::vector<int64_t> out(count + 1, 0);
  for (int64_t i = 1; i <= count; ++i) out[i] = number[parent[i]];
  return out;
}

}  // namespace refcolor
