"""The `refcolor` command (also `python -m refcolor`). Subcommands: `demo`, `sketch`, and those of
refcolor.commands (`train`, `colorize`, `guide`, `evaluate`, `serve`)."""

from __future__ import annotations

import argparse
import importlib
import sys

from refcolor.commands import COMMAND_MODULES, CommandError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line on stderr and exit 2, instead of usage + message
        self.exit(2, f"{self.prog}: error: {message}\n")


def _hint_list(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}") from None
    if not counts:
        raise argparse.ArgumentTypeError("expected at least one hint count")
    return counts


SKETCH_OPTIONS = {
    "sigma": "XDoG: smaller Gaussian's sigma in px (default 0.5)",
    "k": "XDoG: ratio of the two sigmas (default 2.5)",
    "epsilon": "XDoG: threshold on the difference of Gaussians (default -0.005)",
    "phi": "XDoG: threshold steepness (default 150)",
    "threshold": "gradient: luminance change per px that starts a line (default 0.04)",
}


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="refcolor", description="Sketch colorization with fused kernels.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="hint-colour op (GuidingPainter) on an image; writes a PNG strip")
    demo.add_argument("--image", default=None, help="input image (default: the bundled sample)")
    demo.add_argument("--out", default="refcolor_demo.png", help="output PNG (default: %(default)s)")
    demo.add_argument("--num-segments", type=int, default=30, help="k-means regions (default: %(default)s)")
    demo.add_argument("--hints", type=_hint_list, default=[0, 1, 3, 10, 30], help="hint counts, e.g. 0,1,3,10,30")
    demo.add_argument("--backend", default="auto", help="auto, reference, cpp, cuda or triton (default: auto)")
    demo.add_argument("--seed", type=int, default=0, help="k-means seed (default: %(default)s)")

    sketch = sub.add_parser("sketch", help="line drawings (XDoG or gradient) of an image or a folder, as PNGs")
    sketch.add_argument("input", metavar="IN", help="an image file, or a folder (every image under it)")
    sketch.add_argument("output", metavar="OUT", help="output PNG (or folder) for a file; output folder for a folder")
    sketch.add_argument("--method", choices=("xdog", "gradient"), default="xdog", help="default: %(default)s")
    for name, what in SKETCH_OPTIONS.items():
        sketch.add_argument(f"--{name}", type=float, default=None, help=what)
    sketch.add_argument(
        "--seed",
        type=int,
        default=None,
        help="draw a random line style per image from SketchExtractor's ranges, with this seed "
        "(options given above stay fixed); without it, the fixed defaults",
    )
    for name in COMMAND_MODULES:
        importlib.import_module(f"refcolor.commands.{name}").add_parser(sub)
    return parser


def _demo(args, parser) -> int:
    from refcolor.demo import run_demo  # after parsing: --help stays fast

    try:
        result = run_demo(args.image, args.out, args.num_segments, args.hints, args.backend, args.seed)
    except (OSError, ValueError) as exc:  # unreadable image/output, bad counts or backend
        parser.exit(2, f"refcolor demo: error: {exc}\n")
    print(f"backend: {result['backend']}")
    print(
        f"image:   {args.image or 'bundled sample'} {result['image_size'][0]}x{result['image_size'][1]}, "
        f"{result['num_segments']} regions"
    )
    print(f"output:  {result['out_path']}")
    print(f"{'Nh':>4}  {'coverage':>8}  {'PSNR dB':>7}")
    for nh in result["hint_counts"]:
        print(f"{nh:>4}  {result['coverage'][nh]:>8.3f}  {result['psnr'][nh]:>7.2f}")
    return 0


def _sketch(args, parser) -> int:
    import inspect

    import torch

    from refcolor.data.sketch import PARAMS, SketchExtractor, gradient_sketch, sketch_files, xdog

    def fail(message: str):
        parser.exit(2, f"refcolor sketch: error: {message}\n")

    names = [n for n in SKETCH_OPTIONS if n in PARAMS[args.method]]
    unused = [f"--{n}" for n in SKETCH_OPTIONS if n not in names and getattr(args, n) is not None]
    if unused:
        fail(f"not used by --method {args.method}: {', '.join(unused)}")
    defaults = inspect.signature(xdog if args.method == "xdog" else gradient_sketch).parameters
    # Given options are fixed; the others keep the function's default, or with --seed their random range.
    given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    fixed = given if args.seed is not None else {n: defaults[n].default for n in PARAMS[args.method]} | given
    try:
        extractor = SketchExtractor(args.method, **fixed)
        generator = torch.Generator().manual_seed(args.seed or 0)
        written, skipped = sketch_files(
            args.input,
            args.output,
            extractor,
            generator=generator,
            warn=lambda message: print(f"refcolor sketch: warning: {message}", file=sys.stderr),
        )
    except (OSError, ValueError) as exc:  # missing input, unwritable output, bad parameter
        fail(str(exc))
    if written == 0:
        fail(f"no readable images in {args.input}" + (f" ({skipped} unreadable skipped)" if skipped else ""))
    print(
        f"wrote {written} sketch{'es' if written != 1 else ''} to {args.output}"
        + (f"; skipped {skipped} unreadable file{'s' if skipped != 1 else ''}" if skipped else "")
    )
    return 0


def _run_command(args) -> int:
    # Expected failures end as one line on stderr and a non-zero exit, never a traceback.
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"refcolor {args.command}: interrupted", file=sys.stderr)
        return 130
    except (CommandError, OSError, ValueError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"refcolor {args.command}: error: {message}", file=sys.stderr)
        return 1


def main(argv=None) -> int:
    from refcolor import allocator

    if argv is None and allocator.started_as_refcolor():  # the command itself: pick the CPU allocator first
        try:
            allocator.select_for_command(sys.argv[1:])  # may re-execute this process under LD_PRELOAD
        except ValueError as exc:  # a bad REFCOLOR_ALLOCATOR
            print(f"refcolor: error: {exc}", file=sys.stderr)
            return 2
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "sketch":
        return _sketch(args, parser)
    if args.command == "demo":
        return _demo(args, parser)
    return _run_command(args)


if __name__ == "__main__":
    sys.exit(main())
