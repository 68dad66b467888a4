"""Soft beside flat output on the demo sketch (docs/figures/flats_demo.png), with the bundled models.

    python scripts/flats_demo_figure.py [--out docs/figures/flats_demo.png] [--gap PX]

Top row, `refcolor guide` with the README's colours: the numbered regions (snapped to the lines,
refcolor.inference.flats' defaults), the soft output, the flat output (`--flat`) and the flat
output with gaps of up to PX pixels closed (`--flat --gap PX`, default 3; regions and colours
snapped to those line regions). Bottom row, `refcolor colorize` with the demo reference: the
reference, the soft output and the two flat outputs. Every panel is at the sketch's own size.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from PIL import Image, ImageDraw

from refcolor import images as im
from refcolor.inference import flats
from refcolor.inference.colorizer import Colorizer
from refcolor.inference.guided import GuidedColorizer

COLORS = ["#e03c31", [40, 90, 200]]  # the README's example colours for regions 1 and 2
CAPTION = 18  # px of caption under each panel


def panel(image: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (image.width, image.height + CAPTION), "white")
    out.paste(image.convert("RGB"), (0, 0))
    ImageDraw.Draw(out).text((4, image.height + 3), text, fill=(0, 0, 0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/figures/flats_demo.png")
    parser.add_argument("--gap", type=int, default=3)
    args = parser.parse_args()
    demo = Path(str(resources.files("refcolor") / "assets" / "demo"))
    sketch, reference = im.read_image(demo / "sketch.png"), im.read_image(demo / "reference.png")
    guide, closed = GuidedColorizer.pretrained(), GuidedColorizer.pretrained(gap=args.gap)
    regions = guide.regions(sketch)
    soft, result = guide.flats(sketch, COLORS)
    scft, scft_closed = Colorizer.pretrained(), Colorizer.pretrained(gap=args.gap)
    scft_soft, scft_result = scft.flats(sketch, reference)
    default = f"gap {flats.GAP}"
    rows = [
        [
            panel(regions.overlay(), f"guide: {len(regions)} regions (snapped)"),
            panel(im.tensor_to_pil(soft[0]), "guide, 2 colours: soft"),
            panel(im.tensor_to_pil(result.image[0]), f"guide: --flat ({default})"),
            panel(im.tensor_to_pil(closed.flats(sketch, COLORS)[1].image[0]), f"guide: --flat --gap {args.gap}"),
        ],
        [
            panel(reference.resize(sketch.size), "scft: the reference"),
            panel(im.tensor_to_pil(scft_soft[0]), "scft: soft"),
            panel(im.tensor_to_pil(scft_result.image[0]), f"scft: --flat ({default})"),
            panel(im.tensor_to_pil(scft_closed.flats(sketch, reference)[1].image[0]), f"scft: --flat --gap {args.gap}"),
        ],
    ]
    width, height = rows[0][0].size
    figure = Image.new("RGB", (4 * width + 12, 2 * height + 4), "white")
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            figure.paste(tile, (c * (width + 4), r * (height + 4)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out)
    print(f"wrote {args.out} ({figure.width}x{figure.height})")


if __name__ == "__main__":
    main()
