"""tps_correspondence: ground-truth feature correspondence of a warp grid (SCFT's triplet loss).

SCFT (Lee et al., CVPR 2020) trains its attention on an augmented-self reference: the reference is
the target warped by a known spline (refcolor.nn.RandomTPS), so every sketch/target feature cell
has a known reference feature cell. This op turns the warp's sampling grid into that mapping.

Lattices use the align_corners=True convention of the grids: on an n-cell axis, cell i is centred
at -1 + 2 i / (n - 1) (linspace(-1, 1, n); a 1-cell axis sits at -1, as refcolor's pixel grids).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from refcolor.ops import _validation as check

OP = "tps_correspondence"


def _check_size(name: str, size) -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list, torch.Size))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)
    ):
        raise ValueError(f"{OP}: argument '{name}' must be (h, w) with positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def lattice_points(size: tuple[int, int], *, dtype=torch.float32, device=None) -> Tensor:
    """Cell centres (h * w, 2), (x, y), row-major (flat index = row * w + col), align_corners=True."""
    h, w = size
    xs = torch.linspace(-1, 1, w, dtype=dtype, device=device)
    ys = torch.linspace(-1, 1, h, dtype=dtype, device=device)
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(h * w, 2)


def key_locations(grid: Tensor, key_size: tuple[int, int]) -> Tensor:
    """Where each key cell came from: the grid bilinearly sampled at the key-cell centres,
    (B, hk * wk, 2) in float32 (float64 for a float64 grid)."""
    B = grid.shape[0]
    dtype = torch.float64 if grid.dtype == torch.float64 else torch.float32
    field = grid.to(dtype).permute(0, 3, 1, 2)  # (B, 2, H, W): x and y as two channels
    centres = lattice_points(key_size, dtype=dtype, device=grid.device)
    where = centres.reshape(1, *key_size, 2).expand(B, -1, -1, -1)
    sampled = F.grid_sample(field, where, mode="bilinear", padding_mode="border", align_corners=True)
    return sampled.flatten(2).transpose(1, 2)  # (B, hk * wk, 2)


@torch.no_grad()
def tps_correspondence(grid: Tensor, query_size, key_size=None, *, tolerance: float = 1e-4) -> tuple[Tensor, Tensor]:
    """For each query (target/sketch) feature cell, the reference (key) feature cell showing it.

    Args:
        grid: (B, H, W, 2) warp grid of the reference: grid[b, i, j] is the normalised (x, y)
            location in the target that reference pixel (i, j) was sampled from (the `grid` of
            refcolor.nn.RandomTPS, align_corners=True). Floating point, finite.
        query_size: (hq, wq), the target/sketch feature lattice.
        key_size: (hk, wk), the reference feature lattice; default query_size.
        tolerance: how far (normalised units) outside [-1, 1] a key location may fall and still
            count as inside (absorbs the float error of an identity spline at the border).

    Method: each key cell's target location is the grid sampled bilinearly at the key-cell centre
    (the same align_corners=True lattice as the query, so an identity grid maps cell to cell exactly
    and a grid shifted by one cell maps to the neighbour; averaging the grid over the cell's pixels
    would put cell centres on the half-pixel lattice instead and bias every cell towards the image
    centre by up to half a cell). Locations outside [-1, 1] (content from the padding) map nowhere;
    the others go to the nearest query-cell centre (rounding per axis). Each query cell keeps, of
    the key cells that landed in it, the one whose location is closest to its centre (ties: the
    smallest key index). Two scatter_reduce("amin") passes, no loops over cells; deterministic.

    Returns:
        index: (B, hq * wq) int64 in [0, hk * wk): the row-major flat key index for each row-major
            query cell; 0 where not valid.
        valid: (B, hq * wq) bool: False where no key cell maps into that query cell (content the
            reference lost to the warp, or a key lattice coarser than the query's).
    """
    check.check_float_tensor(OP, "grid", grid, 4, "(B, H, W, 2)")
    if grid.shape[-1] != 2:
        raise ValueError(f"{OP}: argument 'grid' must have shape (B, H, W, 2), got {tuple(grid.shape)}")
    check.check_nonempty(OP, "grid", grid, "(B, H, W, 2)")
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(grid).all()):
        raise ValueError(f"{OP}: argument 'grid' holds NaN or infinite coordinates")
    hq, wq = _check_size("query_size", query_size)
    hk, wk = _check_size("key_size", query_size if key_size is None else key_size)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < math.inf:
        raise ValueError(f"{OP}: argument 'tolerance' must be a finite number >= 0, got {tolerance!r}")

    B, device = grid.shape[0], grid.device
    Q, K = hq * wq, hk * wk
    loc = key_locations(grid, (hk, wk))  # (B, K, 2)
    inside = (loc.abs() <= 1 + tolerance).all(dim=-1)  # (B, K)

    # Nearest query cell per axis: continuous index (x + 1) / 2 * (n - 1), rounded and clamped.
    scale = loc.new_tensor([wq - 1, hq - 1])
    cell = torch.round((loc + 1) / 2 * scale).clamp_min(0)
    cell = torch.minimum(cell, scale).to(torch.int64)
    query = cell[..., 1] * wq + cell[..., 0]  # (B, K)
    centre = lattice_points((hq, wq), dtype=loc.dtype, device=device)
    dist = (loc - centre[query]).pow(2).sum(-1)  # (B, K)

    # Keys mapping nowhere go to an extra bin Q, dropped at the end.
    query = torch.where(inside, query, Q)
    best = loc.new_full((B, Q + 1), math.inf).scatter_reduce(1, query, dist, reduce="amin", include_self=True)
    keys = torch.arange(K, device=device).expand(B, K)
    winner = torch.where(dist == best.gather(1, query), keys, K)  # the closest keys of their cell
    index = torch.full((B, Q + 1), K, dtype=torch.int64, device=device)
    index = index.scatter_reduce(1, query, winner, reduce="amin", include_self=True)[:, :Q]
    valid = index < K
    return torch.where(valid, index, 0), valid


__all__ = ["tps_correspondence"]
