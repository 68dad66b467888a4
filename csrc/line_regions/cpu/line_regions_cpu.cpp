// C++ CPU kernel of line_regions: the steps of refcolor/ops/line_regions.py, per sample.
//
//   1. line mask (sketch < threshold in the sketch's dtype), parallel over rows;
//   2. kinds (line / core / margin): the core test needs only whether some line pixel lies within
//      squared distance R2 = floor((gap + 1)^2 / 4), so a capped per-column distance (two running
//      passes per row strip, O(1) a pixel) and a min over the 2r + 1 horizontal offsets of
//      dx^2 + dy^2 <= R2 (byte compares along the row, vectorised) decide it exactly. The same
//      strip pass cuts the core pixels of each row into runs, unites overlapping runs of adjacent
//      rows (union-find, the root of a set always its smallest run, so runs numbered in raster order
//      give each component the number of its first pixel) and lists the pixels where growth starts;
//   3. strip boundaries united, components numbered in raster order, labels written per strip;
//   4-6. growth by breadth-first rounds over frontier lists (a pixel reached in a round takes the
//      smallest label offered in that round), slivers labelled as in step 3, then the line pixels;
//   7-8. per-region area, first pixel and shared edges counted per strip, the merge and the final
//      numbering on the region graph (line_regions_graph.h, shared with CUDA), one gather to int64.
//
// Labels live in an int32 image padded by a ring of kBlock pixels, so that growth reads the four
// neighbours of any pixel without bounds checks. Every result is canonical (raster order of first
// pixels), so the strip count, and therefore the thread count, never changes a label.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu_memory.h"
#include "line_regions/line_regions_graph.h"
#include "macros.h"

namespace refcolor {
namespace {

constexpr int32_t kLine = INT32_MIN;       // a line pixel that growth has not reached yet
constexpr int32_t kBlock = INT32_MIN + 1;  // the padding ring: never entered, never a label
constexpr uint8_t kLineBit = 1;            // kind bytes: kLineBit, kCoreBit, or 0 for a margin pixel
constexpr uint8_t kCoreBit = 2;
constexpr uint64_t kCoreBytes = 0x0202020202020202ull;  // kCoreBit in each byte of a word

// Rows per strip at least this many, and a single strip below kMinParallelPixels: the kernel
// opens about six parallel regions per sample, and on a busy machine each can wait a scheduler
// slice for its second thread (measured on the shared 2-core machine at load 10: a 512 x 512 call
// took 2-3 ms on one thread, 76 ms on two); from half a megapixel the gain is worth that risk.
constexpr int64_t kMinStripRows = 32;
constexpr int64_t kMinParallelPixels = int64_t(1) << 19;

struct Run {
  int32_t x0, x1;  // [x0, x1) of one row
};

// Runs of one row strip: row_begin[i] .. row_begin[i + 1] are the runs of the strip's i-th row.
// parent is the union-find forest over the strip's runs (local ids), every parent <= its child.
struct StripRuns {
  std::vector<Run> runs;
  std::vector<int32_t> row_begin{0};
  std::vector<int32_t> parent;
};

int32_t find_root(std::vector<int32_t>& parent, int32_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];  // path halving; parents only ever point to smaller ids
    i = parent[i];
  }
  return i;
}

void unite(std::vector<int32_t>& parent, int32_t a, int32_t b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a < b)
    parent[b] = a;
  else if (b < a)
    parent[a] = b;
}

// Unites runs [a, a_end) of one row with the 4-connected runs [b, b_end) of the next (ids in the
// same forest); both lists are sorted by x.
void unite_rows(const std::vector<Run>& runs_a, int32_t a, int32_t a_end, const std::vector<Run>& runs_b, int32_t b,
                int32_t b_end, std::vector<int32_t>& parent, int32_t offset_a, int32_t offset_b) {
  for (; b < b_end; ++b) {
    while (a < a_end && runs_a[a].x1 <= runs_b[b].x0) ++a;
    for (int32_t m = a; m < a_end && runs_a[m].x0 < runs_b[b].x1; ++m) unite(parent, offset_a + m, offset_b + b);
  }
}

