#pragma once
// Per-thread work of the line_regions CUDA kernels, shared with their host emulation
// (cpu/line_regions_cuda_emulation.cpp), so that the CPU tests run the logic the GPU runs: what one
// thread computes for its pixel (or column) in each kernel. Only the launches, the atomics and the
// block scan are device-only: the atomic minimum is a parameter here. No torch headers.
#include <climits>
#include <cstdint>

#include "macros.h"

namespace refcolor {
namespace lr {

constexpr int32_t kLine = INT32_MIN;  // a line pixel that growth has not reached yet
constexpr uint8_t kLineBit = 1;       // kind bytes: kLineBit, kCoreBit, or 0 for a margin pixel
constexpr uint8_t kCoreBit = 2;

// Column x: vd = distance in rows to the nearest line pixel of the column, capped at cap = r + 1.
REFCOLOR_HOST_DEVICE inline void column_distances(const uint8_t* line, int H, int W, int cap, int* vd, int x) {
  int run = cap;
  for (int y = 0; y < H; ++y) {
    run = line[y * W + x] ? 0 : (run < cap ? run + 1 : cap);
    vd[y * W + x] = run;
  }
  run = cap;
  for (int y = H - 1; y >= 0; --y) {
    run = line[y * W + x] ? 0 : (run < cap ? run + 1 : cap);
    if (run < vd[y * W + x]) vd[y * W + x] = run;
  }
}

// Kind of pixel p: a line pixel; else near a line when some |dx| <= r has vd[x + dx] <= h[|dx|]
// (h[d] = floor(sqrt(R2 - d^2))); r = 0 (gap 0) makes every non-line pixel a core.
REFCOLOR_HOST_DEVICE inline uint8_t kind_at(const uint8_t* line, const int* vd, const int* h, int W, int r, int p) {
  if (line[p]) return kLineBit;
  if (r == 0) return kCoreBit;  // vd is not computed then
  const int y = p / W, x = p - y * W;
  for (int dx = -r; dx <= r; ++dx) {
    const int xx = x + dx;
    if (xx >= 0 && xx < W && vd[y * W + xx] <= h[dx < 0 ? -dx : dx]) return 0;
  }
  return kCoreBit;
}

// Union-find on pixel indices (Playne & Hawick 2018). `read` loads a parent (volatile on the
// device: other threads relink roots meanwhile), `atomic_min` returns the old value.
template <typename Read>
REFCOLOR_HOST_DEVICE inline int find_root(const Read& read, int x) {
  while (true) {
    const int up = read(x);
    if (up == x) return x;
    x = up;
  }
}

// Links the larger root under the smaller, so a root is always its component's smallest pixel
// index; when another thread relinked that root meanwhile, atomic_min returns its new parent and
// the union goes on from there.
template <typename Read, typename AtomicMin>
REFCOLOR_HOST_DEVICE inline void unite(const Read& read, const AtomicMin& atomic_min, int a, int b) {
  while (true) {
    a = find_root(read, a);
    b = find_root(read, b);
    if (a == b) return;
    if (a > b) {
      const int t = a;
      a = b;
      b = t;
    }
    const int old = atomic_min(b, a);
    if (old == b) return;
    b = old;
  }
}

// The merge kernel's work for pixel p: unite with the left and upper pixels of the mask.
template <typename Read, typename AtomicMin>
REFCOLOR_HOST_DEVICE inline void merge_at(const uint8_t* mask, int H, int W, const Read& read,
                                          const AtomicMin& atomic_min, int p) {
  if (!mask[p]) return;
  const int y = p / W, x = p - y * W;
  if (x > 0 && mask[p - 1]) unite(read, atomic_min, p, p - 1);
  if (y > 0 && mask[p - W]) unite(read, atomic_min, p, p - W);
  (void)H;
}

// One growth round at pixel p (reading the previous round's labels `in`): an `open` pixel takes the
// smallest positive label among its 4-neighbours. Returns the pixel's new label; *grew when it took one.
REFCOLOR_HOST_DEVICE inline int grow_at(const int* in, int H, int W, int open, int p, bool* grew) {
  const int v = in[p];
  *grew = false;
  if (v != open) return v;
  const int y = p / W, x = p - y * W;
  int best = INT_MAX;
  if (x > 0 && in[p - 1] > 0 && in[p - 1] < best) best = in[p - 1];
  if (x + 1 < W && in[p + 1] > 0 && in[p + 1] < best) best = in[p + 1];
  if (y > 0 && in[p - W] > 0 && in[p - W] < best) best = in[p - W];
  if (y + 1 < H && in[p + W] > 0 && in[p + W] < best) best = in[p + W];
  if (best == INT_MAX) return v;
  *grew = true;
  return best;
}

// Length of the row run of one label starting at p, or 0 when p does not start one (the statistics
// kernel's work: only run starts touch the per-label atomics).
REFCOLOR_HOST_DEVICE inline int run_from(const int* L, int W, int p) {
  const int y = p / W, x = p - y * W, l = L[p];
  if (x > 0 && L[p - 1] == l) return 0;
  int e = x + 1;
  while (e < W && L[y * W + e] == l) ++e;
  return e - x;
}

// Pixel edges from p to its right and lower neighbours where labels differ, as (min << 32 | max)
// keys; returns how many (0-2).
REFCOLOR_HOST_DEVICE inline int edges_at(const int* L, int H, int W, int p, unsigned long long keys[2]) {
  const int y = p / W, x = p - y * W, l = L[p];
  int n = 0;
  const int nb[2] = {x + 1 < W ? L[p + 1] : l, y + 1 < H ? L[p + W] : l};
  for (int k = 0; k < 2; ++k) {
    if (nb[k] == l) continue;
    const unsigned long long a = l < nb[k] ? l : nb[k], b = l < nb[k] ? nb[k] : l;
    keys[n++] = (a << 32) | b;
  }
  return n;
}

}  // namespace lr
}  // namespace refcolor
