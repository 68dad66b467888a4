"""SCFT on real (target, reference) pairs: one subject drawn twice, in different poses or framings.

The folder convention (`refcolor evaluate --model scft --pairs DIR`): for each pair NAME,

    DIR/NAME_target.EXT       the coloured drawing to reproduce (PNG, JPEG, WebP or BMP)
    DIR/NAME_reference.EXT    the colour reference: the same subject, another pose or framing
    DIR/NAME_sketch.EXT       optional: the target's line art; without it the sketch is drawn from
                              the target by the training's sketch extractor (seeded per pair)

Both images are read at the model's image size (shorter side resized, centre crop, as ImageFolder).
The model colours the sketch with the reference; scored as refcolor.evaluation.scft_eval scores the
augmented-self protocol (PSNR and SSIM against the target beside copying the reference and its mean
colour under the sketch's lines; palette match against the reference), except the attention's
correspondence, which no pair knows. A NAME with only one of target and reference is an error that
names the missing file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from refcolor.data.image_folder import EXTENSIONS, open_rgb, resize_crop
from refcolor.data.sketch import SketchExtractor
from refcolor.data.sketch_preparation import prepare_sketch
from refcolor.evaluation import scft_eval
from refcolor.images import pil_to_tensor

ROLES = ("target", "reference", "sketch")
_SEED_STRIDE = 1_000_003


def find_pairs(folder: str | os.PathLike) -> list[dict]:
    """The pairs of `folder`, sorted by NAME: [{"name", "target", "reference"[, "sketch"]}]."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"pairs: expected a folder of NAME_target / NAME_reference images, got {str(root)!r}")
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(root.iterdir()):
        if path.suffix.lower().lstrip(".") not in EXTENSIONS:
            continue
        name, _, role = path.stem.rpartition("_")
        if name and role in ROLES:
            found.setdefault(name, {})[role] = path
    pairs = []
    for name, files in sorted(found.items()):
        for role in ("target", "reference"):
            if role not in files:
                raise ValueError(f"pairs: {name!r} has no {name}_{role} image in {root} (found {sorted(files)})")
        pairs.append({"name": name, **files})
    if not pairs:
        raise ValueError(f"pairs: no NAME_target / NAME_reference images in {root}")
    return pairs


def _load(path: Path, size: int) -> torch.Tensor:
    return pil_to_tensor(resize_crop(open_rgb(path), size))


def evaluate_scft_pairs(
    model: nn.Module,
    folder: str | os.PathLike,
    *,
    image_size: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> scft_eval.SCFTEvaluation:
    """Score `model` on the pairs of `folder` (see the module docstring); model as in evaluate_scft."""
    pairs = find_pairs(folder)
    if image_size is None:
        image_size = getattr(getattr(model, "config", None), "image_size", None)
        if image_size is None:
            raise ValueError("image_size: the model has no config.image_size; pass image_size")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    extractor = SketchExtractor()
    psnrs, ssims, palettes = [], [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(pairs), batch_size):
                chunk = pairs[start : start + batch_size]
                target = torch.stack([_load(p["target"], image_size) for p in chunk]).to(device)
                reference = torch.stack([_load(p["reference"], image_size) for p in chunk]).to(device)
                sketches = []
                for i, pair in enumerate(chunk, start):
                    if "sketch" in pair:
                        drawn = _load(pair["sketch"], image_size)[None].to(device)
                        sketches.append(prepare_sketch(drawn, extract="never"))
                    else:
                        generator = torch.Generator().manual_seed(seed * _SEED_STRIDE + i)
                        colour = target[i - start, None]
                        drawn = prepare_sketch(colour, extract="always", extractor=extractor, generator=generator)
                        sketches.append(drawn)
                sketch = torch.cat(sketches)
                out = model(sketch * 2 - 1, reference * 2 - 1)
                image = out if isinstance(out, torch.Tensor) else out.image
                output = ((image.float() + 1) / 2).clamp(0, 1)
                fill = scft_eval.mean_colour_fill(sketch, reference)
                flat_median, flat_mean = scft_eval.flat_outputs(output, sketch)
                candidates = (output, flat_median, flat_mean, reference, fill)  # scft_eval.METHODS order
                psnrs.append(torch.stack([scft_eval.psnr(c, target) for c in candidates], dim=1).cpu())
                ssims.append(torch.stack([scft_eval.ssim(c, target) for c in candidates], dim=1).cpu())
                palettes.append(
                    torch.stack(
                        [scft_eval.palette_intersection(c, reference) for c in (output, target, fill)], dim=1
                    ).cpu()
                )
    finally:
        model.train(was_training)
    return scft_eval.SCFTEvaluation(
        paths=[p["name"] for p in pairs],
        image_size=image_size,
        seed=seed,
        psnr=torch.cat(psnrs),
        ssim=torch.cat(ssims),
        palette=torch.cat(palettes),
        correspondence=None,
        data=f"{len(pairs)} pairs in {folder}",
        warp="pairs",
    )


__all__ = ["ROLES", "evaluate_scft_pairs", "find_pairs"]