// Closes the row whose runs were just appended: records it and unites it with the strip's previous row.
void close_row(StripRuns& s) {
  const int32_t begin = s.row_begin.back(), end = static_cast<int32_t>(s.runs.size());
  for (int32_t i = begin; i < end; ++i) s.parent.push_back(i);
  if (s.row_begin.size() >= 2)
    unite_rows(s.runs, s.row_begin[s.row_begin.size() - 2], begin, s.runs, begin, end, s.parent, 0, 0);
  s.row_begin.push_back(end);
}

uint64_t load_word(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof(w));
  return w;
}

// Index of the lowest nonzero byte of a nonzero word, in memory order (little-endian targets).
inline int64_t lowest_set_byte(uint64_t w) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctzll(w) / 8;
#else
  int64_t i = 0;
  for (; !(w & 0xff); w >>= 8) ++i;
  return i;
#endif
}

// Appends the runs of core pixels (kind has kCoreBit) of one row; long runs are skipped a word at a time.
void core_runs(const uint8_t* kind, int64_t W, std::vector<Run>& runs) {
  int64_t x = 0;
  while (x < W) {
    while (x + 8 <= W && (load_word(kind + x) & kCoreBytes) == 0) x += 8;
    while (x < W && !(kind[x] & kCoreBit)) ++x;
    if (x >= W) return;
    const int64_t x0 = x;
    while (x + 8 <= W && (load_word(kind + x) & kCoreBytes) == kCoreBytes) x += 8;
    while (x < W && (kind[x] & kCoreBit)) ++x;
    runs.push_back({static_cast<int32_t>(x0), static_cast<int32_t>(x)});
  }
}

// Global union of the strips' forests: unites runs across strip boundaries, then numbers the
// components first_number, first_number + 1, ... in run order (= raster order of first pixels).
// Returns each run's component number (runs of strip s start at offset[s]) and sets *count.
std::vector<int32_t> number_components(std::vector<StripRuns>& strips, int32_t first_number,
                                       std::vector<int32_t>& offset, int64_t* count) {
  const size_t n = strips.size();
  offset.assign(n + 1, 0);
  for (size_t s = 0; s < n; ++s) offset[s + 1] = offset[s] + static_cast<int32_t>(strips[s].runs.size());
  std::vector<int32_t> parent(offset[n]);
  for (size_t s = 0; s < n; ++s)
    for (size_t i = 0; i < strips[s].parent.size(); ++i) parent[offset[s] + i] = offset[s] + strips[s].parent[i];
  for (size_t s = 1; s < n; ++s) {
    const StripRuns &above = strips[s - 1], &below = strips[s];
    if (above.row_begin.size() < 2 || below.row_begin.size() < 2) continue;
    const int32_t a = above.row_begin[above.row_begin.size() - 2], a_end = above.row_begin.back();
    unite_rows(above.runs, a, a_end, below.runs, 0, below.row_begin[1], parent, offset[s - 1], offset[s]);
  }
  std::vector<int32_t> number(offset[n]);
  int32_t next = first_number;
  for (int32_t i = 0; i < offset[n]; ++i) {
    parent[i] = parent[parent[i]];  // parent[i] < i is already a root: one step flattens
    number[i] = parent[i] == i ? next++ : number[parent[i]];
  }
  *count = next - first_number;
  return number;
}

// ---- step 2: kinds ------------------------------------------------------------------------------

// Capped distance type of the per-column pass: bytes while the cap fits, int32 beyond.
template <typename D>
struct KindScratch {
  std::vector<D> vd;         // (rows + 2) x (W + 2r): the strip's rows and its two halo rows, padded by r
  std::vector<uint8_t> acc;  // W: "some line pixel within R2" of one row
};

