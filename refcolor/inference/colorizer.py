"""Colorizer: reference-based colorization with a trained SCFTColorizer.

    colorizer = refcolor.Colorizer.from_checkpoint("runs/scft")     # run dir, .pt or .safetensors
    image = colorizer("sketch.png", "reference.jpg")               # PIL image of the sketch's size

The sketch may be a line drawing or a colour image (its outline is extracted first, as in
training); sketch and reference may have any size and aspect: each is resized so its shorter side
is the training size (sides rounded to the model's downsampling), and the output is resized back
to the sketch's size.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from refcolor.inference import images as im
from refcolor.inference.loading import load_model, resolve_device
from refcolor.models.scft_colorizer import SCFTColorizer

ImageLike = str | os.PathLike | Image.Image | Tensor


class Colorizer:
    """Callable: colorizer(sketch, reference) -> colorized image.

    Args:
        model: a trained SCFTColorizer (put in eval mode).
        device: "cpu", "cuda", "auto", ...
        size: working resolution of the shorter side (default: the model's training size).
        extract: "auto" (outline colour sketches, keep gray line art), "always" or "never".
    """

    def __init__(self, model: SCFTColorizer, *, device: str | torch.device = "cpu", size: int | None = None,
                 extract: str = "auto"):
        if not isinstance(model, SCFTColorizer):
            raise TypeError(f"Colorizer: argument 'model' must be a SCFTColorizer, got {type(model).__name__}")
        if extract not in ("auto", "always", "never"):
            raise ValueError(f"Colorizer: argument 'extract' must be 'auto', 'always' or 'never', got {extract!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"Colorizer: argument 'size' must be a positive int or None, got {size!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.size = size or model.config.image_size
        self.extract = extract

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu", **kwargs) -> Colorizer:
        """From a run directory, a training checkpoint (.pt) or weights (.safetensors) of an scft model."""
        return cls(load_model(path, expected_kind="scft", device=resolve_device(device)).model, device=device, **kwargs)

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def _as_tensor(value: ImageLike, name: str) -> Tensor:
        """(C, H, W) or (B, C, H, W) float in [0, 1]."""
        if isinstance(value, Tensor):
            if not value.is_floating_point() or value.dim() not in (3, 4) or value.shape[-3] not in (1, 3):
                raise ValueError(
                    f"Colorizer: argument '{name}' must be a float tensor (C, H, W) or (B, C, H, W) with C = 1 or 3 "
                    f"in [0, 1], got {value.dtype} {tuple(value.shape)}"
                )
            return value.float()
        if isinstance(value, Image.Image):
            return im.pil_to_tensor(value.convert("RGB"))
        if isinstance(value, (str, os.PathLike)):
            return im.pil_to_tensor(im.read_image(value))
        raise TypeError(f"Colorizer: argument '{name}' must be a path, a PIL image or a tensor, got {type(value).__name__}")

    def _prepare(self, image: Tensor, kind: str) -> Tensor:
        """One (C, H, W) image -> (1, C', h, w) in the model range at the working size."""
        d = self.model.config.downsampling
        size = im.working_size(image.shape[-2], image.shape[-1], self.size, d)
        if kind == "sketch":
            # A colour image is resized first and outlined at the working size, as training sketches
            # are drawn at the training size (lines outlined at full size thin out when shrunk).
            extracting = self.extract == "always" or (self.extract == "auto" and not im.is_line_drawing(image))
            if extracting:
                image = im.resize(image.cpu(), size)
            image = im.as_sketch(image, "always" if extracting else "never")
        elif image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        return im.to_model_range(im.resize(image.cpu(), size)).unsqueeze(0).to(self.device)

    # ------------------------------------------------------------------ call
    @torch.no_grad()
    def colorize_tensor(self, sketch: Tensor, reference: Tensor) -> Tensor:
        """sketch (C, H, W) or (B, C, H, W), reference (3, H', W') or (B | 1, 3, H', W'), in [0, 1]
        -> (B, 3, H, W) in [0, 1]. One reference is shared by the whole batch."""
        sketches = sketch.unsqueeze(0) if sketch.dim() == 3 else sketch
        references = reference.unsqueeze(0) if reference.dim() == 3 else reference
        if references.shape[0] not in (1, sketches.shape[0]):
            raise ValueError(
                f"Colorizer: argument 'reference' must hold 1 image or one per sketch ({sketches.shape[0]}), "
                f"got {tuple(reference.shape)}"
            )
        outputs = []
        for b in range(sketches.shape[0]):
            s = self._prepare(sketches[b], "sketch")
            r = self._prepare(references[b if references.shape[0] > 1 else 0], "reference")
            out = im.from_model_range(self.model(s, r))[0].float().cpu()
            outputs.append(im.resize(out, tuple(sketches.shape[-2:])))
        return torch.stack(outputs)

    def __call__(self, sketch: ImageLike, reference: ImageLike) -> Image.Image | Tensor:
        """A PIL image of the sketch's size, or a (B, 3, H, W) tensor in [0, 1] when `sketch` is a tensor."""
        out = self.colorize_tensor(self._as_tensor(sketch, "sketch"), self._as_tensor(reference, "reference"))
        return out if isinstance(sketch, Tensor) else im.tensor_to_pil(out[0])

    def colorize_file(self, sketch: str | os.PathLike, reference: ImageLike, out: str | os.PathLike) -> Path:
        """Colorize a sketch file and write the result (format from out's suffix, PNG when none)."""
        result = self(sketch, reference)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        result.save(out, format=None if out.suffix else "PNG")
        return out


__all__ = ["Colorizer"]
