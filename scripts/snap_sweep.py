"""Soft against snapped output of the guide model for one way of snapping, and the line regions' ceilings.

    python scripts/snap_sweep.py data/openclipart128/heldout --gap 4 [--counts 0,1,2,4,8,12,16,20,25,30]
        [--max-images N] [--share S --keep K] [--checkpoint RUN]

Runs refcolor.evaluation.guide_psnr.evaluate_guide_psnr (the protocol of `refcolor evaluate --model
guide`, on the hint counts given) with line regions at `--gap` and prints, per hint count, the
soft output's PSNR (the model's own regions), the snapped output's and their difference, the share
of the snapped regions' border pixels on or within 1 px of a line, the median line regions per
sketch and the ceilings (every line region filled with the target's own median / mean).

--share S: a snapping rule other than refcolor.inference.flats.snap_regions, measured to see
whether keeping some of the model's own split helps at high hint counts: a line region joins the
channel covering most of it only when that channel covers at least S of it; inside any other line
region, the model's channels covering at least K (--keep) of it stay, the rest join the largest.
S = 0 is snap_regions itself. Issue 26's measurements: docs/training_log.md, "Snapping: gaps and
rules against the 0.5 dB target".
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor

from refcolor.evaluation.guide_psnr import evaluate_guide_psnr
from refcolor.inference import flats
from refcolor.models.bundled import checkpoint_or_bundled
from refcolor.models.loading import load_model

COUNTS = "0,1,2,4,8,12,16,20,25,30"


def snap_by_share(share: float, keep: float):
    """A snap_regions(channel_map, labels) that snaps a line region only where one channel covers
    at least `share` of it, and elsewhere keeps the model's channels covering at least `keep` of it."""

    def snap(channel_map: Tensor, labels: Tensor) -> Tensor:
        channels = int(channel_map.max()) + 1
        out = torch.empty_like(channel_map)
        for b in range(channel_map.shape[0]):
            lab, own = labels[b], channel_map[b]
            regions = int(lab.max()) + 1
            votes = torch.bincount((lab * channels + own).reshape(-1), minlength=regions * channels)
            votes = votes.reshape(regions, channels)
            top, winner = votes.max(dim=1)  # the first maximum: the lower channel, as snap_regions
            total = votes.sum(dim=1)
            clear = top >= share * total
            stays = (votes >= keep * total[:, None])[lab, own]
            out[b] = torch.where(clear[lab] | ~stays, winner[lab], own)
        return out

    return snap


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="folder of held-out images")
    parser.add_argument("--gap", type=int, default=flats.GAP, help="line regions' gap closing (default: %(default)s)")
    parser.add_argument("--counts", default=COUNTS, help="hint counts, comma-separated (default: %(default)s)")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--share", type=float, default=None, help="snap only where a channel covers this share")
    parser.add_argument("--keep", type=float, default=0.0, help="with --share: the model's channels kept")
    parser.add_argument("--checkpoint", default=None, help="a guide run (default: the bundled model)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # comparable timings on a shared machine; the figures do not depend on it
    model = load_model(checkpoint_or_bundled(args.checkpoint, "guide"), expected_kind="guide", device="cpu").model
    counts = [int(n) for n in args.counts.split(",")]
    start = time.time()
    original = flats.snap_regions
    if args.share is not None:
        # evaluate_guide_psnr snaps through flats.snap_regions: the rule under test replaces it for
        # this evaluation only (restored after, so a caller in the same process keeps the real one).
        flats.snap_regions = snap_by_share(args.share, args.keep)
    try:
        curve = evaluate_guide_psnr(model, args.data, max_images=args.max_images, hint_counts=counts, gap=args.gap)
    finally:
        flats.snap_regions = original
    rule = "snap_regions" if args.share is None else f"share {args.share}, keep {args.keep}"
    print(f"gap {args.gap}, {rule}: {curve.num_images} images, {time.time() - start:.0f} s")
    snapped = curve.mode_means()["snapped"]
    print("hints   soft  snapped  difference")
    for n, soft, snap in zip(counts, curve.psnr_mean, snapped, strict=True):
        print(f"{n:5d} {soft:6.2f} {snap:8.2f} {snap - soft:+10.2f}")
    on, total = curve.borders["snapped"]
    regions = curve.line_regions.double().median() if curve.line_regions is not None else float("nan")
    ceilings = ", ".join(f"{name} {float(values.mean()):.2f}" for name, values in curve.ceilings.items())
    print(
        f"borders on or within 1 px of a line: snapped {curve.border_share('snapped'):.1%} ({on} of {total}), "
        f"model {curve.border_share('model'):.1%}; line regions per sketch: median {regions:.0f}; "
        f"ceilings (dB): {ceilings}"
    )


if __name__ == "__main__":
    main()