// Capped vertical distance (0 on line pixels, cap where no line pixel is within r rows) of rows
// [ya, yb) into vd rows 0.., each row padded by r cap entries on both sides.
template <typename D>
REFCOLOR_FORCE_INLINE void column_distances_impl(const uint8_t* __restrict__ line, int64_t H, int64_t W, int64_t ya,
                                                 int64_t yb, int64_t r, D* __restrict__ vd, D* __restrict__ run) {
  const D cap = static_cast<D>(r + 1);
  const int64_t Wr = W + 2 * r;
  // Downwards: distance to the nearest line pixel at or above, from r rows before ya.
  std::fill(run, run + W, cap);
  for (int64_t y = std::max<int64_t>(0, ya - r); y < yb; ++y) {
    const uint8_t* __restrict__ l = line + y * W;
    for (int64_t x = 0; x < W; ++x) run[x] = l[x] ? D(0) : static_cast<D>(std::min<D>(run[x], cap - 1) + 1);
    if (y >= ya) {
      D* __restrict__ out = vd + (y - ya) * Wr;
      std::fill(out, out + r, cap);
      std::copy(run, run + W, out + r);
      std::fill(out + r + W, out + Wr, cap);
    }
  }
  // Upwards: the same from below, from r rows after yb, kept where it is nearer.
  std::fill(run, run + W, cap);
  for (int64_t y = std::min<int64_t>(H, yb + r) - 1; y >= ya; --y) {
    const uint8_t* __restrict__ l = line + y * W;
    for (int64_t x = 0; x < W; ++x) run[x] = l[x] ? D(0) : static_cast<D>(std::min<D>(run[x], cap - 1) + 1);
    if (y < yb) {
      D* __restrict__ out = vd + (y - ya) * Wr + r;
      for (int64_t x = 0; x < W; ++x) out[x] = std::min(out[x], run[x]);
    }
  }
}

// Kind bytes of one row from its padded column distances: a pixel is near a line when some offset
// |dx| <= r has vd[x + dx] <= h[|dx|] = floor(sqrt(R2 - dx^2)).
template <typename D>
REFCOLOR_FORCE_INLINE void kind_row_impl(const uint8_t* __restrict__ line_row, const D* __restrict__ vd_row, int64_t W,
                                         int64_t r, const D* __restrict__ h, uint8_t* __restrict__ acc,
                                         uint8_t* __restrict__ kind) {
  std::fill(acc, acc + W, uint8_t(0));
  for (int64_t dx = -r; dx <= r; ++dx) {
    const D t = h[dx < 0 ? -dx : dx];
    const D* __restrict__ s = vd_row + r + dx;
    for (int64_t x = 0; x < W; ++x) acc[x] |= static_cast<uint8_t>(s[x] <= t);
  }
  for (int64_t x = 0; x < W; ++x) kind[x] = line_row[x] ? kLineBit : (acc[x] ? uint8_t(0) : kCoreBit);
}

REFCOLOR_CPU_CLONES void column_distances(const uint8_t* line, int64_t H, int64_t W, int64_t ya, int64_t yb, int64_t r,
                                          uint8_t* vd, uint8_t* run) {
  column_distances_impl(line, H, W, ya, yb, r, vd, run);
}
REFCOLOR_CPU_CLONES void column_distances(const uint8_t* line, int64_t H, int64_t W, int64_t ya, int64_t yb, int64_t r,
                                          int32_t* vd, int32_t* run) {
  column_distances_impl(line, H, W, ya, yb, r, vd, run);
}
REFCOLOR_CPU_CLONES void kind_row(const uint8_t* line_row, const uint8_t* vd_row, int64_t W, int64_t r,
                                  const uint8_t* h, uint8_t* acc, uint8_t* kind) {
  kind_row_impl(line_row, vd_row, W, r, h, acc, kind);
}
REFCOLOR_CPU_CLONES void kind_row(const uint8_t* line_row, const int32_t* vd_row, int64_t W, int64_t r,
                                  const int32_t* h, uint8_t* acc, uint8_t* kind) {
  kind_row_impl(line_row, vd_row, W, r, h, acc, kind);
}

// Growth seeds of one row, from the kinds of it and its 4-neighbours (rows padded by one kLineBit
// byte each side; a missing row is all kLineBit, which is neither core nor free): margin pixels
// beside a core pixel start step 4, line pixels beside a non-line pixel start step 6. Pixel indices
// are those of the padded label image. Returns the row's margin pixel count.
REFCOLOR_CPU_CLONES int64_t row_seeds(const uint8_t* prev, const uint8_t* cur, const uint8_t* next, int64_t W,
                                      int64_t base, uint8_t* flag, std::vector<int32_t>& margin_seeds,
                                      std::vector<int32_t>& line_seeds) {
  int64_t margins = 0;
  for (int64_t x = 1; x <= W; ++x) {
    const uint8_t c = cur[x], any = prev[x] | next[x] | cur[x - 1] | cur[x + 1];
    const uint8_t all = prev[x] & next[x] & cur[x - 1] & cur[x + 1];
    margins += c == 0;
    flag[x - 1] = static_cast<uint8_t>((c == 0 && (any & kCoreBit)) | (c == kLineBit && !(all & kLineBit)));
  }
  int64_t x = 0;
  for (; x + 8 <= W; x += 8) {
    uint64_t w = load_word(flag + x);  // flag bytes are 0 or 1: one bit per pixel of the word
    while (w) {
      const int64_t i = x + lowest_set_byte(w);
      (cur[i + 1] ? line_seeds : margin_seeds).push_back(static_cast<int32_t>(base + i));
      w &= w - 1;
    }
  }
  for (; x < W; ++x)
    if (flag[x]) (cur[x + 1] ? line_seeds : margin_seeds).push_back(static_cast<int32_t>(base + x));
  return margins;
}

