"""RandomTPS: the random thin-plate-spline distortion s(.) of SCFT's augmented-self reference
(Lee et al., CVPR 2020, Sec. 3.1), returning the warp's dense correspondence with the image.

The reference I_r = s(a(I)) is the target warped by a random smooth deformation; the sampling grid
of that deformation is the ground truth of SCFT's attention (refcolor.ops.tps_correspondence turns
it into one reference feature cell per sketch feature cell for the triplet loss).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from refcolor.ops import _validation as check
from refcolor.ops.tps import PADDING_MODES, tps_solve
from refcolor.ops.tps_warp import tps_warp_with_grid

OP = "RandomTPS"


def control_lattice(n: int, margin: float = 0.0, *, dtype=torch.float64, device=None) -> Tensor:
    """The regular n x n control points (n * n, 2), (x, y) row-major (y slowest), spanning
    [-1 + margin, 1 - margin] on both axes (normalised, align_corners=True)."""
    ticks = torch.linspace(-1 + margin, 1 - margin, n, dtype=dtype, device=device)
    return torch.stack(torch.meshgrid(ticks, ticks, indexing="xy"), dim=-1).reshape(n * n, 2)


def _check_grid_sizes(value) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if (
        not isinstance(value, Sequence)
        or isinstance(value, (str, bytes))
        or len(value) == 0
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in value)
    ):
        raise TypeError(f"{OP}: argument 'grid_sizes' must be an int or a non-empty sequence of ints, got {value!r}")
    if min(value) < 2:
        raise ValueError(
            f"{OP}: argument 'grid_sizes' must hold sizes n >= 2 (an n x n control grid needs K = n^2 >= 3 "
            f"non-collinear points), got {tuple(value)}"
        )
    return tuple(int(n) for n in value)


def _check_real(name: str, value, low: float, high: float | None = None, *, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{OP}: argument '{name}' must be a real number, got {type(value).__name__}")
    value = float(value)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or value < low or too_high:
        upper = "inf)" if high is None else (f"{high})" if high_open else f"{high}]")
        raise ValueError(f"{OP}: argument '{name}' must be in [{low}, {upper}, got {value}")
    return value


class RandomTPS(nn.Module):
    """Random thin-plate-spline warp of a batch of images, with its sampling grid.

    For every sample an n x n control lattice P (n drawn uniformly from `grid_sizes`, per sample)
    spanning [-1 + margin, 1 - margin]^2 is kept fixed in the *output*, and each control point is
    displaced by an offset drawn uniformly from [-jitter, jitter] per coordinate (normalised units;
    1 = half the image). Output pixel P_k shows the input content at P_k + offset_k: the content at
    the jittered points moves onto the regular lattice (tps_warp with src_points = P + offset,
    dst_points = P). Keeping the spline's knots on the regular lattice means the TPS system is the
    same well-conditioned one for every draw, so no jitter can make it singular.

    `fix_border=True` leaves the points on the lattice's outer ring in place (only interior points
    move), which keeps the image frame (nearly) where it is and limits the padding the warp pulls
    in; by default every point moves, corners included, so the frame wobbles too.

    forward(images, generator=None) -> (warped, grid):
        warped: (B, C, H, W), images' dtype: the warp (refcolor.ops.tps_warp_from_params, the
            fused op of `backend`, with `padding_mode`).
        grid: (B, H, W, 2), float32 (float64 for float64 images): grid[b, i, j] is the normalised
            (x, y) location in `images` (align_corners=True) that warped pixel (i, j) was sampled
            from, so grid_sample(images, grid, align_corners=True, padding_mode=padding_mode)
            reproduces `warped`. Locations outside [-1, 1] were sampled from the padding.

    Both come from one float64 solve (tps_solve). The warp is differentiable with respect to the
    images; the random draw is not (the grid carries no gradient).

    Randomness: the sizes and offsets are drawn on the CPU (or on `generator`'s device) and then
    moved to the images' device, so a seeded run gives the same warps on every device. Pass
    `generator` to forward, or `seed` to the constructor for a private generator (two modules with
    the same seed produce the same sequence of warps; `manual_seed` restarts it); with neither,
    torch's global CPU generator is used.

    Args:
        grid_sizes: the control-lattice sizes n to draw from (an int, or a sequence of ints >= 2).
        jitter: the largest displacement of a control point per coordinate (>= 0; 0 is the
            identity warp). Displacements beyond the lattice spacing 2 / (n - 1) can fold the image.
        margin: the lattice spans [-1 + margin, 1 - margin], 0 <= margin < 1.
        fix_border: keep the lattice's outer ring of control points still.
        padding_mode: "border" (default: no black borders) or "zeros".
        backend: the tps_warp backend ("auto", "reference", "cpp", "cuda", "triton").
        seed: seeds a private torch.Generator used when forward gets no `generator`.
    """

    def __init__(
        self,
        grid_sizes: int | Sequence[int] = (3, 4, 5),
        jitter: float = 0.1,
        *,
        margin: float = 0.0,
        fix_border: bool = False,
        padding_mode: str = "border",
        backend: str = "auto",
        seed: int | None = None,
    ):
        super().__init__()
        self.grid_sizes = _check_grid_sizes(grid_sizes)
        self.jitter = _check_real("jitter", jitter, 0.0)
        self.margin = _check_real("margin", margin, 0.0, 1.0, high_open=True)
        if not isinstance(fix_border, bool):
            raise TypeError(f"{OP}: argument 'fix_border' must be a bool, got {type(fix_border).__name__}")
        self.fix_border = fix_border
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"{OP}: argument 'padding_mode' must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.padding_mode = padding_mode
        if not isinstance(backend, str):
            raise TypeError(f"{OP}: argument 'backend' must be a str, got {type(backend).__name__}")
        self.backend = backend
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"{OP}: argument 'seed' must be an int or None, got {type(seed).__name__}")
        self.seed = seed
        self._generator: torch.Generator | None = None
        if seed is not None:
            self.manual_seed(seed)

    def manual_seed(self, seed: int) -> RandomTPS:
        """(Re)start the private generator at `seed`; returns self."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"{OP}: argument 'seed' must be an int, got {type(seed).__name__}")
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        return self

    def extra_repr(self) -> str:
        return (
            f"grid_sizes={self.grid_sizes}, jitter={self.jitter}, margin={self.margin}, "
            f"fix_border={self.fix_border}, padding_mode={self.padding_mode!r}, backend={self.backend!r}, "
            f"seed={self.seed}"
        )

    def sample_points(
        self, batch_size: int, *, generator: torch.Generator | None = None
    ) -> list[tuple[Tensor, Tensor, Tensor]]:
        """The random draw of one forward call, float64 on the generator's device (CPU by default):
        a list of (sample indices (Bn,), src_points (Bn, n^2, 2), dst_points (Bn, n^2, 2)), one entry
        per drawn lattice size n (in `grid_sizes` order; sizes nobody drew are left out)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{OP}: argument 'batch_size' must be a positive int, got {batch_size!r}")
        generator = self._resolve_generator(generator)
        device = generator.device if generator is not None else torch.device("cpu")
        choice = torch.randint(len(self.grid_sizes), (batch_size,), generator=generator, device=device)
        draws = []
        for i, n in enumerate(self.grid_sizes):
            members = (choice == i).nonzero().flatten()
            if members.numel() == 0:
                continue
            dst = control_lattice(n, self.margin, device=device).expand(members.numel(), -1, -1)
            u = torch.rand(members.numel(), n * n, 2, generator=generator, dtype=torch.float64, device=device)
            offset = (2 * u - 1) * self.jitter
            if self.fix_border:
                r, c = torch.meshgrid(torch.arange(n, device=device), torch.arange(n, device=device), indexing="ij")
                interior = ((r > 0) & (r < n - 1) & (c > 0) & (c < n - 1)).reshape(1, n * n, 1)
                offset = offset * interior
            draws.append((members, dst + offset, dst))
        return draws

    def _resolve_generator(self, generator) -> torch.Generator | None:
        if generator is None:
            return self._generator
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                f"{OP}: argument 'generator' must be a torch.Generator or None, got {type(generator).__name__}"
            )
        return generator

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """-> (warped (B, C, H, W), grid (B, H, W, 2)); see the class docstring."""
        check.check_float_tensor(OP, "images", images, 4, "(B, C, H, W)")
        check.check_nonempty(OP, "images", images, "(B, C, H, W)")
        B, _, H, W = images.shape
        grid_dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        draws = self.sample_points(B, generator=generator)
        if len(draws) == 1:  # every sample drew the same lattice size: one solve, one warp
            _, src, dst = draws[0]
            return self._warp(images, src.to(images.device), dst.to(images.device), grid_dtype)
        warped = torch.empty_like(images)
        grid = images.new_empty((B, H, W, 2), dtype=grid_dtype)
        for members, src, dst in draws:
            members = members.to(images.device)
            part_warped, part_grid = self._warp(
                images.index_select(0, members), src.to(images.device), dst.to(images.device), grid_dtype
            )
            warped = warped.index_copy(0, members, part_warped)  # out of place: keeps autograd simple
            grid[members] = part_grid
        return warped, grid

    def _warp(self, images: Tensor, src: Tensor, dst: Tensor, grid_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        params = tps_solve(src, dst)  # float64, T(dst_k) = src_k
        warped, grid = tps_warp_with_grid(
            images, params, dst.contiguous(), padding_mode=self.padding_mode, backend=self.backend
        )
        return warped, grid.to(grid_dtype)


__all__ = ["RandomTPS", "control_lattice"]
