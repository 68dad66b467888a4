"""`refcolor guide`: GuidingPainter's interactive loop on the command line.

refcolor guide SKETCH [--checkpoint RUN] --out DIR
    DIR/<stem>_regions.png (numbered overlay) and DIR/<stem>_regions.json (per region: rank,
    channel, pixels, bbox [x0, y0, x1, y1] inclusive, anchor [x, y]).
refcolor guide SKETCH [--checkpoint RUN] --colors COLORS.json -o OUT.png [--out DIR] [--flat] [--flats-layer FILE]
    the colorized sketch at SKETCH's size; COLORS.json is a list whose entry i ("#rrggbb",
    "#rgb" or [r, g, b]) is the colour of region i + 1. With --out the overlay is written too.
    --flat: one flat colour per area enclosed by the lines; --flats-layer: the flats alone as an
    RGBA PNG with transparent lines.

The regions follow the sketch's lines (--no-snap: the model's own blobs).

Without --checkpoint, the guide model bundled with refcolor (refcolor/models/pretrained/guide.safetensors).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from refcolor.commands import CommandError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "guide",
        help="GuidingPainter: number a sketch's regions (overlay + JSON), or colorize it from one colour per region",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sketch", metavar="SKETCH", help="line drawing (or colour image: its outline is extracted)")
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="RUN",
        help="a 'guide' run directory, .safetensors weights or .pt checkpoint "
        "(default: the bundled guide model, refcolor/models/pretrained/guide.safetensors)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="folder for the region overlay and JSON (default without --colors: current folder)",
    )
    parser.add_argument(
        "--colors",
        metavar="COLORS.json",
        default=None,
        help="JSON list of region colours: entry i colours region i + 1",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT.png",
        default=None,
        help="colorized image (default with --colors and --out: DIR/<stem>_colorized.png)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto (default: %(default)s)")
    parser.add_argument(
        "--no-keep-lines",
        dest="keep_lines",
        action="store_false",
        help="colorized image without the sketch's full-resolution lines over the upsampled colours",
    )
    parser.add_argument(
        "--flat",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="one flat colour per area enclosed by the sketch's lines: the colour given for its region, or the "
        "median of the model's colours over it, the lines on top. Default off: on the held-out split the soft "
        "output on the snapped regions scores higher from 1 hint on (flats win only with no hint; README, 'Flats')",
    )
    parser.add_argument(
        "--flats-layer",
        metavar="FILE",
        default=None,
        help="with --colors: also write the flats alone as an RGBA PNG with transparent lines",
    )
    parser.add_argument(
        "--snap",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the model's regions follow the sketch's lines: each enclosed area joins the region that covers "
        "most of it, the priority order kept (default: on: on the held-out split it scores higher from 1 hint "
        "to 16 and puts the regions' borders on the lines)",
    )
    parser.add_argument(
        "--gap",
        type=int,
        default=None,
        metavar="PX",
        help="enclosed areas: close gaps in the lines up to PX pixels wide (default: 0, none; try 3 for broken "
        "outlines)",
    )
    parser.set_defaults(run=run)


def _regions_json(sketch: str, data: dict) -> str:
    """JSON with one line per region: easy to read next to the overlay."""
    rows = ",\n".join(f"  {json.dumps(region)}" for region in data["regions"])
    head = json.dumps({"sketch": str(sketch), "size": data["size"]})[:-1]
    return f'{head}, "regions": [\n{rows}\n]}}\n'


def run(args) -> int:
    from PIL import Image

    from refcolor.images import read_image
    from refcolor.inference.guided import GuidedColorizer, read_colors
    from refcolor.models.bundled import checkpoint_or_bundled

    if args.flats_layer is not None and args.colors is None:
        raise CommandError("--flats-layer needs --colors COLORS.json (the region colours to paint with)")
    if args.gap is not None and args.gap < 0:
        raise CommandError(f"--gap must be >= 0, got {args.gap}")
    if args.output is not None and args.colors is None:
        raise CommandError("-o/--output needs --colors COLORS.json (the region colours to paint with)")
    if args.colors is not None and args.output is None and args.out is None:
        raise CommandError("--colors needs -o OUT.png (or --out DIR) for the colorized image")
    colors = read_colors(args.colors) if args.colors is not None else None  # fail before loading the model
    out_dir = Path(args.out) if args.out is not None else (Path(".") if colors is None else None)
    stem = Path(args.sketch).stem
    output = None
    if args.output is not None:
        output = Path(args.output)
    elif colors is not None and out_dir is not None:
        output = out_dir / f"{stem}_colorized.png"

    if output is not None and output.suffix.lower() not in Image.registered_extensions():
        raise CommandError(f"-o/--output: unknown image format {output.suffix or '(no extension)'!r} of {output}")

    image = read_image(args.sketch)
    checkpoint = checkpoint_or_bundled(args.checkpoint, "guide")
    options = {"snap": args.snap, "flat": args.flat} | ({"gap": args.gap} if args.gap is not None else {})
    painter = GuidedColorizer.from_checkpoint(checkpoint, device=args.device, keep_lines=args.keep_lines, **options)
    regions = painter.regions(image)
    (w, h), (wh, ww) = regions.size, regions.working_size
    print(f"{args.sketch}: {w}x{h}, {len(regions)} regions (model at {ww}x{wh}, {painter.source})")

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        overlay_path, json_path = out_dir / f"{stem}_regions.png", out_dir / f"{stem}_regions.json"
        regions.overlay().save(overlay_path)
        json_path.write_text(_regions_json(args.sketch, regions.to_json()))
        print(f"wrote {overlay_path} and {json_path}")

    if colors is not None and output is not None:  # (--colors without an output is refused above)
        if len(colors) > len(regions):
            raise CommandError(
                f"{args.colors}: {len(colors)} colours given but the sketch has only {len(regions)} regions "
                f"(numbered 1..{len(regions)})"
            )
        from refcolor.inference import flats

        if args.flats_layer is None:
            output.parent.mkdir(parents=True, exist_ok=True)
            painter.colorize(image, colors, flat=args.flat).save(output)
        else:
            soft, result = painter.flats(image, colors)
            flats.save_image(result.image[0] if args.flat else soft[0], output)
            flats.save_layer(result.layer[0], args.flats_layer)
            print(f"wrote the flats layer {args.flats_layer}")
        print(f"coloured {len(colors)} of {len(regions)} regions; wrote {output} ({w}x{h})")
    return 0
