"""Flats: one colour per area enclosed by the sketch's lines, the first stage of colouring comics,
webtoons and cels, on a layer under the line art.

    flats = flatten(colours, sketch)                  # colours: a soft output (B, 3, H, W) in [0, 1]
    flats.image                                       # (B, 3, H, W): the flats with the lines on top
    flats.layer                                       # (B, 4, H, W) RGBA: the flats, lines transparent

1. **Regions.** refcolor.ops.line_regions of the sketch at its full resolution (THRESHOLD, GAP,
   MIN_AREA below, chosen by measurement: docs/training_log.md).
2. **One colour per region.** Where a hint covers most of a region's paper pixels, the hint's colour
   over it (the colour the person chose); otherwise one drawn from the soft output over the
   region's paper pixels (line pixels carry the model's painted line and its blur, so they have
   weight 0): the per-channel median ("median", the default), or the mean ("mean",
   refcolor.ops.region_mean). The median won on the held-out split: it ignores the colour a soft
   output bleeds a few pixels across every border, which tints a large region's mean.
3. **Lines on top.** The flats multiplied by the sketch's ink (ink over paint, as in
   refcolor.inference.full_resolution): paper leaves a region's colour exact, a black stroke is
   black, an antialiased edge darkens the colour under it. The ink is the sketch on and within
   1 px of its line pixels (the strokes and their antialiased edges) and white elsewhere: a faint
   speck lighter than the threshold, away from every line, is paper to the regions and stays paper
   in the picture (at 256 px XDoG leaves such specks in 0.1 to 0.2% of held-out pixels, and
   multiplied in, they marked a flat region by up to 44/255).

The layer is the flats alone as straight RGBA: opaque on paper, alpha 0 on line pixels (sketch <
threshold), the layer an artist puts under the line art and paints shading on.

`snap_regions` makes GuidingPainter's proposed regions follow the drawing the same way: each line
region joins the proposed region that covers most of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from refcolor import images
from refcolor.ops import line_regions, region_mean

# Defaults of the flats' line regions (measured: docs/training_log.md, "Flats"). The sketches are
# XDoG outlines or line art, near binary: a threshold anywhere in 0.5..0.95 marks the same pixels
# (at 128 px, 13.6% of held-out pixels are below 0.5 and 14.1% below 0.95).
THRESHOLD = 0.8
GAP = 0
MIN_AREA = 0
METHODS = ("median", "mean")
HINT_SHARE = 0.5  # a region takes the hint's colour when hints cover more than this share of its paper


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"flatten: argument 'method' must be one of {', '.join(METHODS)}, got {method!r}")


def region_median(image: Tensor, labels: Tensor, num_regions: int, weight: Tensor | None = None) -> Tensor:
    """Per-region, per-channel median of `image` (B, C, H, W) over the pixels of `labels` (B, H, W)
    whose `weight` (B, 1, H, W) is > 0 (all pixels when None): (B, num_regions, C), the lower median
    (the middle value of an odd count, the lower of the two middle ones of an even count). A region
    with no such pixel takes the median over all its pixels; one with no pixel at all, 0."""
    B, C, H, W = image.shape
    out = image.new_zeros(B, num_regions, C)
    for b in range(B):
        keys = labels[b].reshape(-1)
        values = image[b].reshape(C, -1)
        chosen = torch.ones_like(keys, dtype=torch.bool) if weight is None else weight[b].reshape(-1) > 0
        counts = torch.bincount(keys[chosen], minlength=num_regions)
        # Regions whose every pixel has weight 0 (e.g. slivers of line) fall back to all their pixels.
        chosen = chosen | (counts == 0)[keys]
        counts = torch.bincount(keys[chosen], minlength=num_regions)
        k, v = keys[chosen], values[:, chosen]
        # Sort each channel by value, then (stably) by region: each region's values in ascending order.
        order = v.argsort(dim=1)
        by_region = k[order].argsort(dim=1, stable=True)
        ranked = v.gather(1, order.gather(1, by_region))
        starts = counts.cumsum(0) - counts
        middle = (starts + (counts - 1).clamp_min(0) // 2).clamp_max(max(ranked.shape[1] - 1, 0))
        if ranked.shape[1] > 0:
            out[b] = torch.where(counts[:, None] > 0, ranked[:, middle].T, 0)
    return out


def region_colours(colours: Tensor, labels: Tensor, num_regions: int, paper: Tensor, method: str = "median") -> Tensor:
    """(B, R, 3) one colour per region drawn from `colours` (B, 3, H, W) over the pixels where
    `paper` (B, 1, H, W) bool is True, by `method` ("median" or "mean")."""
    _check_method(method)
    weight = paper.to(colours.dtype)
    if method == "mean":
        _, means = region_mean(colours, labels, num_regions, weight)
        # A region of line pixels only (weight sum 0) takes the mean over all its pixels.
        _, fallback = region_mean(colours, labels, num_regions)
        counts = torch.stack(
            [torch.bincount(lab[p[0]], minlength=num_regions) for lab, p in zip(labels, paper, strict=True)]
        )
        return torch.where(counts[..., None] > 0, means, fallback)
    return region_median(colours, labels, num_regions, weight)


@dataclass
class Flats:
    """Flat colour output of a batch.

    image: (B, 3, H, W) in [0, 1], the flats with the sketch's lines multiplied over them (ink).
    layer: (B, 4, H, W) in [0, 1], straight RGBA: the flats, alpha 0 on line pixels.
    labels: (B, H, W) int64, the line regions (refcolor.ops.line_regions).
    colours: (B, R, 3) in [0, 1], each region's colour (R = the batch's largest region count;
        rows past a sample's own count are 0).
    hinted: (B, R) bool, the regions that took a hint's colour.
    """

    image: Tensor
    layer: Tensor
    labels: Tensor
    colours: Tensor
    hinted: Tensor


def flatten(
    colours: Tensor,
    sketch: Tensor,
    *,
    hints: Tensor | None = None,
    hint_mask: Tensor | None = None,
    labels: Tensor | None = None,
    method: str = "median",
    threshold: float = THRESHOLD,
    gap: int = GAP,
    min_area: int = MIN_AREA,
) -> Flats:
    """Flats of a soft colour output (module docstring).

    colours: (B, 3, H, W) in [0, 1], the soft output at the sketch's size (best without the model's
        painted lines: refcolor.inference.full_resolution.line_free_colours).
    sketch: (B, 1, H, W) in [0, 1], white paper and dark lines, at full resolution.
    hints, hint_mask: optional (B, 3, H, W) colours in [0, 1] and (B, 1, H, W) bool where they were
        given: a region whose paper is more than half hinted takes the hints' mean over it.
    labels: the line regions (B, H, W) when already known (else line_regions(sketch, threshold,
        gap, min_area)).
    method: "median" or "mean" of the soft output over a region's paper pixels.
    """
    _check_method(method)
    if colours.dim() != 4 or colours.shape[1] != 3:
        raise ValueError(f"flatten: argument 'colours' must be (B, 3, H, W), got {tuple(colours.shape)}")
    B, _, H, W = colours.shape
    if sketch.shape != (B, 1, H, W):
        raise ValueError(f"flatten: argument 'sketch' must be (B, 1, H, W) = {(B, 1, H, W)}, got {tuple(sketch.shape)}")
    if (hints is None) != (hint_mask is None):
        raise ValueError("flatten: arguments 'hints' and 'hint_mask' must be given together")
    colours = colours.float()
    sketch = sketch.to(colours.device, colours.dtype)
    if labels is None:
        labels = line_regions(sketch, threshold, gap, min_area)
    if labels.shape != (B, H, W):
        raise ValueError(f"flatten: argument 'labels' must be (B, H, W) = {(B, H, W)}, got {tuple(labels.shape)}")
    labels = labels.to(colours.device)
    num_regions = int(labels.max()) + 1
    paper = sketch >= threshold
    chosen = region_colours(colours, labels, num_regions, paper, method)
    hinted = torch.zeros(B, num_regions, dtype=torch.bool, device=colours.device)
    if hints is not None and hint_mask is not None:
        covered = (hint_mask.to(colours.device) & paper).to(colours.dtype)
        _, share = region_mean(covered, labels, num_regions, paper.to(colours.dtype))
        hinted = share[..., 0] > HINT_SHARE
        _, hint_means = region_mean(hints.to(colours.device, colours.dtype), labels, num_regions, covered)
        chosen = torch.where(hinted[..., None], hint_means, chosen)
    chosen = chosen.clamp(0, 1)
    index = labels.reshape(B, H * W, 1).expand(B, H * W, 3)
    flat = chosen.gather(1, index).transpose(1, 2).reshape(B, 3, H, W)
    layer = torch.cat([flat, paper.to(flat.dtype)], dim=1)
    return Flats(image=flat * ink(sketch, threshold), layer=layer, labels=labels, colours=chosen, hinted=hinted)


def ink(sketch: Tensor, threshold: float = THRESHOLD) -> Tensor:
    """The lines laid over the flats: `sketch` (B, 1, H, W) on and within 1 px (8-neighbourhood)
    of its line pixels (sketch < threshold), 1 elsewhere."""
    line = (sketch < threshold).to(sketch.dtype)
    near = torch.nn.functional.max_pool2d(line, 3, stride=1, padding=1) > 0
    return torch.where(near, sketch, torch.ones_like(sketch))


def borders_on_lines(labels: Tensor, sketch: Tensor, threshold: float = THRESHOLD) -> tuple[Tensor, Tensor]:
    """How well regions follow the drawing: per sample of `labels` (B, H, W), (the border pixels on
    or within 1 px (8-neighbourhood) of a line pixel of `sketch` (B, 1, H, W) (sketch < threshold),
    all border pixels), int64 (B,) each. A border pixel has a 4-neighbour of another region."""
    border = torch.zeros_like(labels, dtype=torch.bool)
    horizontal = labels[:, :, 1:] != labels[:, :, :-1]
    vertical = labels[:, 1:, :] != labels[:, :-1, :]
    border[:, :, 1:] |= horizontal
    border[:, :, :-1] |= horizontal
    border[:, 1:, :] |= vertical
    border[:, :-1, :] |= vertical
    line = (sketch < threshold).to(torch.float32)
    near = torch.nn.functional.max_pool2d(line, 3, stride=1, padding=1)[:, 0] > 0
    return (border & near).sum(dim=(1, 2)), border.sum(dim=(1, 2))


def save_image(image: Tensor, path: str | os.PathLike) -> Path:
    """Write a (3, H, W) image in [0, 1] (format from the suffix, PNG when none); -> the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images.tensor_to_pil(image).save(path, format=None if path.suffix else "PNG")
    return path


