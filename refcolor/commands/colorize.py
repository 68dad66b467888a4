"""`refcolor colorize SKETCH --reference REF [--checkpoint RUN] -o OUT`: reference-based colorization
with a trained scft model, by default the one bundled with refcolor
(refcolor/models/pretrained/scft.safetensors). SKETCH is a line drawing or a colour image (its
outline is extracted), or a folder of them (OUT is then a folder; unreadable files are skipped and
counted).

`refcolor colorize --model exemplar IMAGE --reference EXEMPLAR [--checkpoint RUN] -o OUT`: exemplar
colorization of a gray or colour image (its luminance is kept at full resolution, the colours come
from the exemplar); without --checkpoint the bundled exemplar model."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "colorize",
        help="colour a sketch (or a folder of sketches) like a reference image",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sketch", metavar="SKETCH", help="line drawing or colour image, or a folder of them")
    p.add_argument("--reference", "-r", required=True, metavar="REF", help="colour reference (exemplar) image")
    p.add_argument(
        "--model",
        choices=("scft", "exemplar"),
        default="scft",
        help="scft: colour a sketch (default); exemplar: colour a gray or colour image like the exemplar",
    )
    p.add_argument(
        "--checkpoint",
        "-c",
        default=None,
        metavar="RUN_DIR_OR_WEIGHTS",
        help="training run directory, checkpoint .pt or weights .safetensors of a model of --model's kind "
        "(default: the bundled model, refcolor/models/pretrained/KIND.safetensors)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output image (a folder for a folder SKETCH)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    p.add_argument(
        "--size", type=int, default=None, help="working resolution of the shorter side (default: training size)"
    )
    p.add_argument(
        "--extract",
        choices=("auto", "always", "never"),
        default="auto",
        help="scft: outline extraction: auto (colour images only, default), always, never",
    )
    p.add_argument(
        "--no-keep-lines",
        dest="keep_lines",
        action="store_false",
        help="scft: the model's output resized alone, without the sketch's full-resolution lines over it",
    )
    p.add_argument(
        "--flat",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="one flat colour per area enclosed by the sketch's lines (the median of the model's colours over "
        "it), the lines on top (default: off: the soft output scores 1.9 dB higher on the held-out split, "
        "scft.md). exemplar: for line-art inputs only; a photo has no enclosed areas and its flats lose its shading",
    )
    p.add_argument(
        "--flats-layer",
        metavar="FILE",
        default=None,
        help="also write the flats alone as an RGBA PNG with transparent lines, the layer to put under the "
        "line art (a folder for a folder SKETCH)",
    )
    p.add_argument(
        "--gap",
        type=int,
        default=None,
        metavar="PX",
        help="flats: close gaps in the lines up to PX pixels wide (default: 0, none; try 3 for broken outlines)",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from refcolor import images as im
    from refcolor.commands import CommandError
    from refcolor.inference.colorizer import Colorizer
    from refcolor.inference.exemplar import ExemplarColorizer
    from refcolor.models.bundled import checkpoint_or_bundled

    sketch = Path(args.sketch)
    if not sketch.exists():
        raise FileNotFoundError(f"{'image' if args.model == 'exemplar' else 'sketch'} not found: {sketch}")
    if args.gap is not None and args.gap < 0:
        raise CommandError(f"--gap must be >= 0, got {args.gap}")
    reference = im.read_image(args.reference)  # fail on a bad reference before loading the model
    flat_options = {"flat": args.flat} | ({"gap": args.gap} if args.gap is not None else {})
    colorizer: Colorizer | ExemplarColorizer
    if args.model == "exemplar":
        if args.checkpoint is None:
            colorizer = ExemplarColorizer.pretrained(device=args.device, size=args.size, **flat_options)
        else:
            colorizer = ExemplarColorizer.from_checkpoint(
                args.checkpoint, device=args.device, size=args.size, **flat_options
            )
    else:
        colorizer = Colorizer.from_checkpoint(
            checkpoint_or_bundled(args.checkpoint, "scft"),
            device=args.device,
            size=args.size,
            extract=args.extract,
            keep_lines=args.keep_lines,
            **flat_options,
        )
    if sketch.is_file():
        out = colorizer.colorize_file(sketch, reference, args.output, flats_layer=args.flats_layer)
        print(f"wrote {out}" + (f" and {args.flats_layer}" if args.flats_layer is not None else ""))
        return 0
    files = im.image_files(sketch)
    written = skipped = 0
    for path in files:
        target = Path(args.output) / path.relative_to(sketch).with_suffix(".png")
        layer = (
            None if args.flats_layer is None else Path(args.flats_layer) / path.relative_to(sketch).with_suffix(".png")
        )
        try:
            colorizer.colorize_file(path, reference, target, flats_layer=layer)
        except ValueError as err:  # unreadable image: skip and count
            print(f"refcolor colorize: warning: {err}", file=sys.stderr)
            skipped += 1
            continue
        written += 1
    if written == 0:
        raise CommandError(f"no readable images in {sketch}" + (f" ({skipped} unreadable skipped)" if skipped else ""))
    print(
        f"wrote {written} image{'s' if written != 1 else ''} to {args.output}"
        + (f"; skipped {skipped} unreadable" if skipped else "")
    )
    return 0
