"""line_regions: the areas of a line drawing enclosed by its lines, as an int64 label map.

This is what a paint program's bucket fill sees, with gap closing as in Krita's fill (a distance
map that stops the fill at gaps in the lines). For a sketch S (B, 1, H, W) in [0, 1] (white paper,
dark lines), every backend computes exactly these steps, per sample:

1. **Lines.** A pixel is a line pixel where S < threshold, compared in the sketch's dtype.
2. **Cores.** With gap > 0, a non-line pixel is a *core* pixel when its Euclidean distance d to the
   nearest line pixel satisfies 4 d^2 > (gap + 1)^2 (d > (gap + 1) / 2, in exact integer
   arithmetic). Every pixel of a gap of at most `gap` missing pixels between two line ends lies
   within (gap + 1) / 2 of one of them (pixel centres), so no core crosses it; a gap of gap + 2 or
   more pixels leaves core pixels in its middle. (With an odd gap a gap of gap + 1 pixels closes
   too: pixel-centre distances cannot tell a gap of 2k - 1 pixels from one of 2k.) Narrow passages
   between lines close the same way. With gap = 0 every non-line pixel is a core pixel.
3. **Core components.** Cores are labelled by 4-connectivity (a one-pixel diagonal line closes an
   area, as a paint program's fill does) and numbered 1, 2, ... in raster order of each
   component's first pixel.
4. **Growth through the margins.** The non-line, non-core pixels take labels by breadth-first
   growth from the cores, one 4-neighbour step per round; a pixel reached in the same round from
   several components takes the smallest number. A closed gap is split where the growth from both
   sides meets, near its middle.
5. **Enclosed slivers.** Non-line pixels still unlabelled (areas narrower than `gap` that hold no
   core) are labelled by 4-connectivity, numbered after the cores in raster order.
6. **Line pixels** join the nearest region by the same breadth-first growth through line pixels,
   so the labels cover the whole image (an image of lines only is one region).
7. **Small regions.** While some region has fewer than `min_area` pixels, the smallest one (ties:
   the smallest number) merges into the 4-neighbouring region that shares the most pixel edges with
   it (ties: the smallest number). A region with no neighbour stays.
8. **Numbering.** Final labels run 0..R-1 in raster order of each region's first pixel (the region
   holding pixel (0, 0) is 0).

Backends: "reference" (NumPy and scipy.ndimage on the CPU, the ground truth), "cpp"
(csrc/line_regions/cpu) and "cuda" (csrc/line_regions/cuda) where they are built; every backend
returns the same labels, label for label. The compiled backends run through the custom op
`refcolor::line_regions`, which has a fake implementation, so the op works under torch.compile. The
op is not differentiable (its output is integer). Steps 2-6 are per-pixel work; steps 7-8 work on
the region adjacency graph, in one host function both compiled backends share
(csrc/line_regions/line_regions_graph.h).

There is no Triton backend: connected components need union-find (pointer chasing with atomics
across the whole image) or an unbounded number of propagation rounds, and growth needs rounds until
nothing changes; Triton has no grid-wide synchronisation and no efficient scattered atomics on
arbitrary addresses, so a Triton version would be a chain of many small launches driven from the
host, slower than the CUDA kernels it would stand beside.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from refcolor import _extension
from refcolor.backends import choose_backend, register_self_check
from refcolor.ops import _validation as check

OP = "line_regions"
_ALL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# The kernels compare in the sketch's own dtype (the threshold rounded to it as torch rounds a
# Python scalar), so every float dtype gives the reference's line mask.
DTYPES = {"reference": _ALL_FLOATS, "cpp": _ALL_FLOATS, "cuda": _ALL_FLOATS}

_FOUR = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
_UNSET = np.iinfo(np.int64).max


def core_mask(line: np.ndarray, gap: int) -> np.ndarray:
    """Non-line pixels farther than (gap + 1) / 2 from every line pixel (exact: 4 d^2 > (gap + 1)^2)."""
    free = ~line
    if gap <= 0 or not line.any():
        return free
    from scipy import ndimage

    # Distances to the nearest line pixel are square roots of integers; rounding their squares
    # recovers the exact integers, so the test below has no floating-point edge.
    d2 = np.rint(ndimage.distance_transform_edt(free) ** 2).astype(np.int64)
    return free & (4 * d2 > (gap + 1) * (gap + 1))


def grow(labels: np.ndarray, allowed: np.ndarray) -> None:
    """Breadth-first growth of labels (> 0) into unlabelled `allowed` pixels, in place.

    One 4-neighbour step per round; a pixel reached from several labels in one round takes the
    smallest. Pixels that no label reaches stay 0.
    """
    while True:
        todo = allowed & (labels == 0)
        if not todo.any():
            return
        known = np.where(labels > 0, labels, _UNSET)
        best = np.full_like(known, _UNSET)
        np.minimum(best[1:, :], known[:-1, :], out=best[1:, :])
        np.minimum(best[:-1, :], known[1:, :], out=best[:-1, :])
        np.minimum(best[:, 1:], known[:, :-1], out=best[:, 1:])
        np.minimum(best[:, :-1], known[:, 1:], out=best[:, :-1])
        take = todo & (best != _UNSET)
        if not take.any():
            return
        labels[take] = best[take]


def _components(mask: np.ndarray, first: int) -> tuple[np.ndarray, int]:
    """4-connected components of mask numbered first, first + 1, ... in raster order (0 elsewhere)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=_FOUR)
    labels = labels.astype(np.int64)
    labels[labels > 0] += first - 1
    return labels, int(count)


