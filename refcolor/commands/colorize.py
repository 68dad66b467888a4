"""`refcolor colorize SKETCH --reference REF [--checkpoint RUN] -o OUT`: reference-based colorization
with a trained scft model, by default the one bundled with refcolor
(refcolor/models/pretrained/scft.safetensors). SKETCH is a line drawing or a colour image (its
outline is extracted), or a folder of them (OUT is then a folder; unreadable files are skipped and
counted)."""

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
    p.add_argument("--reference", "-r", required=True, metavar="REF", help="colour reference image")
    p.add_argument(
        "--checkpoint",
        "-c",
        default=None,
        metavar="RUN_DIR_OR_WEIGHTS",
        help="training run directory, checkpoint .pt or weights .safetensors of an scft model "
        "(default: the bundled scft model, refcolor/models/pretrained/scft.safetensors)",
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
        help="outline extraction: auto (colour images only, default), always, never",
    )
    p.add_argument(
        "--no-keep-lines",
        dest="keep_lines",
        action="store_false",
        help="the model's output resized alone, without the sketch's full-resolution lines over it",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from refcolor import images as im
    from refcolor.commands import CommandError
    from refcolor.inference.colorizer import Colorizer
    from refcolor.models.bundled import checkpoint_or_bundled

    sketch = Path(args.sketch)
    if not sketch.exists():
        raise FileNotFoundError(f"sketch not found: {sketch}")
    reference = im.read_image(args.reference)  # fail on a bad reference before loading the model
    colorizer = Colorizer.from_checkpoint(
        checkpoint_or_bundled(args.checkpoint, "scft"),
        device=args.device,
        size=args.size,
        extract=args.extract,
        keep_lines=args.keep_lines,
    )
    if sketch.is_file():
        out = colorizer.colorize_file(sketch, reference, args.output)
        print(f"wrote {out}")
        return 0
    files = im.image_files(sketch)
    written = skipped = 0
    for path in files:
        target = Path(args.output) / path.relative_to(sketch).with_suffix(".png")
        try:
            colorizer.colorize_file(path, reference, target)
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
