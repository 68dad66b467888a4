"""How well `refcolor guide`'s numbered regions follow the drawing, at the sketches' own size.

    python scripts/region_borders.py data/openclipart256/heldout [--checkpoint RUN] [--max-images N] [--gap PX]

For every image of the folder (sorted, as refcolor.images.image_files lists them), GuidedColorizer
.regions() numbers its regions as `refcolor guide` does, once with the regions snapped to the
line regions (the default) and once without (--no-snap, the model's own regions). A border pixel
is a pixel with a 4-neighbour in another region; it follows the drawing when a pixel of the
sketch's lines (the sketch `refcolor guide` draws the overlay with, darker than
refcolor.inference.flats.THRESHOLD) lies within 1 px of it (8-neighbourhood). Prints, for both,
the share of all border pixels (pooled over images) that follow the drawing, and the median per
image.
"""

from __future__ import annotations

import argparse

import torch

from refcolor.images import image_files, read_image
from refcolor.inference import flats
from refcolor.inference.guided import GuidedColorizer
from refcolor.models.bundled import checkpoint_or_bundled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="folder of held-out images")
    parser.add_argument("--checkpoint", default=None, help="a guide run (default: the bundled model)")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--gap", type=int, default=flats.GAP, help="line regions' gap closing (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    checkpoint = checkpoint_or_bundled(args.checkpoint, "guide")
    painters = {"model": GuidedColorizer.from_checkpoint(checkpoint, snap=False)}
    painters["snapped"] = GuidedColorizer.from_checkpoint(checkpoint, gap=args.gap)
    files = image_files(args.data)[: args.max_images]
    totals = {kind: [0, 0] for kind in painters}
    shares: dict[str, list[float]] = {kind: [] for kind in painters}
    counts: dict[str, list[int]] = {kind: [] for kind in painters}
    for path in files:
        image = read_image(path)
        for kind, painter in painters.items():
            regions = painter.regions(image)
            on, total = flats.borders_on_lines(regions.labels[None], regions.sketch[None])
            totals[kind][0] += int(on)
            totals[kind][1] += int(total)
            shares[kind].append(float(on) / max(int(total), 1))
            counts[kind].append(len(regions))
    size = read_image(files[0]).size if files else (0, 0)
    print(f"{len(files)} images of {args.data} (first {size[0]}x{size[1]}), {checkpoint}, gap {args.gap}")
    for kind in painters:
        pooled = totals[kind][0] / max(totals[kind][1], 1)
        median = float(torch.tensor(shares[kind]).median())
        per_sketch = float(torch.tensor(counts[kind], dtype=torch.float64).median())
        print(
            f"{kind:8s}: {pooled:.1%} of {totals[kind][1]} border pixels on or within 1 px of a line "
            f"(median per image {median:.1%}); regions per sketch: median {per_sketch:.0f}"
        )


if __name__ == "__main__":
    main()
