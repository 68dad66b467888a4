"""Image handling shared by the inference tools: reading user files, telling a line drawing from a
colour image (whose outline is then extracted), and choosing a working size for a model.

Tensors here are float32 in [0, 1]; the models work in [-1, 1] (to_model_range / from_model_range).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from refcolor.data.image_folder import EXTENSIONS, open_rgb
from refcolor.data.sketch import luminance, xdog

# A line drawing is (nearly) gray: its mean chroma (max - min over RGB) stays below this. Colour
# illustrations and photos sit well above 0.05; JPEG noise on a scanned sketch stays below 0.02.
LINE_ART_MAX_CHROMA = 0.03


def read_image(path: str | os.PathLike) -> Image.Image:
    """An RGB PIL image (EXIF orientation applied, transparency on white); FileNotFoundError or
    ValueError (one line) when the file is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        return open_rgb(path)
    except Exception as err:  # any decoder failure: truncated, corrupt, not an image, bomb
        raise ValueError(f"cannot read image {path}: {type(err).__name__}: {err}".replace("\n", " ")) from err


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files under `folder`, recursively, sorted (hidden entries skipped)."""
    folder = Path(folder)
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower().lstrip(".") in EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def pil_to_tensor(image: Image.Image) -> Tensor:
    """PIL image -> (C, H, W) float32 in [0, 1] (C = 1 for mode L, else 3)."""
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)


def tensor_to_pil(image: Tensor) -> Image.Image:
    """(C, H, W) or (1, C, H, W) in [0, 1], C = 1 or 3 -> PIL image (L or RGB)."""
    if image.dim() == 4:
        image = image[0]
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if array.shape[0] == 1:
        return Image.fromarray(array[0].numpy(), "L")
    return Image.fromarray(array.permute(1, 2, 0).numpy(), "RGB")


def is_line_drawing(image: Tensor) -> bool:
    """True when a (3, H, W) or (1, H, W) image in [0, 1] is gray enough to be a sketch already."""
    if image.shape[0] == 1:
        return True
    chroma = image.max(dim=0).values - image.min(dim=0).values
    return float(chroma.mean()) < LINE_ART_MAX_CHROMA


def as_sketch(image: Tensor, extract: str = "auto") -> Tensor:
    """(C, H, W) in [0, 1] -> (1, H, W) sketch, white background with dark lines.

    extract: "auto" (a colour image gets its outline extracted, a gray one is used as it is),
    "always" or "never". Extraction is XDoG with its fixed default parameters (the middle of the
    training range)."""
    if extract not in ("auto", "always", "never"):
        raise ValueError(f"argument 'extract' must be 'auto', 'always' or 'never', got {extract!r}")
    rgb = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    if extract == "never" or (extract == "auto" and is_line_drawing(image)):
        return luminance(rgb.unsqueeze(0))[0]
    return xdog(rgb.unsqueeze(0))[0]


def working_size(height: int, width: int, base: int, multiple: int) -> tuple[int, int]:
    """Size to run a model at: the shorter side scaled to `base` (the training size), the aspect kept,
    each side rounded to a multiple of `multiple` (the model's downsampling), at least `multiple`."""
    if height < 1 or width < 1:
        raise ValueError(f"image must be at least 1x1, got {width}x{height}")
    scale = base / min(height, width)

    def fit(side: int) -> int:
        return max(multiple, int(round(side * scale / multiple)) * multiple)

    return fit(height), fit(width)


def resize(image: Tensor, size: tuple[int, int], mode: str = "area") -> Tensor:
    """(C, H, W) -> (C, *size). 'area' when shrinking (no aliasing of thin lines), bicubic when enlarging."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrinking = size[0] * size[1] < image.shape[-2] * image.shape[-1]
    if mode == "area" and not shrinking:
        mode = "bicubic"
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(image.unsqueeze(0), size=size, mode=mode, **kwargs)[0]
    return out.clamp(0, 1)


def to_model_range(image: Tensor) -> Tensor:
    return image * 2 - 1


def from_model_range(image: Tensor) -> Tensor:
    return ((image + 1) / 2).clamp(0, 1)



__all__ = [
    "LINE_ART_MAX_CHROMA",
    "as_sketch",
    "from_model_range",
    "image_files",
    "is_line_drawing",
    "pil_to_tensor",
    "read_image",
    "resize",
    "tensor_to_pil",
    "to_model_range",
    "working_size",
]