struct StripOut {
  StripRuns runs;
  std::vector<int32_t> margin_seeds, line_seeds;
  int64_t margins = 0;
};

// Step 2 on rows [y0, y1): kinds into `kind`, core runs, seeds. Reads line rows up to r beyond the
// strip and computes the kinds of the two halo rows itself (other strips write theirs).
template <typename D>
void strip_kinds(const uint8_t* line, uint8_t* kind, int64_t H, int64_t W, int64_t Wp, int64_t r, const D* h,
                 int64_t y0, int64_t y1, StripOut& out) {
  const int64_t ya = std::max<int64_t>(0, y0 - 1), yb = std::min<int64_t>(H, y1 + 1);
  KindScratch<D> z;
  std::vector<uint8_t> halo_above(W + 2, kLineBit), halo_below(W + 2, kLineBit), none(W + 2, kLineBit);
  std::vector<uint8_t> rows(3 * (W + 2), kLineBit), flag(W + 8);
  if (r > 0) {
    z.vd.resize((yb - ya) * (W + 2 * r));
    z.acc.resize(W);
  }
  std::vector<D> run(r > 0 ? W : 0);
  if (r > 0) column_distances(line, H, W, ya, yb, r, z.vd.data(), run.data());
  // Kind of row y into a padded buffer (one kLineBit byte each side).
  auto compute = [&](int64_t y, uint8_t* padded) {
    uint8_t* k = padded + 1;
    const uint8_t* l = line + y * W;
    if (r == 0) {
      for (int64_t x = 0; x < W; ++x) k[x] = l[x] ? kLineBit : kCoreBit;
    } else {
      kind_row(l, z.vd.data() + (y - ya) * (W + 2 * r), W, r, h, z.acc.data(), k);
    }
  };
  uint8_t* bufs[3] = {rows.data(), rows.data() + (W + 2), rows.data() + 2 * (W + 2)};
  const uint8_t* prev = none.data();
  if (y0 > 0) {
    compute(y0 - 1, halo_above.data());
    prev = halo_above.data();
  }
  compute(y0, bufs[0]);
  for (int64_t y = y0; y < y1; ++y) {
    uint8_t* cur = bufs[(y - y0) % 3];
    const uint8_t* next = none.data();
    if (y + 1 < y1) {
      compute(y + 1, bufs[(y + 1 - y0) % 3]);
      next = bufs[(y + 1 - y0) % 3];
    } else if (y + 1 < H) {
      compute(y + 1, halo_below.data());
      next = halo_below.data();
    }
    std::memcpy(kind + y * W, cur + 1, W);
    core_runs(cur + 1, W, out.runs.runs);
    close_row(out.runs);
    out.margins += row_seeds(prev, cur, next, W, (y + 1) * Wp + 1, flag.data(), out.margin_seeds, out.line_seeds);
    prev = cur;
  }
}

// ---- steps 4-6: growth --------------------------------------------------------------------------

// Growth reads and writes a padded byte image of pixel states beside the labels: whether a
// neighbour is open, labelled, or reached in this round is a byte load from an image a quarter the
// size of the labels, which stays in cache where the label image does not (each round walks the
// whole drawing; measured: growth took about 17 ns a pixel testing the int32 labels themselves).
constexpr uint8_t kStateNew = 4;    // reached in the current round (its label may still go down)
constexpr uint8_t kStateDone = 8;   // labelled in an earlier round or step
constexpr uint8_t kStateRing = 16;  // the padding ring
// Margin (0), line (kLineBit) and core (kCoreBit) pixels start with their kind as their state.

