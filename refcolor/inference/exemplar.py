"""ExemplarColorizer: colour a gray (or colour) image like an exemplar, with a trained exemplar model
(Xu et al., CVPR 2020; refcolor.models.exemplar_colorizer). Called like refcolor.Colorizer:

    colorizer = refcolor.ExemplarColorizer.from_checkpoint("runs/exemplar")  # run dir, .pt, .safetensors
    image = colorizer("photo.jpg", "exemplar.png")                         # PIL image of photo's size

Inputs are paths, PIL images, tensors or numpy arrays (refcolor.images.to_tensor: gray, RGB or RGBA
with transparency on white). A colour input is used through its luminance only. Any size and aspect:
the image is resized (Lanczos, as training resizes) so its shorter side is the working size (the
model's training size by default), the exemplar likewise; the model's a*b* at the working
resolution are upsampled (bilinear) to the input's size and combined with the input's own
full-resolution L*, so every edge and texture of the input is kept exactly (refcolor.lab).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from refcolor import images as im
from refcolor.data.sketch_preparation import resize_colour, scaled_size
from refcolor.lab import normalized_lab_to_rgb, rgb_to_normalized_lab
from refcolor.models.bundled import bundled_weights_path
from refcolor.models.exemplar_colorizer import ExemplarColorizer as ExemplarModel
from refcolor.models.loading import load_model, resolve_device

OP = "ExemplarColorizer"


def _rgb(batch: Tensor) -> Tensor:
    return batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch


class ExemplarColorizer:
    """Callable: colorizer(image, exemplar) -> colorized image.

    Args:
        model: a trained refcolor.models.ExemplarColorizer (put in eval mode).
        device: "cpu", "cuda", "auto", ...
        size: working resolution of the shorter side (default: the model's training size).
    """

    def __init__(self, model: ExemplarModel, *, device: str | torch.device = "cpu", size: int | None = None):
        if not isinstance(model, ExemplarModel):
            raise TypeError(
                f"{OP}: argument 'model' must be a refcolor.models.ExemplarColorizer, got {type(model).__name__}"
            )
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 8):
            raise ValueError(f"{OP}: argument 'size' must be an int >= 8 or None, got {size!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.size = size or model.config.image_size

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, *, device: str | torch.device = "cpu", **kwargs
    ) -> ExemplarColorizer:
        """From a run directory, a training checkpoint (.pt) or weights (.safetensors) of an exemplar model."""
        model = cast(ExemplarModel, load_model(path, expected_kind="exemplar", device=resolve_device(device)).model)
        return cls(model, device=device, **kwargs)

    @classmethod
    def pretrained(cls, *, device: str | torch.device = "cpu", **kwargs) -> ExemplarColorizer:
        """The bundled model (refcolor/models/pretrained/exemplar.safetensors; refcolor.models.bundled);
        options as from_checkpoint. FileNotFoundError (one line) when this build bundles none."""
        return cls.from_checkpoint(bundled_weights_path("exemplar"), device=device, **kwargs)

    @torch.no_grad()
    def colorize_tensor(self, image: im.ImageInput, exemplar: im.ImageInput) -> Tensor:
        """image (C, H, W) or (B, C, H, W), exemplar (C, H', W') or (B | 1, C, H', W') (checked by
        images.to_tensor: [0, 1] floats or uint8, C = 1, 3 or 4) -> (B, 3, H, W) in [0, 1] on the CPU.
        One exemplar is shared by the whole batch."""
        images = im.to_tensor(image, "image", op=OP)
        exemplars = im.to_tensor(exemplar, "exemplar", op=OP)
        if exemplars.shape[0] not in (1, images.shape[0]):
            raise ValueError(
                f"{OP}: argument 'exemplar' must hold 1 image or one per image ({images.shape[0]}), "
                f"got {exemplars.shape[0]}"
            )
        outputs = []
        for b in range(images.shape[0]):
            full = _rgb(images[b : b + 1]).float()
            luminance_full, _ = rgb_to_normalized_lab(full)
            working = resize_colour(full, scaled_size(full.shape[-2], full.shape[-1], self.size))
            luminance, _ = rgb_to_normalized_lab(working)
            ex = _rgb(exemplars[b if exemplars.shape[0] > 1 else 0][None]).float()
            ex = resize_colour(ex, scaled_size(ex.shape[-2], ex.shape[-1], self.size))
            ab = self.model(luminance.to(self.device), ex.to(self.device)).ab.float().cpu()
            if ab.shape[-2:] != full.shape[-2:]:
                ab = F.interpolate(ab, size=full.shape[-2:], mode="bilinear", align_corners=False)
            outputs.append(normalized_lab_to_rgb(luminance_full, ab)[0])
        return torch.stack(outputs)

    def __call__(self, image: im.ImageInput, exemplar: im.ImageInput) -> Image.Image | Tensor:
        """A (B, 3, H, W) tensor in [0, 1] when `image` is a tensor, else a PIL image of the image's
        size (paths, PIL images and arrays hold one image; an array batch gives its first)."""
        out = self.colorize_tensor(image, exemplar)
        return out if isinstance(image, Tensor) else im.tensor_to_pil(out[0])

    def colorize_file(self, image: str | os.PathLike, exemplar: im.ImageInput, out: str | os.PathLike) -> Path:
        """Colorize an image file and write the result (format from out's suffix, PNG when none)."""
        result = im.tensor_to_pil(self.colorize_tensor(image, exemplar)[0])
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        result.save(out, format=None if out.suffix else "PNG")
        return out


__all__ = ["ExemplarColorizer"]