def merge_small_regions(labels: np.ndarray, count: int, min_area: int) -> np.ndarray:
    """Step 7 on labels 1..count (every pixel labelled). Returns the new number of each old label
    (index 0 unused): merged labels map to the label they joined."""
    parent = np.arange(count + 1)
    if min_area <= 1 or count <= 1:
        return parent
    area = np.bincount(labels.ravel(), minlength=count + 1).astype(np.int64)
    # Shared pixel edges between 4-neighbours of different labels, per unordered pair.
    border: dict[int, dict[int, int]] = {i: {} for i in range(1, count + 1)}
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        differ = a != b
        lo = np.minimum(a[differ], b[differ])
        hi = np.maximum(a[differ], b[differ])
        pairs, counts = np.unique(lo * (count + 1) + hi, return_counts=True)
        for key, n in zip(pairs.tolist(), counts.tolist(), strict=True):
            i, j = divmod(key, count + 1)
            border[i][j] = border[i].get(j, 0) + n
            border[j][i] = border[j].get(i, 0) + n
    alive = {i for i in range(1, count + 1) if area[i] > 0}
    stuck: set[int] = set()
    while True:
        small = [i for i in alive if area[i] < min_area and i not in stuck]
        if not small:
            return _resolve(parent)
        region = min(small, key=lambda i: (area[i], i))
        if not border[region]:
            stuck.add(region)
            continue
        into = min(border[region], key=lambda j: (-border[region][j], j))
        parent[region] = into
        area[into] += area[region]
        alive.discard(region)
        for other, n in border.pop(region).items():
            del border[other][region]
            if other != into:
                border[into][other] = border[into].get(other, 0) + n
                border[other][into] = border[other].get(into, 0) + n


def _resolve(parent: np.ndarray) -> np.ndarray:
    for i in range(len(parent)):
        root = i
        while parent[root] != root:
            root = parent[root]
        parent[i] = root
    return parent