REFCOLOR_FORCE_INLINE bool labelled(uint8_t state) {
  return state == kCoreBit || state == kStateDone;
}

// The first round from a list of seed pixels: each takes the smallest label among its labelled
// 4-neighbours (seeds are not labelled until the round ends).
int64_t seed_round(int32_t* __restrict__ L, uint8_t* __restrict__ S, int64_t Wp, const std::vector<int32_t>& seeds) {
  for (const int32_t p : seeds) {
    int32_t best = INT32_MAX;
    for (const int64_t q : {int64_t(p) - 1, int64_t(p) + 1, int64_t(p) - Wp, int64_t(p) + Wp})
      if (labelled(S[q]) && L[q] < best) best = L[q];
    L[p] = best;
  }
  for (const int32_t p : seeds) S[p] = kStateDone;
  return static_cast<int64_t>(seeds.size());
}

// One neighbour q of a pixel of the last round, offering `label`: opened (marked new, labelled and
// queued) or, when another pixel reached it this round with a larger label, lowered.
REFCOLOR_FORCE_INLINE void offer(int32_t* __restrict__ L, uint8_t* __restrict__ S, int64_t q, int32_t label,
                                 uint8_t open, int32_t* __restrict__ next, int64_t& n) {
  const uint8_t state = S[q];
  if (state == open) {
    S[q] = kStateNew;
    L[q] = label;
    next[n++] = static_cast<int32_t>(q);
  } else if (state == kStateNew && label < L[q]) {
    L[q] = label;
  }
}

// Breadth-first rounds from `frontier` (the pixels labelled in the last round) into pixels in state
// `open` (0: margin pixels, kLineBit: line pixels); a pixel reached in a round takes the smallest
// label offered in it. Returns the number of pixels labelled.
int64_t grow(int32_t* L, uint8_t* S, int64_t Wp, std::vector<int32_t> frontier, uint8_t open) {
  std::vector<int32_t> next;
  int64_t reached = 0;
  while (!frontier.empty()) {
    // A round reaches at most four pixels per frontier pixel: room for all, no per-push checks.
    next.resize(4 * frontier.size());
    int64_t n = 0;
    int32_t* __restrict__ out = next.data();
    for (const int32_t p : frontier) {
      const int32_t label = L[p];
      offer(L, S, int64_t(p) - 1, label, open, out, n);
      offer(L, S, int64_t(p) + 1, label, open, out, n);
      offer(L, S, int64_t(p) - Wp, label, open, out, n);
      offer(L, S, int64_t(p) + Wp, label, open, out, n);
    }
    next.resize(n);
    for (const int32_t q : next) S[q] = kStateDone;
    reached += n;
    frontier.swap(next);
  }
  return reached;
}

// First index >= x where row[x] == 0, or W: blocks of 8 tested at once.
REFCOLOR_FORCE_INLINE int64_t next_zero(const int32_t* __restrict__ row, int64_t x, int64_t W) {
  while (x + 8 <= W) {
    int32_t zero = 0;
    for (int k = 0; k < 8; ++k) zero |= row[x + k] == 0;
    if (zero) break;
    x += 8;
  }
  while (x < W && row[x] != 0) ++x;
  return x;
}

// Step 5: margin pixels that growth did not reach (still 0), labelled by 4-connectivity and
// numbered from first_number in raster order, as the cores are (runs per strip, then one union).
template <typename StripBegin>
int64_t label_slivers(int32_t* L, uint8_t* S, int64_t W, int64_t Wp, int32_t first_number, int64_t nstrips,
                      const StripBegin& strip_begin) {
  std::vector<StripRuns> strips(nstrips);
  at::parallel_for(0, nstrips, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      for (int64_t y = strip_begin(s); y < strip_begin(s + 1); ++y) {
        const int32_t* row = L + (y + 1) * Wp + 1;
        for (int64_t x = next_zero(row, 0, W); x < W; x = next_zero(row, x, W)) {
          const int64_t x0 = x;
          while (x < W && row[x] == 0) ++x;
          strips[s].runs.push_back({static_cast<int32_t>(x0), static_cast<int32_t>(x)});
        }
        close_row(strips[s]);
      }
    }
  });
  std::vector<int32_t> offset;
  int64_t count = 0;
  const std::vector<int32_t> number = number_components(strips, first_number, offset, &count);
  at::parallel_for(0, nstrips, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const StripRuns& sr = strips[s];
      for (int64_t y = strip_begin(s); y < strip_begin(s + 1); ++y) {
        int32_t* row = L + (y + 1) * Wp + 1;
        uint8_t* state = S + (y + 1) * Wp + 1;
        const int64_t i = y - strip_begin(s);
        for (int32_t j = sr.row_begin[i]; j < sr.row_begin[i + 1]; ++j) {
          std::fill(row + sr.runs[j].x0, row + sr.runs[j].x1, number[offset[s] + j]);
          std::fill(state + sr.runs[j].x0, state + sr.runs[j].x1, kStateDone);
        }
      }
    }
  });
  return count;
}

