"""The sketch a model sees, made the same way in training, evaluation and inference.

`prepare_sketch` is the one function every path calls (the training tasks and AugmentedSelfReference,
the GuidingPainter evaluation, Colorizer and GuidedColorizer):

- A colour image is resized to the working size first (`resize_colour`: the Lanczos resampling
  ImageFolder uses for training images) and outlined there, as training outlines images that are
  already at the training size. Outlines drawn at full size and then shrunk fade: a 512 px disc
  outlined and area-shrunk to 64 px keeps its outline no darker than 0.66 (0.0 when resized
  first; tests/test_sketch_preparation.py).
- Line art (a gray image, `is_line_drawing`) is shrunk by `downsample_lines`, which keeps strokes as
  dark and connected as drawn, like the 1-2 px dark XDoG strokes of training. Area averaging, the
  usual choice, turns a 2 px black line at 8x reduction into 0.75 gray, a stroke the models never
  saw.

Sizes: `scaled_size` puts the shorter side at the training size with the aspect kept (never
stretched to the model's multiple); `pad_to_multiple` then pads (white for sketches) to the
model's multiple, and `crop` removes the padding from the model's output.

Tensors are (B, C, H, W) float in [0, 1]; sketches are (B, 1, H, W), white (1.0) with dark lines.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from refcolor.data.image_folder import resize_lanczos
from refcolor.data.sketch import SketchExtractor, luminance, xdog

# A line drawing is (nearly) gray: its mean chroma (max - min over RGB) stays below this. Colour
# illustrations and photos sit well above 0.05; JPEG noise on a scanned sketch stays below 0.02.
LINE_ART_MAX_CHROMA = 0.03
EXTRACT_MODES = ("auto", "always", "never")


def is_line_drawing(images: Tensor) -> Tensor:
    """(B,) bool: True where a (B, 3 or 1, H, W) image in [0, 1] is gray enough to be a sketch already."""
    if images.shape[1] == 1:
        return torch.ones(images.shape[0], dtype=torch.bool, device=images.device)
    chroma = images.amax(dim=1) - images.amin(dim=1)
    return chroma.float().mean(dim=(1, 2)) < LINE_ART_MAX_CHROMA


def scaled_size(height: int, width: int, base: int) -> tuple[int, int]:
    """(h, w) with the shorter side at `base` and the aspect kept (each side rounded, at least 1)."""
    if height < 1 or width < 1:
        raise ValueError(f"image must be at least 1x1, got {width}x{height}")
    scale = base / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_colour(images: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, C, H, W) in [0, 1] -> (B, C, *size), resampled exactly as ImageFolder resamples training
    images (PIL Lanczos on 8-bit pixels, image_folder.resize_lanczos). Images already at `size` are
    returned as they are (no 8-bit rounding)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    mode = "L" if images.shape[1] == 1 else "RGB"
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for array in pixels:
        image = Image.fromarray(array[..., 0] if mode == "L" else array, mode)
        resized = np.asarray(resize_lanczos(image, (size[1], size[0])), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(resized.reshape(size[0], size[1], -1).copy()).permute(2, 0, 1))
    return torch.stack(out).to(device=images.device, dtype=images.dtype)


def downsample_lines(gray: Tensor, size: tuple[int, int]) -> Tensor:
    """Line art (B, 1, H, W) in [0, 1] -> (B, 1, *size), strokes kept dark and connected.

    Shrinking: every output pixel takes the darkest pixel of its footprint (adaptive max-pooling of
    the darkness 1 - x; footprints overlap by one pixel at non-integer ratios), so a stroke of any
    width stays as dark as drawn, at least one pixel wide, with no gaps (its pixels' footprints
    cover it). Measured on a 2 px black line at 8x reduction: 0.0 here, 0.75 with area averaging
    (tests/test_sketch_preparation.py). Dense hatching becomes solid, as it would in an XDoG
    sketch drawn at that size. Enlarging: bicubic, clamped to [0, 1]."""
    H, W = gray.shape[-2:]
    if (H, W) == tuple(size):
        return gray
    if size[0] <= H and size[1] <= W:
        return 1 - F.adaptive_max_pool2d(1 - gray, size)
    out = F.interpolate(gray, size=size, mode="bicubic", align_corners=False)
    return out.clamp(0, 1)


def normalize_white(gray: Tensor) -> Tensor:
    """Line art (B, 1, H, W) with its paper brought to white: each image divided by its median
    (the background of a drawing, as lines cover well under half of it), when that median is above
    0.5 (a light background at all). Training sketches have a pure white background."""
    median = gray.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)
    scale = torch.where(median > 0.5, median, torch.ones_like(median))
    return (gray / scale).clamp(0, 1)


def prepare_sketch(
    images: Tensor,
    size: tuple[int, int] | None = None,
    *,
    extract: str = "auto",
    extractor: SketchExtractor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(B, 3 or 1, H, W) in [0, 1] -> the (B, 1, *size) sketches a model sees (size: default H, W).

    extract: "auto" (colour images are outlined, line drawings kept), "always" or "never".
    Outlined images are resized first, then `extractor` (training: random-style SketchExtractor
    with `generator`) or, when None, XDoG at its fixed default parameters (inference, evaluation)
    draws the lines. Line drawings: luminance, paper to white (normalize_white), downsample_lines."""
    if extract not in EXTRACT_MODES:
        raise ValueError(f"prepare_sketch: argument 'extract' must be one of {EXTRACT_MODES}, got {extract!r}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"prepare_sketch: argument 'images' must be (B, 3 or 1, H, W), got {tuple(images.shape)}")
    if size is None:
        size = (images.shape[-2], images.shape[-1])
    elif len(size) != 2:
        raise ValueError(f"prepare_sketch: argument 'size' must be (H, W), got {size!r}")
    else:
        size = (int(size[0]), int(size[1]))
    if extract == "always":
        outline = resize_colour(images, size)
        return extractor(outline, generator) if extractor is not None else xdog(outline)
    if extract == "never":
        return downsample_lines(normalize_white(luminance(images)), size)
    lines = is_line_drawing(images).tolist()
    return torch.cat(
        [
            prepare_sketch(
                image[None], size, extract="never" if line else "always", extractor=extractor, generator=generator
            )
            for image, line in zip(images, lines, strict=True)
        ]
    )


def pad_to_multiple(images: Tensor, multiple: int, value: float) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Pad (B, C, H, W) evenly on both sides with `value` so H and W are multiples of `multiple`.
    -> (padded, box) with box = (top, left, H, W), the original image inside the padded one."""
    H, W = images.shape[-2:]
    ph, pw = -H % multiple, -W % multiple
    top, left = ph // 2, pw // 2
    if ph or pw:
        images = F.pad(images, (left, pw - left, top, ph - top), value=value)
    return images, (top, left, H, W)


def crop(images: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    """The (top, left, H, W) box of pad_to_multiple cut out of (..., H', W')."""
    top, left, H, W = box
    return images[..., top : top + H, left : left + W]


__all__ = [
    "EXTRACT_MODES",
    "LINE_ART_MAX_CHROMA",
    "crop",
    "downsample_lines",
    "is_line_drawing",
    "normalize_white",
    "pad_to_multiple",
    "prepare_sketch",
    "resize_colour",
    "scaled_size",
]
