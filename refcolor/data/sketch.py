"""Sketch extraction for training: the colour image's outlines as a white (1.0) image with dark
lines, batched in torch so it runs on the training device.

- `xdog`: the extended difference of Gaussians (XDoG; Winnemoeller, Kyprianidis and Olsen,
  "XDoG: An eXtended difference-of-Gaussians compendium including advanced image stylization",
  Computers & Graphics 36(6), 2012), the outline extractor of Tag2Pix (Kim et al., ICCV 2019) and
  most re-implementations of reference-based colorization.
- `gradient_sketch`: a thresholded Sobel gradient magnitude, a simpler extractor for comparison.
- `SketchExtractor`: either one with per-sample random parameters, so a model trained on its
  sketches does not overfit one line style.

Every parameter may be a float or a per-sample tensor (B,) (or 0-dim), on any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from refcolor.data.image_folder import EXTENSIONS as IMAGE_EXTENSIONS
from refcolor.data.image_folder import list_images, open_rgb
from refcolor.ops import _validation as check

# Rec. 601 luma, as OpenCV's COLOR_RGB2GRAY (the grayscale Tag2Pix thresholds), PIL's "L" and
# kornia.color.rgb_to_grayscale: sketches match what those tools would extract.
LUMA = (0.299, 0.587, 0.114)
METHODS = ("xdog", "gradient")
EXTENSIONS = tuple(f".{e}" for e in IMAGE_EXTENSIONS)  # what sketch_files picks up in a folder


def _check_images(op: str, images) -> Tensor:
    check.check_float_tensor(op, "images", images, 4, "(B, C, H, W)")
    check.check_nonempty(op, "images", images, "(B, C, H, W)")
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"{op}: argument 'images' must have C = 3 (RGB) or 1 (gray) channels, got shape {tuple(images.shape)}"
        )
    return images


def luminance(images: Tensor) -> Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) Rec. 601 luma, in float32 at least; gray input passes through."""
    compute = torch.promote_types(images.dtype, torch.float32)  # half-precision blurs band visibly
    images = images.to(compute)
    if images.shape[1] == 1:
        return images
    weights = torch.tensor(LUMA, dtype=compute, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _per_sample(op: str, name: str, value, batch: int, ref: Tensor, *, positive: bool = False) -> Tensor:
    """A float, a 0-dim or a (batch,) tensor -> (batch, 1, 1, 1) in ref's dtype and device."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise TypeError(f"{op}: argument '{name}' must be a float or a tensor (B,), got {type(value).__name__}")
    value = torch.as_tensor(value, dtype=ref.dtype).to(ref.device)
    if value.dim() == 0:
        value = value.expand(batch)
    if value.shape != (batch,):
        raise ValueError(f"{op}: argument '{name}' must be a float or have shape ({batch},), got {tuple(value.shape)}")
    if not torch.compiler.is_compiling():  # reads the values: one sync on the GPU
        bad = ~torch.isfinite(value) | (value <= 0 if positive else torch.zeros_like(value, dtype=torch.bool))
        if bool(bad.any()):
            need = "finite and > 0" if positive else "finite"
            raise ValueError(f"{op}: argument '{name}' must be {need}, got {value.tolist()}")
    return value.view(batch, 1, 1, 1)


def _gaussian_taps(sigma: Tensor, radius: int) -> Tensor:
    """(B,) standard deviations -> (B, 2 radius + 1) normalised 1-D kernels, zero beyond ceil(3 sigma)."""
    taps = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    w = torch.exp(-(taps**2) / (2 * sigma[:, None] ** 2)) * (taps.abs() <= torch.ceil(3 * sigma[:, None]))
    return w / w.sum(dim=1, keepdim=True)  # truncated kernels still sum to 1


def gaussian_blurs(gray: Tensor, sigmas: Tensor) -> Tensor:
    """Blur every sample of `gray` (B, 1, H, W) with each of its own standard deviations `sigmas`
    (B, S) (pixels): -> (B, S, H, W). Separable depthwise convolutions with reflect padding. Each
    kernel spans ceil(3 sigma) taps either side (zeros beyond, so a sample blurs as it would alone
    in its batch), capped at H - 1 / W - 1 (the most reflect padding can mirror)."""
    B, _, H, W = gray.shape
    x = gray.reshape(1, B, H, W)  # samples as channels: one depthwise conv blurs each with its own kernel
    blurs = []
    for sig in sigmas.to(gray.dtype).unbind(1):  # per column: its own radius (mkldnn is slow on mixed groups)
        radius = math.ceil(3 * float(sig.max()))
        rh, rw = min(radius, H - 1), min(radius, W - 1)
        y = F.pad(x, (rw, rw, rh, rh), mode="reflect") if radius else x
        y = F.conv2d(y, _gaussian_taps(sig, rw).view(B, 1, 1, 2 * rw + 1), groups=B)
        blurs.append(F.conv2d(y, _gaussian_taps(sig, rh).view(B, 1, 2 * rh + 1, 1), groups=B))
    return torch.cat(blurs, dim=0).view(sigmas.shape[1], B, H, W).transpose(0, 1)


def xdog(
    images: Tensor,
    *,
    sigma: float | Tensor = 0.5,
    k: float | Tensor = 2.5,
    tau: float | Tensor = 0.95,
    epsilon: float | Tensor = -0.005,
    phi: float | Tensor = 150.0,
) -> Tensor:
    """XDoG line extraction: (B, 3 or 1, H, W) in [0, 1] -> (B, 1, H, W) in [0, 1], white (1.0)
    background with dark lines, images' dtype (computed in float32 at least).

    With L the Rec. 601 luminance and G_s a Gaussian blur of standard deviation s pixels
    (reflect padding, radius ceil(3 s)):

        D = G_sigma(L) - tau * G_{k sigma}(L)
        sketch = min(1, 1 + tanh(phi * (D - epsilon)))

    i.e. Winnemoeller et al.'s soft threshold T(D) = 1 where D >= epsilon, 1 + tanh(phi (D - epsilon))
    below it. In a flat region D = (1 - tau) L >= 0, so it stays white whatever its colour (no filled
    dark areas); on the dark side of an edge D < 0 and a line appears, about as wide as k * sigma.

    Args (floats, or per-sample tensors (B,)):
        sigma: the smaller Gaussian's standard deviation in pixels, > 0: the finest detail drawn.
            Default 0.5 (Tag2Pix: 0.35-0.45; below ~0.4 thin anti-aliased outlines break up).
        k: ratio of the two standard deviations, > 0 (1.6 approximates a Laplacian of Gaussian;
            Tag2Pix draws k in [2, 3]; larger k, bolder lines). Default 2.5, Tag2Pix's middle.
        tau: weight of the wider Gaussian (< 1 keeps flat regions white; Tag2Pix: 0.95).
        epsilon: the threshold on D (luminance units): edges whose D stays above it draw nothing.
            Slightly negative, so noise and faint texture leave no specks.
        phi: the threshold's steepness (per luminance unit), > 0: large values give hard binary lines
            (Tag2Pix uses 1e9), small ones grey, anti-aliased strokes.
    """
    op = "xdog"
    _check_images(op, images)
    gray = luminance(images)
    B = gray.shape[0]
    sigma = _per_sample(op, "sigma", sigma, B, gray, positive=True)
    k = _per_sample(op, "k", k, B, gray, positive=True)
    tau = _per_sample(op, "tau", tau, B, gray)
    epsilon = _per_sample(op, "epsilon", epsilon, B, gray)
    phi = _per_sample(op, "phi", phi, B, gray, positive=True)
    blurred = gaussian_blurs(gray, torch.cat([sigma, sigma * k], dim=1).view(B, 2))
    diff = blurred[:, :1] - tau * blurred[:, 1:]
    return (1 + torch.tanh(phi * (diff - epsilon))).clamp_(0, 1).to(images.dtype)


def gradient_sketch(images: Tensor, *, threshold: float | Tensor = 0.04, softness: float | Tensor = 0.08) -> Tensor:
    """Gradient-magnitude lines: (B, 3 or 1, H, W) in [0, 1] -> (B, 1, H, W) in [0, 1], white (1.0)
    with dark lines, images' dtype.

    m = |Sobel(L)| / 8 is the luminance change per pixel (a step of contrast c gives m = c / 2 on
    the two pixels beside it; replicate padding), and sketch = 1 - clamp((m - threshold) / softness, 0, 1):
    white below `threshold`, black from `threshold + softness` on. Unlike XDoG, both sides of an
    edge darken (lines about 2 px wide) and there is no smoothing, so noise shows.

    Args (floats, or per-sample tensors (B,)):
        threshold: the smallest luminance change per pixel that draws (>= 0 in practice).
        softness: the ramp from white to black, > 0.
    """
    op = "gradient_sketch"
    _check_images(op, images)
    gray = luminance(images)
    B = gray.shape[0]
    threshold = _per_sample(op, "threshold", threshold, B, gray)
    softness = _per_sample(op, "softness", softness, B, gray, positive=True)
    sobel_x = torch.tensor([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=gray.dtype, device=gray.device) / 8
    weight = torch.stack([sobel_x, sobel_x.t()]).unsqueeze(1)  # (2, 1, 3, 3): d/dx, d/dy
    grad = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), weight)
    magnitude = grad.pow(2).sum(dim=1, keepdim=True).sqrt()
    return (1 - ((magnitude - threshold) / softness).clamp(0, 1)).to(images.dtype)


# The parameters each method draws per sample, in draw order.
PARAMS = {"xdog": ("sigma", "k", "tau", "epsilon", "phi"), "gradient": ("threshold", "softness")}


def _check_range(name: str, value) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, Sequence)
        or isinstance(value, (str, bytes))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        or value[0] > value[1]
    ):
        raise ValueError(
            f"SketchExtractor: argument '{name}' must be a finite float or a range (low, high) with low <= high, "
            f"got {value!r}"
        )
    return float(value[0]), float(value[1])


class SketchExtractor(nn.Module):
    """Sketches with a random line style per sample: (B, 3 or 1, H, W) in [0, 1] -> (B, 1, H, W).

    Every parameter of the chosen method (`xdog` or `gradient_sketch`) is a float (fixed) or a range
    (low, high) from which each sample draws its own value uniformly. The defaults span thin, faint
    to bold, hard lines: sigma 0.4-0.7 px, k 2-3 and tau 0.95 (Tag2Pix draws sigma 0.35-0.45, k 2-3,
    tau 0.95; below sigma ~0.4 the thin anti-aliased outlines of downscaled art break into dashes),
    epsilon -0.01-0, phi 50-300 (soft to nearly binary strokes); gradient threshold 0.02-0.06,
    softness 0.08.

    Randomness: one draw of (B, number of parameters) uniforms per call, in float64 on the CPU (or
    on `generator`'s device), moved to the images' device afterwards, so a seeded run gives the same
    sketches on every device. Pass `generator` to forward, or `seed` to the constructor for a
    private generator; with neither, torch's global CPU generator is used.
    """

    def __init__(
        self,
        method: str = "xdog",
        *,
        sigma=(0.4, 0.7),
        k=(2.0, 3.0),
        tau=0.95,
        epsilon=(-0.01, 0.0),
        phi=(50.0, 300.0),
        threshold=(0.02, 0.06),
        softness=0.08,
        seed: int | None = None,
    ):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"SketchExtractor: argument 'method' must be one of {METHODS}, got {method!r}")
        self.method = method
        given = {"sigma": sigma, "k": k, "tau": tau, "epsilon": epsilon, "phi": phi}
        given |= {"threshold": threshold, "softness": softness}
        self.ranges = {name: _check_range(name, given[name]) for name in PARAMS[method]}
        for name in ("sigma", "k", "phi", "softness"):
            if name in self.ranges and self.ranges[name][0] <= 0:
                raise ValueError(f"SketchExtractor: argument '{name}' must be > 0, got {given[name]!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"SketchExtractor: argument 'seed' must be an int or None, got {type(seed).__name__}")
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def manual_seed(self, seed: int) -> SketchExtractor:
        """(Re)start the private generator at `seed`; returns self."""
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        return self

    def extra_repr(self) -> str:
        ranges = ", ".join(f"{n}={lo}" if lo == hi else f"{n}=({lo}, {hi})" for n, (lo, hi) in self.ranges.items())
        return f"method={self.method!r}, {ranges}, seed={self.seed}"

    def sample_params(self, batch_size: int, *, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The random draw of one forward call: {name: float64 (batch_size,)} on the generator's
        device (CPU by default)."""
        if generator is None:
            generator = self._generator
        elif not isinstance(generator, torch.Generator):
            raise TypeError(
                "SketchExtractor: argument 'generator' must be a torch.Generator or None, "
                f"got {type(generator).__name__}"
            )
        device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(batch_size, len(self.ranges), generator=generator, dtype=torch.float64, device=device)
        return {name: lo + (hi - lo) * u[:, i] for i, (name, (lo, hi)) in enumerate(self.ranges.items())}

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """-> sketches (B, 1, H, W) in [0, 1], images' dtype; see the class docstring."""
        _check_images("SketchExtractor", images)
        params = {n: v.to(images.device) for n, v in self.sample_params(images.shape[0], generator=generator).items()}
        return xdog(images, **params) if self.method == "xdog" else gradient_sketch(images, **params)


def _read_rgb(path: Path) -> Tensor:
    """(1, 3, H, W) float32 in [0, 1], decoded as everywhere else (image_folder.open_rgb: EXIF
    orientation, transparency on white, any mode to RGB)."""
    array = np.asarray(open_rgb(path), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def sketch_files(
    src: str | Path,
    dst: str | Path,
    extractor: SketchExtractor,
    *,
    generator: torch.Generator | None = None,
    warn: Callable[[str], None] = print,
) -> tuple[int, int]:
    """Sketch an image file, or every image under a folder (image_folder.list_images: recursively,
    by extension, sorted, hidden entries skipped),
    into grayscale PNGs of the same size: a file goes to `dst` (or into `dst` when it is a folder),
    a folder's files to the same relative paths under `dst`, with the suffix .png.

    Unreadable images are skipped with one `warn(message)` each. Returns (written, skipped).
    Raises FileNotFoundError when `src` does not exist; errors writing the output propagate.
    """
    src, dst = Path(src), Path(dst)
    if src.is_dir():
        files = [Path(p) for p in list_images(src, EXTENSIONS)]  # hidden files skipped, as in training
        targets = [dst / p.relative_to(src).with_suffix(".png") for p in files]
    elif src.is_file():
        files, targets = [src], [dst / (src.stem + ".png") if dst.is_dir() else dst]
    else:
        raise FileNotFoundError(f"no such file or folder: {src}")
    written = skipped = 0
    for path, target in zip(files, targets, strict=True):
        try:
            image = _read_rgb(path)
        except Exception as exc:  # any decoder failure (truncated, corrupt, bomb): never fatal
            warn(f"skipping unreadable image {path}: {type(exc).__name__}: {exc}".replace("\n", " "))
            skipped += 1
            continue
        with torch.no_grad():
            sketch = extractor(image, generator)
        target.parent.mkdir(parents=True, exist_ok=True)
        pixels = (sketch[0, 0] * 255).round().to(torch.uint8).numpy()
        Image.fromarray(pixels, "L").save(target, format="PNG")
        written += 1
    return written, skipped


__all__ = [
    "EXTENSIONS",
    "LUMA",
    "METHODS",
    "SketchExtractor",
    "gaussian_blurs",
    "gradient_sketch",
    "luminance",
    "sketch_files",
    "xdog",
]