// ---- steps 7-8: statistics, merge, output -------------------------------------------------------

// Pixel edges between different labels, one direction at a time: consecutive edges of one pair
// (a border running along a row, or down a column) add up before they are stored.
struct EdgeCollector {
  std::vector<RegionEdges>& out;
  RegionEdges last{0, 0, 0};
  void add(int32_t a, int32_t b) {
    if (a > b) std::swap(a, b);
    if (a == last.a && b == last.b) {
      ++last.count;
      return;
    }
    flush();
    last = {a, b, 1};
  }
  void flush() {
    if (last.count) out.push_back(last);
    last.count = 0;
  }
};

struct StripStats {
  std::vector<int64_t> first, area;
  std::vector<RegionEdges> edges;
};

// First index >= x where row[x] differs from `value`, or W: blocks of 8 compared at once.
REFCOLOR_FORCE_INLINE int64_t run_end(const int32_t* __restrict__ row, int64_t x, int64_t W, int32_t value) {
  while (x + 8 <= W) {
    int32_t diff = 0;
    for (int k = 0; k < 8; ++k) diff |= row[x + k] ^ value;
    if (diff) break;
    x += 8;
  }
  while (x < W && row[x] == value) ++x;
  return x;
}

// First index >= x where a[x] != b[x], or W.
REFCOLOR_FORCE_INLINE int64_t next_difference(const int32_t* __restrict__ a, const int32_t* __restrict__ b, int64_t x,
                                              int64_t W) {
  while (x + 8 <= W) {
    int32_t diff = 0;
    for (int k = 0; k < 8; ++k) diff |= a[x + k] ^ b[x + k];
    if (diff) break;
    x += 8;
  }
  while (x < W && a[x] == b[x]) ++x;
  return x;
}

REFCOLOR_CPU_CLONES void strip_stats(const int32_t* L, int64_t W, int64_t Wp, int64_t y0, int64_t y1, bool graph,
                                     StripStats& st) {
  EdgeCollector across{st.edges}, down{st.edges};
  for (int64_t y = y0; y < y1; ++y) {
    const int32_t* row = L + (y + 1) * Wp + 1;
    for (int64_t x = 0; x < W;) {
      const int32_t l = row[x];
      const int64_t e = run_end(row, x + 1, W, l);
      if (st.first[l] < 0) st.first[l] = y * W + x;
      if (graph) {
        st.area[l] += e - x;
        if (e < W) across.add(l, row[e]);
      }
      x = e;
    }
    if (graph && y > 0) {
      const int32_t* up = row - Wp;
      for (int64_t x = next_difference(row, up, 0, W); x < W; x = next_difference(row, up, x + 1, W))
        down.add(up[x], row[x]);
      down.flush();  // a pair continues only along one row
    }
  }
  across.flush();
}

REFCOLOR_CPU_CLONES void write_output(const int32_t* L, int64_t W, int64_t Wp, int64_t y0, int64_t y1,
                                      const int64_t* final_label, int64_t* out) {
  for (int64_t y = y0; y < y1; ++y) {
    const int32_t* __restrict__ row = L + (y + 1) * Wp + 1;
    int64_t* __restrict__ o = out + y * W;
    for (int64_t x = 0; x < W; ++x) o[x] = final_label[row[x]];
  }
}

// ---- driver -------------------------------------------------------------------------------------

