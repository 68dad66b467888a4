"""Colorizer: reference-based colorization with a trained SCFTColorizer.

    colorizer = refcolor.Colorizer.from_checkpoint("runs/scft")     # run dir, .pt or .safetensors
    colorizer = refcolor.Colorizer.pretrained()                     # the bundled scft model
    image = colorizer("sketch.png", "reference.jpg")               # PIL image of the sketch's size

Inputs are paths, PIL images, tensors or numpy arrays (refcolor.images.to_tensor:
transparency on white, EXIF orientation, range and layout checked). The sketch may be a line
drawing or a colour image; either becomes the sketch the model was trained on through
refcolor.data.sketch_preparation.prepare_sketch (colour: resized, then outlined; line art: shrunk
keeping its strokes dark). Any size and aspect: the shorter side goes to the training size, the
aspect is kept and the sketch padded with white to the model's multiple; the output is cropped
back and resized to the sketch's size, with the sketch's own full-resolution lines laid over the
upsampled colours (keep_lines; refcolor.inference.full_resolution). The reference only lends
colours: it is resized to the training size with its sides rounded to the model's multiple.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import torch
from PIL import Image
from torch import Tensor

from refcolor import images as im
from refcolor.data.sketch_preparation import (
    EXTRACT_MODES,
    crop,
    pad_to_multiple,
    prepare_sketch,
    resize_colour,
    scaled_size,
)
from refcolor.inference import flats
from refcolor.inference.full_resolution import line_free_colours
from refcolor.models.bundled import bundled_weights_path
from refcolor.models.loading import load_model, resolve_device
from refcolor.models.scft_colorizer import SCFTColorizer

ImageLike = im.ImageInput


class Colorizer:
    """Callable: colorizer(sketch, reference) -> colorized image.

    Args:
        model: a trained SCFTColorizer (put in eval mode).
        device: "cpu", "cuda", "auto", ...
        size: working resolution of the shorter side (default: the model's training size).
        extract: "auto" (outline colour sketches, keep gray line art), "always" or "never".
        keep_lines: lay the sketch's own lines, at its full resolution, over the upsampled colours
            (crisp lines at any size); False returns the model's output resized alone.
        flat: one flat colour per area enclosed by the sketch's lines, the lines on top
            (refcolor.inference.flats; the default of colorize_tensor's `flat`). Off by default: on
            the held-out split the flats score below the soft output (docs/training_log.md, "Flats").
        flat_method, threshold, gap, min_area: how the flats choose a region's colour and find
            the line regions (refcolor.inference.flats).
    """

    def __init__(
        self,
        model: SCFTColorizer,
        *,
        device: str | torch.device = "cpu",
        size: int | None = None,
        extract: str = "auto",
        keep_lines: bool = True,
        flat: bool = False,
        flat_method: str = "median",
        threshold: float = flats.THRESHOLD,
        gap: int = flats.GAP,
        min_area: int = flats.MIN_AREA,
    ):
        if not isinstance(model, SCFTColorizer):
            raise TypeError(f"Colorizer: argument 'model' must be a SCFTColorizer, got {type(model).__name__}")
        if extract not in EXTRACT_MODES:
            raise ValueError(f"Colorizer: argument 'extract' must be 'auto', 'always' or 'never', got {extract!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"Colorizer: argument 'size' must be a positive int or None, got {size!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.size = size or model.config.image_size
        self.extract = extract
        self.keep_lines = bool(keep_lines)
        if flat_method not in flats.METHODS:
            raise ValueError(
                f"Colorizer: argument 'flat_method' must be one of {', '.join(flats.METHODS)}, got {flat_method!r}"
            )
        self.flat = bool(flat)
        self.flat_method = flat_method
        self.line_options: dict[str, Any] = {"threshold": threshold, "gap": gap, "min_area": min_area}

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu", **kwargs) -> Colorizer:
        """From a run directory, a training checkpoint (.pt) or weights (.safetensors) of an scft model."""
        # load_model checked the kind and __init__ checks the type.
        model = cast(SCFTColorizer, load_model(path, expected_kind="scft", device=resolve_device(device)).model)
        return cls(model, device=device, **kwargs)

    @classmethod
    def pretrained(cls, *, device: str | torch.device = "cpu", **kwargs) -> Colorizer:
        """The scft model bundled with refcolor (refcolor/models/pretrained/scft.safetensors, its card
        scft.md); options as from_checkpoint. FileNotFoundError when this build bundles none."""
        return cls.from_checkpoint(bundled_weights_path("scft"), device=device, **kwargs)

    # ------------------------------------------------------------------ inputs
    def prepare_sketch(self, sketch: Tensor) -> tuple[Tensor, tuple[int, int, int, int]]:
        """(B, C, H, W) in [0, 1] -> (model input (B, 1, h', w') in [-1, 1] padded with white to the
        model's multiple, box (top, left, h, w) of the sketch inside it)."""
        size = scaled_size(sketch.shape[-2], sketch.shape[-1], self.size)
        prepared = prepare_sketch(sketch.float(), size, extract=self.extract)
        padded, box = pad_to_multiple(prepared, self.model.config.downsampling, 1.0)
        return im.to_model_range(padded).to(self.device), box

    def prepare_reference(self, reference: Tensor) -> Tensor:
        """(B, C, H, W) in [0, 1] -> (B, 3, h', w') in [-1, 1], shorter side at the training size,
        sides rounded to the model's multiple (a stretch of at most half a multiple: the reference
        lends colours, not positions)."""
        d = self.model.config.downsampling
        h, w = scaled_size(reference.shape[-2], reference.shape[-1], self.size)
        size = (max(d, round(h / d) * d), max(d, round(w / d) * d))
        reference = reference.expand(-1, 3, -1, -1) if reference.shape[1] == 1 else reference
        return im.to_model_range(resize_colour(reference.float(), size)).to(self.device)

    # ------------------------------------------------------------------ call
    def _paint(self, sketch: ImageLike, reference: ImageLike) -> tuple[Tensor, Tensor, Tensor]:
        """-> (soft output (B, 3, H, W), its colours without the model's painted lines at the
        sketch's size, the sketch's lines (B, 1, H, W) at its size), all in [0, 1] on the CPU."""
        sketches = im.to_tensor(sketch, "sketch", op="Colorizer")
        references = im.to_tensor(reference, "reference", op="Colorizer")
        if references.shape[0] not in (1, sketches.shape[0]):
            raise ValueError(
                f"Colorizer: argument 'reference' must hold 1 image or one per sketch ({sketches.shape[0]}), "
                f"got {references.shape[0]}"
            )
        soft, line_free, all_lines = [], [], []
        size = (sketches.shape[-2], sketches.shape[-1])
        for b in range(sketches.shape[0]):
            s, box = self.prepare_sketch(sketches[b : b + 1])
            r = self.prepare_reference(references[b if references.shape[0] > 1 else 0][None])
            out = crop(im.from_model_range(self.model(s, r).float()), box).cpu()
            working_sketch = crop(im.from_model_range(s.float()), box).cpu()
            lines = prepare_sketch(sketches[b : b + 1].float(), extract=self.extract).cpu()  # at its own size
            free = line_free_colours(out, working_sketch, size)
            # A sketch at the working size keeps the model's own lines: nothing blurred to restore.
            if self.keep_lines and out.shape[-2:] != sketches.shape[-2:]:
                soft.append((free * lines)[0])
            else:
                soft.append(im.resize_output(out, size)[0])
            line_free.append(free[0])
            all_lines.append(lines[0])
        return torch.stack(soft), torch.stack(line_free), torch.stack(all_lines)

    @torch.no_grad()
    def flats(self, sketch: ImageLike, reference: ImageLike) -> tuple[Tensor, flats.Flats]:
        """Soft and flat output of one model pass: (the soft output (B, 3, H, W) in [0, 1] as
        colorize_tensor(flat=False) gives it, the Flats: .image the flat picture, .layer the RGBA
        flats layer with transparent lines; refcolor.inference.flats), on the CPU."""
        soft, line_free, lines = self._paint(sketch, reference)
        return soft, flats.flatten(line_free, lines, method=self.flat_method, **self.line_options)

    @torch.no_grad()
    def colorize_tensor(self, sketch: ImageLike, reference: ImageLike, *, flat: bool | None = None) -> Tensor:
        """sketch (C, H, W) or (B, C, H, W), reference (C, H', W') or (B | 1, C, H', W'), checked by
        images.to_tensor (in [0, 1] or uint8; C = 1, 3 or 4) -> (B, 3, H, W) in [0, 1] on the CPU.
        One reference is shared by the whole batch. flat: flat colours (default: the constructor's)."""
        if self.flat if flat is None else flat:
            return self.flats(sketch, reference)[1].image
        return self._paint(sketch, reference)[0]

    def __call__(self, sketch: ImageLike, reference: ImageLike, *, flat: bool | None = None) -> Image.Image | Tensor:
        """A (B, 3, H, W) tensor in [0, 1] when `sketch` is a tensor, else a PIL image of the
        sketch's size (paths, PIL images and arrays hold one image; an array batch gives its first).
        flat: flat colours (default: the constructor's)."""
        out = self.colorize_tensor(sketch, reference, flat=flat)
        return out if isinstance(sketch, Tensor) else im.tensor_to_pil(out[0])

    def colorize_file(
        self,
        sketch: str | os.PathLike,
        reference: ImageLike,
        out: str | os.PathLike,
        *,
        flat: bool | None = None,
        flats_layer: str | os.PathLike | None = None,
    ) -> Path:
        """Colorize a sketch file and write the result (format from out's suffix, PNG when none);
        flat: flat colours (default: the constructor's); flats_layer: also write the flats layer
        there (RGBA PNG, lines transparent)."""
        return flats.save_outputs(
            lambda: self.colorize_tensor(sketch, reference, flat=False),
            lambda: self.flats(sketch, reference),
            out,
            flat=self.flat if flat is None else flat,
            flats_layer=flats_layer,
        )


__all__ = ["Colorizer"]