def layer_to_pil(layer: Tensor) -> Image.Image:
    """A (4, H, W) straight-RGBA flats layer in [0, 1] -> PIL RGBA image."""
    array = (layer.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    return Image.fromarray(array.permute(1, 2, 0).numpy(), "RGBA")


def save_layer(layer: Tensor, path: str | os.PathLike) -> Path:
    """Write a (4, H, W) flats layer as an RGBA PNG (whatever the suffix: the layer needs alpha)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layer_to_pil(layer).save(path, format="PNG")
    return path


def save_outputs(
    soft: Callable[[], Tensor],
    both: Callable[[], tuple[Tensor, Flats]],
    out: str | os.PathLike,
    *,
    flat: bool,
    flats_layer: str | os.PathLike | None,
) -> Path:
    """A colorizer's colorize_file: write the first image of the soft output (soft()) or of the flats
    to `out`, and the flats layer to `flats_layer` when given. Flats are computed (both() -> (soft,
    Flats), one model pass) only when either needs them. -> out's path."""
    if flats_layer is None and not flat:
        return save_image(soft()[0], out)
    soft_output, result = both()
    if flats_layer is not None:
        save_layer(result.layer[0], flats_layer)
    return save_image(result.image[0] if flat else soft_output[0], out)


def snap_regions(channel_map: Tensor, labels: Tensor) -> Tensor:
    """GuidingPainter's proposed regions snapped to the drawing: (B, H, W) int64 where every line
    region of `labels` (B, H, W) takes the channel of `channel_map` (B, H, W) int64 (the model's
    region channel per pixel, 0 = highest priority) that covers most of its pixels; ties go to
    the higher-priority (lower) channel. Channel numbers, and so the priority order, are the model's."""
    if channel_map.shape != labels.shape or channel_map.dim() != 3:
        raise ValueError(
            f"snap_regions: argument 'labels' must be (B, H, W) like the channel map {tuple(channel_map.shape)}, "
            f"got {tuple(labels.shape)}"
        )
    channels = int(channel_map.max()) + 1
    out = torch.empty_like(channel_map)
    for b in range(channel_map.shape[0]):
        regions = int(labels[b].max()) + 1
        votes = torch.bincount(
            labels[b].reshape(-1) * channels + channel_map[b].reshape(-1), minlength=regions * channels
        )
        winner = votes.reshape(regions, channels).argmax(dim=1)  # the first maximum: the lower channel
        out[b] = winner[labels[b]]
    return out


def paint_channels(model_map: Tensor, snapped_map: Tensor, num_hints: Tensor) -> Tensor:
    """The region channels GuidingPainter paints from when `num_hints` (B,) channels are hinted on
    the snapped regions: (B, H, W) int64, the snapped channel where either map holds a hinted
    channel (< num_hints), else the model's own. So every hinted channel covers exactly its snapped
    region, and the unhinted rest keeps the segmentation the model proposed and was trained on:
    with no hint the model paints as without snapping (snapping its unhinted regions too cost 0.4 to
    0.7 dB at 0 hints on the held-out split), with every channel hinted it paints the snapped map."""
    if model_map.shape != snapped_map.shape or model_map.dim() != 3:
        raise ValueError(
            f"paint_channels: argument 'snapped_map' must be (B, H, W) like the model's map "
            f"{tuple(model_map.shape)}, got {tuple(snapped_map.shape)}"
        )
    k = torch.as_tensor(num_hints, device=model_map.device).reshape(-1, 1, 1)
    return torch.where((model_map < k) | (snapped_map < k), snapped_map, model_map)


__all__ = [
    "GAP",
    "METHODS",
    "MIN_AREA",
    "THRESHOLD",
    "Flats",
    "borders_on_lines",
    "flatten",
    "paint_channels",
    "layer_to_pil",
    "region_colours",
    "region_median",
    "save_image",
    "save_outputs",
    "save_layer",
    "snap_regions",
]
