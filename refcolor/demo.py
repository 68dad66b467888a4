"""The main-job demo: GuidingPainter's hint generation (`segment_hint_colors`) on a real image.

The image is split into regions by a small k-means on colour + position (a stand-in for
GuidingPainter's learned segmentation net), regions are ranked largest first, and the op paints the
first Nh of them with their mean colour for each Nh. The result is one PNG strip:
original | region map | hints for each Nh (unhinted pixels light grey).
"""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import torch
from PIL import Image, ImageDraw

from refcolor.backends import choose_backend
from refcolor.ops import segment_hint_colors
from refcolor.ops.segment_hint_colors import DTYPES

GAP = 4  # px of white between panels
CAPTION = 14  # px of caption band above the panels
UNHINTED_GREY = 0.85


def load_image(path=None) -> torch.Tensor:
    """(1, 3, H, W) float32 in [0, 1]; alpha composited on white. Default: the bundled sample."""
    if path is None:
        with resources.as_file(resources.files("refcolor") / "assets" / "sample.png") as p:
            return load_image(p)
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    white.alpha_composite(rgba)
    array = np.asarray(white.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def _rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (N, 3) in [0, 1] -> CIE Lab (D65): distances there track perceived colour differences."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = rgb.new_tensor([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ m.T / rgb.new_tensor([0.95047, 1.0, 1.08883])
    f = torch.where(xyz > 216 / 24389, xyz.clamp_min(1e-12) ** (1 / 3), (24389 / 27 * xyz + 16) / 116)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)


def kmeans_segments(
    image: torch.Tensor, num_segments: int, *, spatial_weight: float = 20.0, iters: int = 15, seed: int = 0
) -> torch.Tensor:
    """One-hot regions (1, K, H, W) of a (1, 3, H, W) image, largest region first.

    Features are Lab colour plus (x, y) scaled so the image's longer side spans `spatial_weight`
    Lab units: colour dominates (flat-colour regions stay whole) but far-apart areas of one colour
    split, so regions are spatially coherent. k-means++ init from a seeded generator: deterministic.
    """
    _, _, H, W = image.shape
    rgb = image[0].permute(1, 2, 0).reshape(-1, 3).float()
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    pos = torch.stack([xs, ys], dim=-1).reshape(-1, 2) * (spatial_weight / max(H, W))
    feats = torch.cat([_rgb_to_lab(rgb), pos], dim=1)
    sq = (feats**2).sum(1)

    def dist2(centres):  # (N, K) squared distances, via the expansion: no (N, K, D) temporary
        return (sq[:, None] - 2 * feats @ centres.T + (centres**2).sum(1)[None]).clamp_min(0)

    gen = torch.Generator().manual_seed(seed)
    centres = feats[torch.randint(len(feats), (1,), generator=gen)]
    d2 = dist2(centres)[:, 0]
    for _ in range(1, num_segments):  # k-means++: next centre drawn with probability ~ D^2
        if d2.sum() <= 0:  # fewer distinct pixels than K: duplicate centres, their clusters stay empty
            d2 = torch.ones_like(d2)
        centres = torch.cat([centres, feats[torch.multinomial(d2, 1, generator=gen)]])
        d2 = torch.minimum(d2, dist2(centres[-1:])[:, 0])
    for _ in range(iters):
        labels = dist2(centres).argmin(1)
        onehot = torch.nn.functional.one_hot(labels, len(centres)).float()
        counts = onehot.sum(0)
        # Matmul sums instead of index_add_: deterministic; empty clusters keep their centre.
        centres = torch.where(counts[:, None] > 0, onehot.T @ feats / counts.clamp_min(1)[:, None], centres)
    labels = dist2(centres).argmin(1)
    counts = torch.bincount(labels, minlength=num_segments)
    order = torch.sort(counts, descending=True, stable=True).indices  # the op favours earlier segments
    rank = torch.empty_like(order)
    rank[order] = torch.arange(num_segments)
    segments = torch.nn.functional.one_hot(rank[labels], num_segments).T.reshape(1, num_segments, H, W)
    return segments.to(image.dtype)


def _palette(n: int) -> torch.Tensor:
    """n distinct colours (n, 3): golden-ratio hue steps, alternating brightness."""
    import colorsys

    return torch.tensor(
        [colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.95 if i % 2 else 0.7) for i in range(n)],
        dtype=torch.float32,
    )


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _to_pil(panel: torch.Tensor) -> Image.Image:
    array = (panel[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(array)


def run_demo(
    image_path=None,
    out_path="refcolor_demo.png",
    num_segments=30,
    hint_counts=(0, 1, 3, 10, 30),
    backend="auto",
    seed=0,
) -> dict:
    """Run the demo, save the strip to `out_path` and return its numbers.

    Returns {"out_path", "image_size" (W, H), "strip_size" (W, H), "backend" (the one that ran),
    "num_segments", "hint_counts", "coverage" {Nh: fraction of pixels hinted},
    "psnr" {Nh: dB of hints-else-global-mean vs the image}}. PSNR never falls as Nh grows: a region
    switching from the global mean to its own mean colour can only lower the squared error.
    """
    hint_counts = [int(n) for n in hint_counts]
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    bad = [n for n in hint_counts if not 0 <= n <= num_segments]
    if bad or not hint_counts:
        raise ValueError(
            f"hint counts must be a non-empty list within 0..num_segments={num_segments}, got {hint_counts}"
        )
    image = load_image(image_path)
    _, _, H, W = image.shape
    if num_segments > H * W:
        raise ValueError(f"num_segments={num_segments} exceeds the image's {H * W} pixels")

    chosen = choose_backend("segment_hint_colors", backend, image.device, image.dtype, DTYPES)

    segments = kmeans_segments(image, num_segments, seed=seed)
    region_map = torch.einsum("kc,bkhw->bchw", _palette(num_segments), segments)
    global_mean = image.mean(dim=(2, 3), keepdim=True)
    panels, captions = [image, region_map], ["original", f"{num_segments} regions"]
    coverage, psnr = {}, {}
    for nh in hint_counts:
        hints, mask = segment_hint_colors(segments, image, nh, backend=chosen)
        hinted = mask > 0
        panels.append(torch.where(hinted, hints, UNHINTED_GREY))
        captions.append(f"Nh={nh}")
        coverage[nh] = hinted.float().mean().item()
        psnr[nh] = _psnr(torch.where(hinted, hints, global_mean), image)

    strip = Image.new("RGB", (len(panels) * W + (len(panels) - 1) * GAP, H + CAPTION), "white")
    draw = ImageDraw.Draw(strip)
    for i, (panel, caption) in enumerate(zip(panels, captions, strict=True)):
        x = i * (W + GAP)
        strip.paste(_to_pil(panel), (x, CAPTION))
        draw.text((x + 2, 1), caption, fill="black")  # PIL's built-in bitmap font: no font files needed
    strip.save(out_path)
    return {
        "out_path": str(out_path),
        "image_size": (W, H),
        "strip_size": strip.size,
        "backend": chosen,
        "num_segments": num_segments,
        "hint_counts": hint_counts,
        "coverage": coverage,
        "psnr": psnr,
    }
