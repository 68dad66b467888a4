"""The `refcolor` command (also `python -m refcolor`). Subcommands: `demo`."""
from __future__ import annotations

import argparse
import sys


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
    return parser


def _demo(args, parser) -> int:
    from refcolor.demo import run_demo  # after parsing: --help stays fast

    try:
        result = run_demo(args.image, args.out, args.num_segments, args.hints, args.backend, args.seed)
    except (OSError, ValueError) as exc:  # unreadable image/output, bad counts or backend
        parser.exit(2, f"refcolor demo: error: {exc}\n")
    print(f"backend: {result['backend']}")
    print(f"image:   {args.image or 'bundled sample'} {result['image_size'][0]}x{result['image_size'][1]}, "
          f"{result['num_segments']} regions")
    print(f"output:  {result['out_path']}")
    print(f"{'Nh':>4}  {'coverage':>8}  {'PSNR dB':>7}")
    for nh in result["hint_counts"]:
        print(f"{nh:>4}  {result['coverage'][nh]:>8.3f}  {result['psnr'][nh]:>7.2f}")
    return 0


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    return _demo(args, parser)


if __name__ == "__main__":
    sys.exit(main())
