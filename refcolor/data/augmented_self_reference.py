"""AugmentedSelfReference: SCFT's training triple from a colour image alone (Lee et al., CVPR 2020,
Sec. 3.1): the appearance transform a(.) gives the target I_gt = a(I), the thin-plate-spline
distortion s(.) gives the reference I_r = s(a(I)), and the outline extractor gives the sketch of
I_gt. The warp's sampling grid is the ground-truth correspondence between reference and target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refcolor.data.sketch import SketchExtractor
from refcolor.data.sketch_preparation import prepare_sketch
from refcolor.nn.random_tps import RandomTPS
from refcolor.ops import _validation as check
from refcolor.ops.tps import tps_solve
from refcolor.ops.tps_warp import tps_warp_with_grid

OP = "AugmentedSelfReference"
HUE_MODES = ("yuv", "hsv")
# Named settings of the geometric part of s(.). "mild" is the paper's TPS jitter alone (content
# moves by at most about a cell of SCFT's attention lattice, so copying by position is optimal);
# "strong" adds a left-right flip for half of the pairs, rotation up to +-30 degrees, scale 0.7 to
# 1.4, translation up to 20% of the side: a reference in another pose and framing, whose
# correspondence is still known exactly (issue 27).
WARPS = {
    "mild": {},
    "strong": {"flip": 0.5, "rotation": 30.0, "scale": (0.7, 1.4), "translation": 0.2},
}
# kornia.color.rgb_to_yuv's matrix (BT.601): rows Y, U, V. U and V vanish on gray.
_RGB_TO_YUV = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.147, -0.289, 0.436], [0.615, -0.515, -0.100]], dtype=torch.float64
)


def _kornia_enhance():
    try:
        import kornia.enhance
    except ImportError as exc:  # kornia is an optional dependency of the core ops
        raise ImportError(f"{OP} needs kornia for the colour jitter: pip install kornia") from exc
    return kornia.enhance


def hue_rotation_matrices(turns: Tensor) -> Tensor:
    """(B,) hue shifts in turns -> (B, 3, 3) float64 RGB matrices rotating the YUV chroma plane by
    2 pi turns: luma and grays are kept exactly, hues shift by about 360 * turns degrees."""
    angle = 2 * math.pi * turns.to(torch.float64)
    c, s = angle.cos(), angle.sin()
    rotation = torch.zeros(turns.shape[0], 3, 3, dtype=torch.float64, device=turns.device)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = c, -s, s, c
    to_yuv = _RGB_TO_YUV.to(turns.device)
    return torch.linalg.inv(to_yuv) @ rotation @ to_yuv


def _check_strength(name: str, value, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{OP}: argument '{name}' must be a real number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (high is not None and value > high):
        bound = "[0, inf)" if high is None else f"[0, {high}]"
        raise ValueError(f"{OP}: argument '{name}' must be in {bound}, got {value}")
    return float(value)


class AugmentedSelfReference(nn.Module):
    """Training triples for reference-based colorization from a batch of colour images.

    forward(images (B, 3, H, W) in [0, 1], generator=None) -> dict of tensors in images' dtype and
    device (the grid in float32, float64 for float64 images):
        "target" (B, 3, H, W): I_gt = a(I), the colour-jittered image.
        "sketch" (B, 1, H, W): the sketch of the target (`sketch`, a SketchExtractor), white with
            dark lines.
        "reference" (B, 3, H, W): I_r = s(a(I)), the target warped by a random thin-plate spline
            (refcolor.nn.RandomTPS's draw and the fused tps_warp).
        "grid" (B, H, W, 2): for every reference pixel, the normalised (x, y) location in the target
            it was sampled from, so grid_sample(target, grid, align_corners=True,
            padding_mode=padding_mode) rebuilds the reference (values beyond [-1, 1]: the padding).

    a(.) is a colour jitter with torchvision ColorJitter's factors, applied with kornia.enhance in
    a fixed order (torchvision shuffles it): brightness (adjust_brightness_accumulative: x * f),
    contrast (adjust_contrast_with_mean_subtraction), saturation
    (adjust_saturation_with_gray_subtraction: a blend with the gray image), then hue. Each factor
    is drawn per sample, uniformly in [max(0, 1 - s), 1 + s] for strength s, the hue shift in
    [-hue, hue] turns. `hue_mode="yuv"` (default) rotates the YUV chroma plane with one 3x3 matrix
    per sample: luma is kept (up to clipping), so the hue shift leaves the sketch as it was, and it
    is ~20x faster on the CPU than `hue_mode="hsv"`, kornia.enhance.adjust_hue's HSV shift
    (torchvision's definition). A strength of 0 skips its step: with all four at 0 the target is
    the input itself. Colour shifts keep the model from memorising colours (apple -> red) and push
    it to read them from the reference; the TPS warp keeps it from copying the reference pixel for
    pixel, so it has to find the correspondence.

    Randomness: per call, in this order, the jitter factors (one (B, 4) draw), the sketch
    parameters (SketchExtractor.sample_params), the TPS control points (RandomTPS.sample_points),
    all drawn on the CPU (or `generator`'s device) and moved to the images' device, so a seeded run
    gives the same triples on every device. Pass `generator` to forward, or `seed` to the
    constructor for a private generator (which the sketch extractor and the warp then share, over
    any seed of their own); with neither, the sub-modules' own generators or torch's global one.

    Args:
        brightness, contrast, saturation: jitter strengths >= 0 (torchvision's meaning).
        hue: the largest hue shift, in turns, in [0, 0.5] (0.5: any hue).
        hue_mode: "yuv" or "hsv", see above.
        grid_sizes, tps_jitter, fix_border, padding_mode, backend: RandomTPS's grid_sizes, jitter,
            fix_border, padding_mode and backend.
        sketch: the SketchExtractor of the target (default: SketchExtractor(), random XDoG).
        seed: seeds a private torch.Generator used when forward gets no `generator`.
        flip, rotation, scale, translation: an affine warp composed with the spline (default: none;
            `with_warp("strong")` sets the strong protocol's values): the probability of a
            left-right flip, the largest rotation in degrees, the (low, high) range of the content's
            scale (log-uniform), and the largest shift as a fraction of the side. Drawn per sample
            after the spline (sample_affine); the grid stays the exact correspondence.
    """

    def __init__(
        self,
        *,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        hue: float = 0.1,
        hue_mode: str = "yuv",
        grid_sizes: int | Sequence[int] = (3, 4, 5),
        tps_jitter: float = 0.1,
        fix_border: bool = False,
        padding_mode: str = "border",
        backend: str = "auto",
        sketch: SketchExtractor | None = None,
        seed: int | None = None,
        flip: float = 0.0,
        rotation: float = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
        translation: float = 0.0,
    ):
        super().__init__()
        self.flip = _check_strength("flip", flip, 1.0)
        self.rotation = _check_strength("rotation", rotation, 180.0)
        self.translation = _check_strength("translation", translation)
        if (
            not isinstance(scale, Sequence)
            or len(scale) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale)
            or not 0 < scale[0] <= scale[1] < math.inf
        ):
            raise ValueError(f"{OP}: argument 'scale' must be (low, high) with 0 < low <= high, got {scale!r}")
        self.scale = (float(scale[0]), float(scale[1]))
        self.brightness = _check_strength("brightness", brightness)
        self.contrast = _check_strength("contrast", contrast)
        self.saturation = _check_strength("saturation", saturation)
        self.hue = _check_strength("hue", hue, 0.5)
        if hue_mode not in HUE_MODES:
            raise ValueError(f"{OP}: argument 'hue_mode' must be one of {HUE_MODES}, got {hue_mode!r}")
        self.hue_mode = hue_mode
        if sketch is None:
            sketch = SketchExtractor()
        elif not isinstance(sketch, SketchExtractor):
            raise TypeError(f"{OP}: argument 'sketch' must be a SketchExtractor or None, got {type(sketch).__name__}")
        self.sketch = sketch
        # Configuration and draw of s(.); the warp itself goes through warp_with_grid.
        self.tps = RandomTPS(grid_sizes, tps_jitter, fix_border=fix_border, padding_mode=padding_mode, backend=backend)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"{OP}: argument 'seed' must be an int or None, got {type(seed).__name__}")
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None

    @classmethod
    def with_warp(cls, warp: str, **kwargs) -> AugmentedSelfReference:
        """An instance with the named geometric setting of WARPS ("mild" or "strong") and kwargs."""
        if warp not in WARPS:
            raise ValueError(f"{OP}: argument 'warp' must be one of {tuple(WARPS)}, got {warp!r}")
        return cls(**{**WARPS[warp], **kwargs})

    @property
    def has_affine(self) -> bool:
        return self.flip > 0 or self.rotation > 0 or self.scale != (1.0, 1.0) or self.translation > 0

    def sample_affine(self, batch_size: int, *, generator: torch.Generator | None = None) -> Tensor:
        """The affine draw: float64 (batch_size, 5) on the generator's device, columns flip (1 or 0),
        rotation (radians, uniform in +-rotation degrees), scale (log-uniform in `scale`) and the
        translation (x, y) as fractions of the width and height (uniform in +-translation)."""
        device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(batch_size, 5, generator=generator, dtype=torch.float64, device=device)
        low, high = math.log(self.scale[0]), math.log(self.scale[1])
        return torch.stack(
            [
                (u[:, 0] < self.flip).double(),
                (2 * u[:, 1] - 1) * math.radians(self.rotation),
                torch.exp(low + u[:, 2] * (high - low)),
                (2 * u[:, 3] - 1) * self.translation,
                (2 * u[:, 4] - 1) * self.translation,
            ],
            dim=1,
        )

    @staticmethod
    def affine_grid(grid: Tensor, params: Tensor) -> Tensor:
        """Map the sampling locations `grid` (B, H, W, 2) through the affine draw `params` (B, 5):
        in pixel units about the image centre (so a rotation stays a rotation on non-square images),
        q -> R(angle) diag(flip ? -1 : 1, 1) q / scale + translation."""
        B, H, W, _ = grid.shape
        half = grid.new_tensor([max(W - 1, 1) / 2, max(H - 1, 1) / 2])
        p = params.to(device=grid.device, dtype=torch.float64)
        q = grid.double() * half.double()
        x = torch.where(p[:, 0, None, None] > 0, -q[..., 0], q[..., 0]) / p[:, 2, None, None]
        y = q[..., 1] / p[:, 2, None, None]
        c, s = p[:, 1].cos()[:, None, None], p[:, 1].sin()[:, None, None]
        moved = torch.stack([c * x - s * y, s * x + c * y], dim=-1)
        moved = moved + p[:, None, None, 3:] * 2 * half.double()
        return (moved / half.double()).to(grid.dtype)

    def manual_seed(self, seed: int) -> AugmentedSelfReference:
        """(Re)start the private generator at `seed`; returns self."""
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        return self

    @property
    def padding_mode(self) -> str:
        return self.tps.padding_mode

    def extra_repr(self) -> str:
        return (
            f"brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation}, "
            f"hue={self.hue}, hue_mode={self.hue_mode!r}, seed={self.seed}"
            + (
                f", flip={self.flip}, rotation={self.rotation}, scale={self.scale}, translation={self.translation}"
                if self.has_affine
                else ""
            )
        )

    def sample_jitter(self, batch_size: int, *, generator: torch.Generator | None = None) -> Tensor:
        """The jitter draw of one forward call: float64 (batch_size, 4) on the generator's device
        (CPU by default), columns brightness, contrast, saturation factors and hue shift (turns)."""
        device = generator.device if generator is not None else torch.device("cpu")
        u = 2 * torch.rand(batch_size, 4, generator=generator, dtype=torch.float64, device=device) - 1
        strengths = torch.tensor([self.brightness, self.contrast, self.saturation, self.hue], dtype=torch.float64)
        factors = u * strengths.to(device)
        factors[:, :3] = (factors[:, :3] + 1).clamp(min=0)
        return factors

    def appearance(self, images: Tensor, factors: Tensor) -> Tensor:
        """a(.): the colour jitter with the factors of sample_jitter."""
        enhance = _kornia_enhance()
        factors = factors.to(device=images.device)
        out = images
        if self.brightness > 0:
            out = enhance.adjust_brightness_accumulative(out, factors[:, 0].to(images.dtype))
        if self.contrast > 0:
            out = enhance.adjust_contrast_with_mean_subtraction(out, factors[:, 1].to(images.dtype))
        if self.saturation > 0:
            out = enhance.adjust_saturation_with_gray_subtraction(out, factors[:, 2].to(images.dtype))
        if self.hue > 0:
            if self.hue_mode == "hsv":
                out = enhance.adjust_hue(out, (2 * math.pi * factors[:, 3]).to(images.dtype))
            else:
                B, C, H, W = out.shape
                matrices = hue_rotation_matrices(factors[:, 3]).to(images.dtype)
                out = torch.bmm(matrices, out.reshape(B, C, H * W)).view(B, C, H, W).clamp_(0, 1)
        return out

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """-> {"sketch", "reference", "target", "grid"}; see the class docstring."""
        check.check_float_tensor(OP, "images", images, 4, "(B, 3, H, W)")
        check.check_nonempty(OP, "images", images, "(B, 3, H, W)")
        if images.shape[1] != 3:
            raise ValueError(f"{OP}: argument 'images' must have 3 (RGB) channels, got shape {tuple(images.shape)}")
        if generator is None:
            generator = self._generator
        elif not isinstance(generator, torch.Generator):
            raise TypeError(
                f"{OP}: argument 'generator' must be a torch.Generator or None, got {type(generator).__name__}"
            )
        target = self.appearance(images, self.sample_jitter(images.shape[0], generator=generator))
        sketch = prepare_sketch(target, extract="always", extractor=self.sketch, generator=generator)
        reference, grid = self.distort(target, generator)
        return {"sketch": sketch, "reference": reference, "target": target, "grid": grid}

    def distort(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """s(.): RandomTPS's draw (`self.tps.sample_points`) -> (warped (B, C, H, W), grid (B, H, W, 2)),
        what self.tps(images, generator) returns, in one warp_with_grid call: every sample's spline
        is padded to the largest drawn lattice with zero-weight control points (T is unchanged), so
        the batch needs no split by lattice size and no gather/scatter copies."""
        B = images.shape[0]
        draws = self.tps.sample_points(B, generator=generator)
        K = max(dst.shape[1] for _, _, dst in draws)
        params = torch.zeros(B, K + 3, 2, dtype=torch.float64, device=draws[0][2].device)
        ctrl = torch.zeros(B, K, 2, dtype=torch.float64, device=params.device)
        for members, src, dst in draws:
            n = dst.shape[1]
            solved = tps_solve(src, dst)  # (Bn, n + 3, 2): n weights, then the affine part
            params[members, :n], params[members, K:] = solved[:, :n], solved[:, n:]
            ctrl[members, :n] = dst
        device = images.device
        warped, grid = tps_warp_with_grid(
            images, params.to(device), ctrl.to(device), padding_mode=self.tps.padding_mode, backend=self.tps.backend
        )
        if not self.has_affine:
            return warped, grid
        # The affine part is drawn after the spline (runs without it keep their random streams) and
        # composed with it: the reference samples the target at affine(spline grid), so the grid
        # stays the exact correspondence and the triplet loss and evaluation need nothing else.
        grid = self.affine_grid(grid, self.sample_affine(B, generator=generator))
        warped = F.grid_sample(
            images, grid.to(images.dtype), align_corners=True, padding_mode=self.tps.padding_mode, mode="bilinear"
        )
        return warped, grid


__all__ = ["WARPS", "AugmentedSelfReference", "hue_rotation_matrices"]
