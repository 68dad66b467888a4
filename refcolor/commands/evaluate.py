"""`refcolor evaluate`: the papers' measurements on a folder of images.

    refcolor evaluate --model guide --checkpoint RUN --data DIR [--max-images N] [--batch-size B] --out DIR
        GuidingPainter's PSNR against the number of simulated hints (0..Nc), see
        refcolor.evaluation.guide_psnr; writes DIR/psnr_vs_hints.csv, .md and .png.

    refcolor evaluate --model scft --checkpoint RUN --data DIR [--warp mild|strong] [--max-images N] --out DIR
        SCFT's augmented-self protocol: PSNR and SSIM against the target beside the copy-the-warped-
        reference and mean-colour baselines, the attention's correspondence accuracy (with the
        same-position guess) and the palette match with another image's reference, see
        refcolor.evaluation.scft_eval; writes DIR/scft_eval.csv, .md and (with matplotlib, the extra
        refcolor[plot]) .png. --warp strong: references flipped, rotated, scaled and shifted, so
        that copying by position fails. --pairs DIR instead of --data: real (target, reference)
        pairs of one subject, DIR/NAME_target.png + DIR/NAME_reference.png (refcolor.evaluation.scft_pairs).

    refcolor evaluate --model exemplar --checkpoint RUN --data DIR [--warp mild|strong] [--max-images N] --out DIR
        The exemplar colorizer on augmented-self pairs: PSNR and SSIM against the jittered target beside
        the gray image, global Lab mean/std transfer (Reinhard et al. 2001), the exemplar's colours
        matched by luminance histogram, the training-free correspondence and T_ab alone; with other
        images' exemplars the palette match and colourfulness; ms per image at 256 and 512 px, see
        refcolor.evaluation.exemplar_eval; writes DIR/exemplar_eval.csv, .md and (with matplotlib) .png.

--data is required and should hold images the model was not trained on; the report names it.
Without --checkpoint, the model of that kind bundled with refcolor (refcolor/models/pretrained/KIND.safetensors).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from refcolor.commands import CommandError

MODELS = ("exemplar", "guide", "scft")  # model kinds with an evaluation protocol


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained model (guide: PSNR vs hints; scft, exemplar: augmented-self figures); "
        "writes CSV, Markdown, PNG",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", choices=MODELS, default="guide", help="model kind (default: %(default)s)")
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="RUN",
        help="run directory, .safetensors weights or .pt checkpoint (default: the bundled model of --model, "
        "refcolor/models/pretrained/KIND.safetensors)",
    )
    parser.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="held-out image folder to evaluate on (required, except with --pairs: the bundled sample set "
        "is the default training data, so it is never a silent default here)",
    )
    parser.add_argument(
        "--warp",
        choices=("mild", "strong"),
        default="mild",
        help="scft, exemplar: how the reference is made from the target (mild: the training warp; strong: "
        "flip, rotation, scale and shift, which copying by position cannot pass) (default: %(default)s)",
    )
    parser.add_argument(
        "--pairs",
        default=None,
        metavar="DIR",
        help="scft: score (target, reference) pairs of one subject instead of augmented-self triples: "
        "DIR/NAME_target.png with DIR/NAME_reference.png (and optionally DIR/NAME_sketch.png), "
        "see refcolor.evaluation.scft_pairs",
    )
    parser.add_argument("--max-images", type=int, default=None, metavar="N", help="the first N images (sorted)")
    parser.add_argument(
        "--batch-size", type=int, default=8, metavar="B", help="images per batch (default: %(default)s)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto (default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder of the report (CSV, Markdown, PNG)")
    parser.set_defaults(run=run)


def _show_warning(default, category):
    """A warnings.showwarning that prints `category` as one CLI line and leaves the rest to `default`."""

    def show(message, cls, filename, lineno, file=None, line=None):
        if issubclass(cls, category):
            print(f"refcolor evaluate: warning: {' '.join(str(message).split())}", file=sys.stderr)
        else:
            default(message, cls, filename, lineno, file, line)

    return show


def run(args) -> int:
    from refcolor.data import ImageFolder, UnreadableImageWarning
    from refcolor.models.bundled import checkpoint_or_bundled
    from refcolor.models.loading import load_model, resolve_device

    for name in ("max_images", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.model != "scft" and args.pairs is not None:
        raise CommandError(f"--pairs applies to --model scft, got --model {args.model}")
    if args.model == "guide" and args.warp != "mild":
        raise CommandError("--warp applies to --model scft and exemplar, got --model guide")
    if args.pairs is not None and args.data is not None:
        raise CommandError("--pairs DIR replaces --data DIR: give one of them")
    if args.pairs is None and args.data is None:
        raise CommandError("--data DIR is required (a held-out image folder), or --pairs DIR with --model scft")
    device = resolve_device(args.device)
    loaded = load_model(checkpoint_or_bundled(args.checkpoint, args.model), expected_kind=args.model, device=device)
    model = loaded.model
    image_size: int = model.config.image_size  # type: ignore[union-attr,assignment]  # both kinds' configs have it (load_model checked the kind)
    if args.pairs is not None:
        return _evaluate_scft_pairs(args, model, image_size, device)
    with warnings.catch_warnings():  # unreadable files: one line each on stderr, not a warning dump
        warnings.simplefilter("always", UnreadableImageWarning)
        warnings.showwarning = _show_warning(warnings.showwarning, UnreadableImageWarning)
        dataset = ImageFolder(args.data, size=image_size)
        total = len(dataset) if args.max_images is None else min(args.max_images, len(dataset))
        print(f"evaluating {loaded.source} on {total} images of {args.data} at {image_size}px ({device})")
        return EVALUATIONS[args.model](args, model, dataset, device)


def _evaluate_guide(args, model, dataset, device) -> int:
    from refcolor.evaluation import guide_psnr

    return _evaluate_with_report(
        guide_psnr,
        guide_psnr.evaluate_guide_psnr,
        args,
        model,
        dataset,
        device,
        summary=lambda curve: (
            f"{guide_psnr.steps_line(curve).strip()}\nall-regions hint map: {curve.hint_map_psnr:.2f} dB"
        ),
    )


def _evaluate_with_report(module, evaluate, args, model, dataset, device, summary=None) -> int:
    """Every protocol: evaluate, write the report, print its table (and summary(result), a line
    of the protocol's own, when given)."""
    result = evaluate(model, dataset, max_images=args.max_images, batch_size=args.batch_size, device=device)
    paths = module.write_report(result, args.out)
    print(module.markdown_table(result))
    if summary is not None:
        print(summary(result))
    if "png" not in paths:
        print("no plot: matplotlib is not installed (pip install refcolor[plot])")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _evaluate_scft(args, model, dataset, device) -> int:
    from functools import partial

    from refcolor.evaluation import scft_eval

    evaluate = partial(scft_eval.evaluate_scft, warp=args.warp)
    return _evaluate_with_report(scft_eval, evaluate, args, model, dataset, device)


def _evaluate_scft_pairs(args, model, image_size, device) -> int:
    from refcolor.evaluation import scft_eval, scft_pairs

    try:
        pairs = scft_pairs.find_pairs(args.pairs)
    except ValueError as exc:
        raise CommandError(f"--pairs: {exc}") from None
    print(f"evaluating on {len(pairs)} pairs of {args.pairs} at {image_size}px ({device})")

    def evaluate(model, dataset, *, max_images, batch_size, device):
        return scft_pairs.evaluate_scft_pairs(model, args.pairs, batch_size=batch_size, device=device)

    return _evaluate_with_report(scft_eval, evaluate, args, model, None, device)


def _evaluate_exemplar(args, model, dataset, device) -> int:
    from functools import partial

    from refcolor.evaluation import exemplar_eval

    evaluate = partial(exemplar_eval.evaluate_exemplar, warp=args.warp)
    return _evaluate_with_report(exemplar_eval, evaluate, args, model, dataset, device)


# --model kind -> its protocol, run on the held-out dataset inside run()'s warning handling;
# MODELS lists the same kinds
EVALUATIONS = {
    "exemplar": _evaluate_exemplar,
    "guide": _evaluate_guide,
    "scft": _evaluate_scft,
}