template <typename T>
void line_mask(const at::Tensor& sketch, int64_t b, double threshold, uint8_t* line, int64_t H, int64_t W) {
  const T thr = static_cast<T>(threshold);  // torch's rounding of a Python scalar to the tensor's dtype
  const T* base = sketch.data_ptr<T>() + b * sketch.stride(0);
  const int64_t sr = sketch.stride(2), sc = sketch.stride(3);
  const int64_t grain = std::max<int64_t>(1, kMinParallelPixels / std::max<int64_t>(W, 1));
  at::parallel_for(0, H, grain, [&](int64_t y0, int64_t y1) {
    for (int64_t y = y0; y < y1; ++y) {
      const T* row = base + y * sr;
      uint8_t* out = line + y * W;
      if (sc == 1)
        for (int64_t x = 0; x < W; ++x) out[x] = row[x] < thr;
      else
        for (int64_t x = 0; x < W; ++x) out[x] = row[x * sc] < thr;
    }
  });
}

struct Buffers {
  std::unique_ptr<uint8_t[]> line, kind;
  std::unique_ptr<int32_t[]> labels;
  std::unique_ptr<uint8_t[]> state;
};

template <typename D>
void label_one(const uint8_t* line, uint8_t* kind, int32_t* L, uint8_t* S, int64_t H, int64_t W, int64_t gap,
               int64_t min_area, int64_t* out) {
  const int64_t Wp = W + 2,
                nstrips = H * W < kMinParallelPixels
                              ? 1
                              : std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), H / kMinStripRows));
  auto strip_begin = [&](int64_t s) { return H * s / nstrips; };
  // Radius of the near test; r = 0 when every non-line pixel is a core (gap 0). A radius that spans
  // the image makes every non-line pixel near a line when there is one: cap it there.
  const int64_t R2 = gap > 0 ? line_regions_near_radius2(gap) : 0;
  const int64_t r = std::min(line_regions_isqrt(R2), H + W);
  std::vector<D> h(r + 1);
  for (int64_t d = 0; d <= r; ++d) h[d] = static_cast<D>(std::min(line_regions_isqrt(R2 - d * d), r));

  std::vector<StripOut> strips(nstrips);
  at::parallel_for(0, nstrips, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s)
      strip_kinds<D>(line, kind, H, W, Wp, r, h.data(), strip_begin(s), strip_begin(s + 1), strips[s]);
  });
  std::vector<StripRuns> runs(nstrips);
  for (int64_t s = 0; s < nstrips; ++s) runs[s] = std::move(strips[s].runs);
  std::vector<int32_t> offset;
  int64_t cores = 0;
  const std::vector<int32_t> number = number_components(runs, 1, offset, &cores);

  // Labels: the padding ring, then each row from its kinds and its runs.
  std::fill(L, L + Wp, kBlock);
  std::fill(L + (H + 1) * Wp, L + (H + 2) * Wp, kBlock);
  std::fill(S, S + Wp, kStateRing);
  std::fill(S + (H + 1) * Wp, S + (H + 2) * Wp, kStateRing);
  at::parallel_for(0, nstrips, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const StripRuns& sr = runs[s];
      for (int64_t y = strip_begin(s); y < strip_begin(s + 1); ++y) {
        int32_t* row = L + (y + 1) * Wp + 1;
        const uint8_t* k = kind + y * W;
        row[-1] = row[W] = kBlock;
        uint8_t* state = S + (y + 1) * Wp + 1;
        state[-1] = state[W] = kStateRing;
        std::memcpy(state, k, W);
        for (int64_t x = 0; x < W; ++x) row[x] = k[x] & kLineBit ? kLine : 0;
        const int64_t i = y - strip_begin(s);
        for (int32_t j = sr.row_begin[i]; j < sr.row_begin[i + 1]; ++j)
          std::fill(row + sr.runs[j].x0, row + sr.runs[j].x1, number[offset[s] + j]);
      }
    }
  });

  // Step 4: growth from the cores through the margins.
  std::vector<int32_t> seeds;
  int64_t margins = 0;
  for (const StripOut& so : strips) {
    seeds.insert(seeds.end(), so.margin_seeds.begin(), so.margin_seeds.end());
    margins += so.margins;
  }
  int64_t reached = seed_round(L, S, Wp, seeds);
  reached += grow(L, S, Wp, std::move(seeds), 0);
  // Step 5: the slivers.
  int64_t count = cores;
  if (reached < margins) count += label_slivers(L, S, W, Wp, static_cast<int32_t>(cores + 1), nstrips, strip_begin);
  if (count == 0) {  // nothing but lines: one region
    std::fill(out, out + H * W, int64_t(0));
    return;
  }
  // Step 6: the line pixels join the nearest region.
  seeds.clear();
  for (const StripOut& so : strips) seeds.insert(seeds.end(), so.line_seeds.begin(), so.line_seeds.end());
  seed_round(L, S, Wp, seeds);
  grow(L, S, Wp, std::move(seeds), kLineBit);

  // Steps 7-8.
  const bool graph = min_area > 1 && count > 1;
  std::vector<StripStats> stats(nstrips);
  at::parallel_for(0, nstrips, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      stats[s].first.assign(count + 1, -1);
      if (graph) stats[s].area.assign(count + 1, 0);
      strip_stats(L, W, Wp, strip_begin(s), strip_begin(s + 1), graph, stats[s]);
    }
  });
  std::vector<int64_t> first(count + 1, -1), area(graph ? count + 1 : 0, 0);
  std::vector<RegionEdges> edges;
  for (const StripStats& st : stats) {
    for (int64_t l = 1; l <= count; ++l)
      if (first[l] < 0) first[l] = st.first[l];
    if (!graph) continue;
    for (int64_t l = 1; l <= count; ++l) area[l] += st.area[l];
    edges.insert(edges.end(), st.edges.begin(), st.edges.end());
  }
  const std::vector<int64_t> final_label = line_regions_final_labels(count, std::move(area), first, edges, min_area);
  at::parallel_for(0, nstrips, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s)
      write_output(L, W, Wp, strip_begin(s), strip_begin(s + 1), final_label.data(), out);
  });
}

