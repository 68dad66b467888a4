"""Output at the sketch's own resolution with its own crisp lines (Colorizer, GuidedColorizer).

The models paint at their working resolution (the training size). Upsampling their output alone
turns every line into a soft band: a 1 px line drawn at 512 px is a 1-2 px line at 128 px, which
bicubic 4x upsampling spreads over 4-8 px of gray. So `lay_lines`:

1. removes the lines the model painted: working-resolution pixels where the model's input sketch
   is dark (grown by one pixel, since the model's line also darkens its neighbours) take the colour
   of their nearest line-free pixels, filled ring by ring from the outside (`fill_lines`), so two
   regions meet in the middle of the line they share;
2. upsamples those line-free colours to the sketch's size (images.resize_output, bicubic);
3. multiplies them by the sketch's lines at full resolution (prepared by
   sketch_preparation.prepare_sketch at the sketch's own size, so a colour image's lines are its
   outline drawn by the same extractor, a line drawing's are its own gray strokes).

Why multiply and not a Lab blend (L from the lines, a*b* from the colours): the lines are ink over
paint, which is what a multiply does (the "multiply" layer digital colourists put line art in):
white paper (1.0) leaves the colour exactly as the model painted it, a black stroke is black
whatever lies under it, and an antialiased gray edge darkens the colour under it in proportion,
keeping its hue. Taking L from the sketch would throw away the lightness the model painted (dark
red and pink share a*b*) everywhere, and the Lab round trip changes line-free pixels by its own
rounding and gamut clipping. So pixels far from any line are exactly the upsampled model output.

A sketch already at the working size keeps the model's output as it is: its lines are drawn at
the sketch's resolution, with nothing blurred to restore (the colorizers skip lay_lines then).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from refcolor.images import resize_output

# A working-resolution sketch pixel darker than this is a line the model painted over. XDoG and
# line-art strokes are near 0; their antialiased edges run up to ~0.9, and pixels at 0.9 and above
# change the model's colour by 10% at most, which the multiply by the full-resolution lines redoes.
LINE_THRESHOLD = 0.9
LINE_GROWTH = 1  # px at the working resolution: the model's line darkens its neighbours too


def line_mask(sketch: Tensor, threshold: float = LINE_THRESHOLD, grow: int = LINE_GROWTH) -> Tensor:
    """(B, 1, h, w) sketch in [0, 1] -> (B, 1, h, w) bool: its lines (darker than `threshold`),
    grown by `grow` pixels (chessboard distance)."""
    mask = (sketch < threshold).to(sketch.dtype)
    if grow > 0:
        mask = F.max_pool2d(mask, 2 * grow + 1, stride=1, padding=grow)
    return mask > 0


def fill_lines(colours: Tensor, mask: Tensor) -> Tensor:
    """(B, C, h, w) colours with the pixels of `mask` (B, 1, h, w) replaced by the colours of their
    nearest unmasked pixels: ring by ring, each masked pixel next to a known one takes the mean of
    its known 3x3 neighbours. Unmasked pixels are returned unchanged; an image whose every pixel is
    masked is returned as it is."""
    known = (~mask).to(colours.dtype)
    filled = colours * known
    while True:
        unknown = known == 0
        weight = F.avg_pool2d(known, 3, stride=1, padding=1)
        grown = unknown & (weight > 0)
        if not bool(grown.any()):
            break
        total = F.avg_pool2d(filled, 3, stride=1, padding=1)  # sums only known pixels: the rest hold 0
        filled = torch.where(grown, total / weight.clamp_min(1e-12), filled)
        known = torch.where(grown, torch.ones_like(known), known)
    return torch.where(known > 0, filled, colours)


def lay_lines(colours: Tensor, working_sketch: Tensor, lines: Tensor) -> Tensor:
    """The model's output at the sketch's size with the sketch's own lines (module docstring).

    colours: (B, 3, h, w) in [0, 1], the model's output at the working resolution, padding cropped.
    working_sketch: (B, 1, h, w) in [0, 1], the sketch the model saw (same crop).
    lines: (B, 1, H, W) in [0, 1], the sketch's lines at its own size.
    -> (B, 3, H, W) in [0, 1]."""
    if colours.shape[-2:] != working_sketch.shape[-2:] or colours.shape[0] != working_sketch.shape[0]:
        raise ValueError(
            f"lay_lines: argument 'working_sketch' must be (B, 1, h, w) like the colours {tuple(colours.shape)}, "
            f"got {tuple(working_sketch.shape)}"
        )
    if lines.shape[0] != colours.shape[0] or lines.shape[1] != 1:
        raise ValueError(f"lay_lines: argument 'lines' must be ({colours.shape[0]}, 1, H, W), got {tuple(lines.shape)}")
    return line_free_colours(colours, working_sketch, (lines.shape[-2], lines.shape[-1])) * lines.to(colours.dtype)


def line_free_colours(colours: Tensor, working_sketch: Tensor, size: tuple[int, int]) -> Tensor:
    """Steps 1-2 of lay_lines: the model's colours (B, 3, h, w) without its painted lines (where
    `working_sketch` (B, 1, h, w) is dark), upsampled to `size` (H, W). What the flats
    (refcolor.inference.flats) draw each region's colour from."""
    return resize_output(fill_lines(colours, line_mask(working_sketch)), size)


__all__ = ["LINE_GROWTH", "LINE_THRESHOLD", "fill_lines", "lay_lines", "line_free_colours", "line_mask"]
