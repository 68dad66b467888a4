#!/usr/bin/env python
"""A picture of what an SCFT, GuidingPainter or exemplar model does on held-out images, to judge beside `refcolor
evaluate`'s numbers: one row per image, the evaluation's own augmented-self inputs (same seed, so the
rows are the images the figures were measured on), then the case of another image's colours.

SCFT (refcolor.evaluation.scft_eval.augmented_self_triple): sketch | reference | output | target |
other reference | output with it.
GuidingPainter (refcolor.evaluation.guide_psnr's protocol): sketch | the output with the first 3, 8
and all regions given their mean target colour | target.
Exemplar (refcolor.evaluation.exemplar_eval.augmented_self_pair, --warp mild or strong): gray |
exemplar | T_ab alone | the correspondence alone (W_ab) | output | Reinhard's global transfer |
target | other exemplar | output with it.

    python scripts/heldout_samples.py runs/bundled_scft data/openclipart128/heldout -o grid.png
    python scripts/heldout_samples.py RUN DIR -o grid.png --images 0 17 40 --seed 0
    python scripts/heldout_samples.py runs/bundled_exemplar data/skimage_photos128 -o photos.png
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

from refcolor.data.image_folder import ImageFolder
from refcolor.evaluation.exemplar_eval import METHODS, augmented_self_pair, colourings
from refcolor.evaluation.guide_psnr import hinted_outputs, prepare_sketch
from refcolor.evaluation.scft_eval import augmented_self_triple
from refcolor.lab import normalized_lab_to_rgb, rgb_to_normalized_lab
from refcolor.models.loading import load_model
from refcolor.train.sample_grid import save_grid


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="run directory, .safetensors weights or .pt checkpoint")
    ap.add_argument("data", help="folder of held-out images")
    ap.add_argument("-o", "--out", required=True, help="PNG to write")
    ap.add_argument("--images", type=int, nargs="+", help="indices in the sorted folder (default: 8 spread evenly)")
    ap.add_argument("--seed", type=int, default=0, help="the evaluation's seed (default 0)")
    ap.add_argument(
        "--warp",
        choices=("mild", "strong"),
        default="mild",
        help="scft and exemplar: the evaluation's warp (default mild)",
    )
    ap.add_argument(
        "--poses",
        action="store_true",
        help="scft: per sketch, its target flipped, its target rotated 25 degrees, and another image as "
        "references, each with the output (issue 27's figure)",
    )
    args = ap.parse_args(argv)

    loaded = load_model(args.checkpoint)
    if loaded.kind not in ("scft", "guide", "exemplar"):
        raise SystemExit(f"checkpoint: expected an scft, guide or exemplar model, got a {loaded.kind!r} model")
    model = loaded.model
    dataset = ImageFolder(args.data, model.config.image_size)
    n = len(dataset)
    indices = args.images or sorted({round(i * (n - 1) / 7) for i in range(8)})
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise SystemExit(f"--images: indices must be in [0, {n}), got {bad}")
    if loaded.kind != "scft":
        if loaded.kind == "exemplar":
            grid = exemplar_columns(model, dataset, indices, args.seed, args.warp)
        else:
            grid = guide_columns(model, dataset, indices, args.seed)
        save_grid(args.out, grid)
        print(f"{args.out}: held-out images {indices}")
        return 0
    if args.poses:
        save_grid(args.out, scft_pose_columns(model, dataset, indices, args.seed))
        print(f"{args.out}: held-out images {indices}")
        return 0
    triples = [augmented_self_triple(dataset[i]["image"], i, args.seed, args.warp) for i in indices]
    sketch, reference, target = (torch.cat([t[k] for t in triples]) for k in ("sketch", "reference", "target"))
    other = torch.stack([dataset[(i + 1) % n]["image"] for i in indices])  # unwarped, another image
    with torch.no_grad():
        output = model(sketch * 2 - 1, reference * 2 - 1)
        cross = model(sketch * 2 - 1, other * 2 - 1)
    to01 = lambda x: (x.clamp(-1, 1) + 1) / 2  # noqa: E731
    save_grid(
        args.out,
        [
            ("sketch", sketch),
            ("reference", reference),
            ("output", to01(output)),
            ("target", target),
            ("other ref", other),
            ("output", to01(cross)),
        ],
    )
    print(f"{args.out}: held-out images {indices}")
    return 0


def rotated(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """(B, 3, H, W) rotated about the centre (bilinear; the border colour, the paper, fills the corners)."""
    angle = math.radians(degrees)
    theta = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0]])
    grid = F.affine_grid(theta.expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


@torch.no_grad()
def scft_pose_columns(model, dataset, indices: list[int], seed: int) -> list[tuple[str, torch.Tensor]]:
    """sketch | flipped target as reference, output | target rotated 25 degrees, output | the next
    image as reference, output | target: references in other poses than the sketch."""
    n = len(dataset)
    triples = [augmented_self_triple(dataset[i]["image"], i, seed) for i in indices]
    sketch, target = (torch.cat([t[k] for t in triples]) for k in ("sketch", "target"))
    other = torch.stack([dataset[(i + 1) % n]["image"] for i in indices])
    columns: list[tuple[str, torch.Tensor]] = [("sketch", sketch)]
    for name, reference in (
        ("flipped ref", target.flip(-1)),
        ("rotated ref", rotated(target, 25)),
        ("other ref", other),
    ):
        output = model(sketch * 2 - 1, reference * 2 - 1)
        columns += [(name, reference), ("output", (output.clamp(-1, 1) + 1) / 2)]
    return columns + [("target", target)]


@torch.no_grad()
def guide_columns(model, dataset, indices: list[int], seed: int) -> list[tuple[str, torch.Tensor]]:
    del seed  # the guide protocol draws nothing at random
    image = torch.stack([dataset[i]["image"] for i in indices])
    sketch = prepare_sketch(image, extract="always") * 2 - 1  # as the evaluation prepares it
    counts = [3, 8, model.num_segments]
    outputs, _ = hinted_outputs(model, sketch, image * 2 - 1, counts)
    columns = [("sketch", (sketch.repeat(1, 3, 1, 1) + 1) / 2)]
    columns += [(f"{n} hints", (out.clamp(-1, 1) + 1) / 2) for n, out in zip(counts, outputs, strict=True)]
    return columns + [("target", image)]


@torch.no_grad()
def exemplar_columns(
    model, dataset, indices: list[int], seed: int, warp: str = "mild"
) -> list[tuple[str, torch.Tensor]]:
    n = len(dataset)
    pairs = [augmented_self_pair(dataset[i]["image"], i, seed, warp) for i in indices]
    target, exemplar = (torch.cat([p[k] for p in pairs]) for k in (0, 1))
    other = torch.stack([dataset[(i + 1) % n]["image"] for i in indices])  # another image's colours
    luminance, _ = rgb_to_normalized_lab(target)
    method = dict(zip(METHODS, colourings(model, luminance, exemplar), strict=True))  # the evaluation's
    return [
        ("gray", method["gray"]),
        ("exemplar", exemplar),
        ("T_ab alone", method["transfer_only"]),
        ("W_ab alone", method["correspondence_only"]),
        ("output", method["model"]),
        ("reinhard", method["reinhard"]),
        ("target", target),
        ("other exemplar", other),
        ("output", normalized_lab_to_rgb(luminance, model(luminance, other).ab)),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
