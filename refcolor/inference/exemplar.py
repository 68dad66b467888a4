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
from typing import Any, cast

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from refcolor import images as im
from refcolor.data.sketch_preparation import prepare_sketch, resize_colour, scaled_size
from refcolor.inference import flats
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
        flat: one flat colour per area enclosed by the input's lines, the lines on top
            (refcolor.inference.flats; the default of colorize_tensor's `flat`). The regions are
            those of the input's line drawing (prepare_sketch: a line drawing as it is, any other
            image outlined by XDoG), so flats are meant for line art: a photo has no enclosed
            areas, and its flats posterize it and drop its shading. Off by default: it scores
            below the soft output on the held-out split (docs/training_log.md, "Flats").
        flat_method, threshold, gap, min_area: as refcolor.inference.flats.flatten's.
    """

    def __init__(
        self,
        model: ExemplarModel,
        *,
        device: str | torch.device = "cpu",
        size: int | None = None,
        flat: bool = False,
        flat_method: str = "median",
        threshold: float = flats.THRESHOLD,
        gap: int = flats.GAP,
        min_area: int = flats.MIN_AREA,
    ):
        if not isinstance(model, ExemplarModel):
            raise TypeError(
                f"{OP}: argument 'model' must be a refcolor.models.ExemplarColorizer, got {type(model).__name__}"
            )
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 8):
            raise ValueError(f"{OP}: argument 'size' must be an int >= 8 or None, got {size!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.size = size or model.config.image_size
        if flat_method not in flats.METHODS:
            raise ValueError(
                f"{OP}: argument 'flat_method' must be one of {', '.join(flats.METHODS)}, got {flat_method!r}"
            )
        self.flat = bool(flat)
        self.flat_method = flat_method
        self.line_options: dict[str, Any] = {"threshold": threshold, "gap": gap, "min_area": min_area}

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
    def colorize_tensor(self, image: im.ImageInput, exemplar: im.ImageInput, *, flat: bool | None = None) -> Tensor:
        """image (C, H, W) or (B, C, H, W), exemplar (C, H', W') or (B | 1, C, H', W') (checked by
        images.to_tensor: [0, 1] floats or uint8, C = 1, 3 or 4) -> (B, 3, H, W) in [0, 1] on the CPU.
        One exemplar is shared by the whole batch. flat: flat colours (default: the constructor's)."""
        if self.flat if flat is None else flat:
            return self.flats(image, exemplar)[1].image
        return self._soft(image, exemplar)

    @torch.no_grad()
    def flats(self, image: im.ImageInput, exemplar: im.ImageInput) -> tuple[Tensor, flats.Flats]:
        """Soft and flat output of one model pass: (the soft output (B, 3, H, W) in [0, 1], the
        Flats over the line regions of the input's line drawing; refcolor.inference.flats)."""
        soft = self._soft(image, exemplar)
        lines = prepare_sketch(_rgb(im.to_tensor(image, "image", op=OP)).float()).cpu()
        return soft, flats.flatten(soft, lines, method=self.flat_method, **self.line_options)

    @torch.no_grad()
    def _soft(self, image: im.ImageInput, exemplar: im.ImageInput) -> Tensor:
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

    def __call__(
        self, image: im.ImageInput, exemplar: im.ImageInput, *, flat: bool | None = None
    ) -> Image.Image | Tensor:
        """A (B, 3, H, W) tensor in [0, 1] when `image` is a tensor, else a PIL image of the image's
        size (paths, PIL images and arrays hold one image; an array batch gives its first).
        flat: flat colours (default: the constructor's)."""
        out = self.colorize_tensor(image, exemplar, flat=flat)
        return out if isinstance(image, Tensor) else im.tensor_to_pil(out[0])

    def colorize_file(
        self,
        image: str | os.PathLike,
        exemplar: im.ImageInput,
        out: str | os.PathLike,
        *,
        flat: bool | None = None,
        flats_layer: str | os.PathLike | None = None,
    ) -> Path:
        """Colorize an image file and write the result (format from out's suffix, PNG when none);
        flat: flat colours (default: the constructor's); flats_layer: also write the flats layer
        there (RGBA PNG, lines transparent)."""
        return flats.save_outputs(
            lambda: self._soft(image, exemplar),
            lambda: self.flats(image, exemplar),
            out,
            flat=self.flat if flat is None else flat,
            flats_layer=flats_layer,
        )


__all__ = ["ExemplarColorizer"]
