"""Image helpers shared by training, evaluation and inference. The one way user images enter
refcolor's inference tools (Colorizer, GuidedColorizer, the CLI, a server): `to_tensor` takes a
path, a PIL image, a tensor or a numpy array and returns a checked (B, C, H, W) float32 batch in
[0, 1].

- Paths and PIL images are decoded as training decodes its images (image_folder.to_rgb): EXIF
  orientation applied, transparency composited on white, gray / palette / 16-bit modes to RGB.
- Tensors (C, H, W) or (B, C, H, W) and arrays (H, W), (H, W, C) or (B, H, W, C) with C = 1, 3 or
  4 (the 4th channel is alpha, composited on white): floating point in [0, 1], or uint8 (0..255).
  Anything else is a one-line ValueError / TypeError naming the argument, expected and actual.

The models work in [-1, 1] (to_model_range / from_model_range). Training, evaluation and inference
share these helpers, so this module imports none of them.
"""

from __future__ import annotations

import colorsys
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from refcolor.data.image_folder import list_images, open_rgb, to_rgb

ImageInput = str | os.PathLike | Image.Image | Tensor | np.ndarray
RANGE_TOLERANCE = 1e-3  # float inputs may overshoot [0, 1] by rounding this much (then clamped)


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
    """Image files under `folder`, listed as training lists them (image_folder.list_images:
    recursive, sorted, hidden entries skipped)."""
    return [Path(p) for p in list_images(folder)]


def pil_to_tensor(image: Image.Image) -> Tensor:
    """PIL image -> (3, H, W) float32 in [0, 1], decoded like a training image (to_rgb)."""
    array = np.asarray(to_rgb(image), dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def tensor_to_pil(image: Tensor) -> Image.Image:
    """(C, H, W) or (1, C, H, W) in [0, 1], C = 1 or 3 -> PIL image (L or RGB)."""
    if image.dim() == 4:
        image = image[0]
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if array.shape[0] == 1:
        return Image.fromarray(array[0].numpy(), "L")
    return Image.fromarray(array.permute(1, 2, 0).numpy(), "RGB")


def _composite_alpha(batch: Tensor) -> Tensor:
    """(B, 4, H, W) straight (not premultiplied) alpha -> (B, 3, H, W) on white."""
    rgb, alpha = batch[:, :3], batch[:, 3:]
    return rgb * alpha + (1 - alpha)


def _checked_values(op: str, name: str, batch: Tensor, given: str) -> Tensor:
    """uint8 -> / 255; floating point must lie in [0, 1] (within RANGE_TOLERANCE); else an error."""
    if batch.dtype == torch.uint8:
        return batch.float() / 255
    if not batch.is_floating_point():
        raise ValueError(
            f"{op}: argument '{name}' must be floating point in [0, 1] or uint8, got {given} of {batch.dtype}"
        )
    batch = batch.detach().float()
    low, high = float(batch.min()), float(batch.max())
    if not (low >= -RANGE_TOLERANCE and high <= 1 + RANGE_TOLERANCE):  # also catches NaN
        looks_8_bit = 2 < high <= 255  # a slight overshoot is a bug upstream, not a 0..255 image
        hint = " (0..255 values: divide by 255 or pass uint8)" if looks_8_bit else ""
        raise ValueError(f"{op}: argument '{name}' must hold values in [0, 1], got [{low:.4g}, {high:.4g}]{hint}")
    return batch.clamp(0, 1)


def to_tensor(value: ImageInput, name: str = "image", *, op: str = "refcolor") -> Tensor:
    """A path, PIL image, tensor or numpy array -> (B, C, H, W) float32 in [0, 1], C = 1 or 3, on
    the tensor's device (CPU for everything else). See the module docstring for the accepted forms;
    errors start with `op` and name the argument `name`."""
    if isinstance(value, (str, os.PathLike)):
        return pil_to_tensor(read_image(value)).unsqueeze(0)
    if isinstance(value, Image.Image):
        return pil_to_tensor(value).unsqueeze(0)
    if isinstance(value, np.ndarray):
        layouts = "(H, W), (H, W, C) or (B, H, W, C) with C = 1, 3 or 4"
        if value.dtype == np.uint16:  # 16-bit PNGs read with other libraries
            value = value.astype(np.float32) / 65535
        if value.ndim == 2:
            value = value[..., None]
        if value.ndim not in (3, 4) or value.shape[-1] not in (1, 3, 4) or 0 in value.shape:
            raise ValueError(f"{op}: argument '{name}' must be an array {layouts}, got shape {value.shape}")
        if value.dtype.kind not in "uf" or (value.dtype.kind == "u" and value.dtype != np.uint8):
            raise ValueError(
                f"{op}: argument '{name}' must be a float array in [0, 1] or uint8, got dtype {value.dtype}"
            )
        batch = torch.from_numpy(np.array(value)).movedim(-1, -3)  # a copy: arrays may be read-only
        batch = batch.unsqueeze(0) if batch.dim() == 3 else batch
        given = f"array {value.shape}"
    elif isinstance(value, Tensor):
        layouts = "(C, H, W) or (B, C, H, W) with C = 1, 3 or 4"
        if value.dim() not in (3, 4) or value.shape[-3] not in (1, 3, 4) or 0 in value.shape:
            raise ValueError(f"{op}: argument '{name}' must be a tensor {layouts}, got shape {tuple(value.shape)}")
        batch = value.unsqueeze(0) if value.dim() == 3 else value
        given = f"tensor {tuple(value.shape)}"
    else:
        raise TypeError(
            f"{op}: argument '{name}' must be a path, a PIL image, a tensor or a numpy array, "
            f"got {type(value).__name__}"
        )
    batch = _checked_values(op, name, batch, given)
    return _composite_alpha(batch) if batch.shape[1] == 4 else batch


def resize_output(images: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, C, h, w) in [0, 1] -> (B, C, *size): a model's output back at the input's size
    (antialiased bicubic, so shrinking does not alias), clamped to [0, 1]."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def region_palette(count: int) -> Tensor:
    """(count, 3) distinct light colours in [0, 1]: golden-ratio hue steps, alternating saturation so
    neighbours in rank differ in two ways; light enough for black numbers to stay readable."""
    colors = [
        colorsys.hsv_to_rgb((0.07 + i * 0.618034) % 1.0, 0.55 if i % 2 else 0.35, 1.0 if i % 3 else 0.9)
        for i in range(count)
    ]
    return torch.tensor(colors, dtype=torch.float32).reshape(count, 3)


def to_model_range(image: Tensor) -> Tensor:
    return image * 2 - 1


def from_model_range(image: Tensor) -> Tensor:
    return ((image + 1) / 2).clamp(0, 1)


__all__ = [
    "RANGE_TOLERANCE",
    "ImageInput",
    "from_model_range",
    "image_files",
    "pil_to_tensor",
    "read_image",
    "region_palette",
    "resize_output",
    "tensor_to_pil",
    "to_model_range",
    "to_tensor",
]