at::Tensor line_regions_cpu(const at::Tensor& sketch, double threshold, int64_t gap, int64_t min_area) {
  TORCH_CHECK(sketch.dim() == 4 && sketch.size(1) == 1, "line_regions: sketch must be (B, 1, H, W), got ",
              sketch.sizes());
  TORCH_CHECK(gap >= 0 && min_area >= 0, "line_regions: gap and min_area must be >= 0, got ", gap, " and ", min_area);
  const int64_t B = sketch.size(0), H = sketch.size(2), W = sketch.size(3);
  TORCH_CHECK((H + 2) * (W + 2) < INT32_MAX / 2,
              "line_regions: the C++ kernel takes images of fewer than 2^30 pixels, got ", H, " x ", W);
  at::Tensor out = at::empty({B, H, W}, sketch.options().dtype(at::kLong));
  if (B * H * W == 0) return out;
  advise_huge_pages(out.data_ptr(), out.nbytes());
  const int64_t pixels = H * W, padded = (H + 2) * (W + 2);
  Buffers buf{std::unique_ptr<uint8_t[]>(new uint8_t[pixels]), std::unique_ptr<uint8_t[]>(new uint8_t[pixels]),
              std::unique_ptr<int32_t[]>(new int32_t[padded]), std::unique_ptr<uint8_t[]>(new uint8_t[padded])};
  advise_huge_pages(buf.labels.get(), padded * sizeof(int32_t));
  gap = line_regions_effective_gap(gap, H, W);
  const int64_t r = gap > 0 ? std::min(line_regions_isqrt(line_regions_near_radius2(gap)), H + W) : 0;
  for (int64_t b = 0; b < B; ++b) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, sketch.scalar_type(), "line_regions_cpu",
                                    [&] { line_mask<scalar_t>(sketch, b, threshold, buf.line.get(), H, W); });
    int64_t* o = out.data_ptr<int64_t>() + b * pixels;
    if (r + 1 < 255)
      label_one<uint8_t>(buf.line.get(), buf.kind.get(), buf.labels.get(), buf.state.get(), H, W, gap, min_area, o);
    else
      label_one<int32_t>(buf.line.get(), buf.kind.get(), buf.labels.get(), buf.state.get(), H, W, gap, min_area, o);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(refcolor, CPU, m) {
  m.impl("line_regions_kernel", &line_regions_cpu);
}

}  // namespace refcolor