def raster_order(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 0..R-1 in raster order of each region's first pixel."""
    flat = labels.ravel()
    _, first = np.unique(flat, return_index=True)
    order = flat[np.sort(first)]
    lookup = np.zeros(int(flat.max()) + 1, dtype=np.int64)
    lookup[order] = np.arange(len(order))
    return lookup[labels]


def line_regions_single(line: np.ndarray, gap: int, min_area: int) -> np.ndarray:
    """Steps 2-8 on one (H, W) bool line mask; returns int64 labels (H, W)."""
    core = core_mask(line, gap)
    labels, cores = _components(core, 1)
    free = ~line
    grow(labels, free)
    rest, slivers = _components(free & (labels == 0), cores + 1)
    labels += rest
    count = cores + slivers
    if count == 0:  # nothing but lines
        return np.zeros(line.shape, dtype=np.int64)
    grow(labels, line)
    labels = merge_small_regions(labels, count, min_area)[labels]
    return raster_order(labels)


def line_regions_reference(sketch: Tensor, threshold: float = 0.8, gap: int = 0, min_area: int = 0) -> Tensor:
    """The steps of the module docstring in NumPy / scipy, one sample at a time (the ground truth)."""
    # Step 1 in the sketch's own dtype (the threshold rounded to it, torch's rule for a Python
    # scalar), as every backend compares.
    lines = (sketch.detach()[:, 0] < threshold).cpu().numpy()
    out = [line_regions_single(line, gap, min_area) for line in lines]
    return torch.from_numpy(np.stack(out)).to(sketch.device)


@torch.library.custom_op("refcolor::line_regions", mutates_args=())
def _line_regions_op(sketch: Tensor, threshold: float, gap: int, min_area: int, backend: str) -> Tensor:
    """The compiled kernels (backend "cpp" or "cuda"): int64 labels (B, H, W)."""
    _extension.compiled_module()  # registers the kernels with the dispatcher
    return torch.ops.refcolor.line_regions_kernel(sketch, threshold, gap, min_area)


@_line_regions_op.register_fake
def _(sketch, threshold, gap, min_area, backend):
    B, _, H, W = sketch.shape
    return sketch.new_empty((B, H, W), dtype=torch.int64)


def validate_inputs(sketch, threshold, gap, min_area) -> None:
    check.check_image(OP, "sketch", sketch, 1)
    check.check_nonempty(OP, "sketch", sketch, "(B, 1, H, W)")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"{OP}: argument 'threshold' must be a number in (0, 1], got {type(threshold).__name__}")
    if not 0 < threshold <= 1:
        raise ValueError(f"{OP}: argument 'threshold' must be in (0, 1], got {threshold}")
    for name, value in (("gap", gap), ("min_area", min_area)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{OP}: argument '{name}' must be an int >= 0, got {type(value).__name__}")
        if value < 0:
            raise ValueError(f"{OP}: argument '{name}' must be >= 0, got {value}")


def line_regions(
    sketch: Tensor, threshold: float = 0.8, gap: int = 0, min_area: int = 0, *, backend: str = "auto"
) -> Tensor:
    """Label the areas enclosed by the lines of `sketch` (see the module docstring for the exact rule).

    Args:
        sketch: (B, 1, H, W) float in [0, 1], white paper and dark lines; any layout.
        threshold: a pixel darker than this (sketch < threshold) is a line pixel.
        gap: gaps in the lines up to this many pixels wide are closed (0: none).
        min_area: regions of fewer pixels merge into the neighbour they share most border with.
        backend: "auto" or a backend name (see refcolor.backends).

    Returns:
        int64 labels (B, H, W) on the sketch's device, 0..R_b-1 per sample in raster order of each
        region's first pixel; R_b = labels[b].max() + 1.
    """
    validate_inputs(sketch, threshold, gap, min_area)
    chosen = choose_backend(OP, backend, sketch.device, sketch.dtype, DTYPES)
    if chosen == "reference":
        return line_regions_reference(sketch, threshold, gap, min_area)
    return _line_regions_op(sketch, float(threshold), gap, min_area, chosen)


def _self_check_drawing() -> Tensor:
    """A small drawing (2, 1, 20, 24) that exercises every step: a box whose wall has a 2-pixel gap
    (open at gap 0, closed at gap 3), a full-height line, a one-pixel diagonal line, a 3 x 3 box
    around a single pixel (merged by min_area), grey lines and paper; the second sample mirrored."""
    s = torch.ones(20, 24, dtype=torch.float64)
    s[5:15:3, 18:22] = 0.9  # paper texture, above the threshold
    s[1, 1:13] = s[10, 1:13] = 0.0  # box: top and bottom
    s[1:11, 1] = 0.3
    s[1:11, 12] = 0.0
    s[5:7, 12] = 1.0  # the gap in the box's right wall
    s[:, 17] = 0.5  # full-height line
    for i in range(8):  # diagonal from (12, 0) to (19, 7)
        s[12 + i, i] = 0.0
    s[13:16, 10:13] = 0.0  # small box ...
    s[14, 11] = 1.0  # ... around one pixel
    return torch.stack([s, s.flip(-1)])[:, None]


def _self_check(backend: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """The GPU first-use check (refcolor.backends): labels equal to the reference's, pixel for pixel,
    on a small drawing at gap 0 and 3, with and without min_area."""
    sketch = _self_check_drawing().to(dtype)
    for gap, min_area in ((0, 0), (0, 4), (3, 6)):
        want = line_regions_reference(sketch, 0.8, gap, min_area)
        got = line_regions(sketch.to(device), 0.8, gap, min_area, backend=backend).cpu()
        where = f"gap={gap}, min_area={min_area}"
        if got.shape != want.shape or got.dtype != want.dtype:
            return (
                f"{where}: labels are {got.dtype} {tuple(got.shape)}, the reference's {want.dtype} {tuple(want.shape)}"
            )
        differ = got != want
        if bool(differ.any()):
            b, y, x = (int(i) for i in differ.nonzero()[0])
            return (
                f"{where}: {int(differ.sum())} labels differ from the reference, first at sample {b} pixel "
                f"({y}, {x}): {int(got[b, y, x])} instead of {int(want[b, y, x])}"
            )
    return None


register_self_check(OP, _self_check)
