#!/usr/bin/env python
"""Prepare a training folder: every image under SRC decoded, turned upright (EXIF), composited on
white, its shorter side resized to --size (Lanczos) and centre-cropped to a square, saved as PNG
under OUT with the same relative path. Unreadable files are skipped and counted, never fatal.

    python scripts/prepare_training_folder.py openclipart data/openclipart256 --size 256
    python scripts/prepare_training_folder.py ~/my_images data/mine256 --limit 10000

SRC "openclipart" means Debian's openclipart-png (/usr/share/openclipart/png, ~8,000
public-domain clip-art PNGs). For that source --min-size defaults to size/2 and --colour-only is
on: much of it is small icons and black-and-white line art, useless for learning colour. For any
other folder nothing is filtered unless asked. Existing outputs are kept (reruns resume) unless
--overwrite; each output is written to a temporary name and renamed, so an interrupted run
leaves no half-written file.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from refcolor.data.image_folder import EXTENSIONS, open_rgb, resize_crop

OPENCLIPART = "/usr/share/openclipart/png"


def colour_stats(im: Image.Image) -> tuple[float, float, int]:
    """(content coverage, saturated fraction of the content, number of hues) of an RGB image on
    white, measured on a <= 128 px thumbnail. Content: pixels that are not near-white. Saturated:
    HSV saturation > 0.25 and value > 0.15. Hues: 12 hue bins each holding >= 5% of the saturated
    pixels (a one-hue image, e.g. blue shades only, counts as near-monochrome)."""
    t = im.copy()
    t.thumbnail((128, 128))
    rgb = np.asarray(t, dtype=np.float32) / 255
    hsv = np.asarray(t.convert("HSV"), dtype=np.float32) / 255
    content = rgb.min(axis=-1) < 0.94
    sat = content & (hsv[..., 1] > 0.25) & (hsv[..., 2] > 0.15)
    if not sat.any():
        return float(content.mean()), 0.0, 0
    hues = np.bincount((hsv[..., 0][sat] * 12).astype(int) % 12, minlength=12)
    return float(content.mean()), float(sat.sum() / content.sum()), int((hues >= 0.05 * sat.sum()).sum())


def is_colourful(im: Image.Image, min_saturated: float = 0.2, min_hues: int = 1) -> bool:
    _, saturated, hues = colour_stats(im)
    return saturated >= min_saturated and hues >= min_hues


def list_images(src: Path) -> list[Path]:
    exts = {"." + e for e in EXTENSIONS}
    return sorted(p for p in src.rglob("*") if p.suffix.lower() in exts and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(src).parts))


def _process(job: tuple[str, str, int, int, bool, bool]) -> str:
    src, dst, size, min_size, colour_only, overwrite = job
    if not overwrite and os.path.exists(dst):
        return "existing"
    try:
        im = open_rgb(src, size)
    except Exception as e:  # any decoder error: skip the file, keep going
        return f"unreadable: {type(e).__name__}: {e}"
    if min(im.size) < min_size:
        return "too small"
    if colour_only and not is_colourful(im):
        return "near-monochrome"
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = f"{dst}.tmp{os.getpid()}"
    resize_crop(im, size).save(tmp, "PNG", optimize=True)
    os.replace(tmp, dst)
    return "written"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help='a folder of images, or "openclipart" for ' + OPENCLIPART)
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--limit", type=int, help="use at most N source files (a seeded random sample)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --limit sample")
    ap.add_argument("--min-size", type=int, help="skip images whose shorter side is below this (px)")
    ap.add_argument("--colour-only", action=argparse.BooleanOptionalAction,
                    help="skip near-monochrome images (see colour_stats)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)

    clipart = args.src == "openclipart"
    src = Path(OPENCLIPART if clipart else args.src).expanduser()
    if not src.is_dir():
        ap.error(f"source folder not found: {src}" + (" (apt-get install openclipart-png)" if clipart else ""))
    min_size = args.min_size if args.min_size is not None else (args.size // 2 if clipart else 0)
    colour_only = args.colour_only if args.colour_only is not None else clipart

    files = list_images(src)
    if args.limit is not None and args.limit < len(files):
        files = sorted(random.Random(args.seed).sample(files, args.limit))
    if not files:
        ap.error(f"no image files ({', '.join(EXTENSIONS)}) under {src}")
    outs = [(args.out / f.relative_to(src)).with_suffix(".png") for f in files]
    # a.jpg and a.png in one folder would map to the same output: keep the extension for those.
    clash = {o for o, n in Counter(outs).items() if n > 1}
    outs = [o.with_name(f"{o.stem}_{f.suffix[1:].lower()}.png") if o in clash else o for f, o in zip(files, outs)]
    jobs = [(str(f), str(o), args.size, min_size, colour_only, args.overwrite) for f, o in zip(files, outs)]

    counts: dict[str, int] = {}
    t0 = time.time()
    with ProcessPoolExecutor(args.jobs) as pool:
        for k, ((path, *_), status) in enumerate(zip(jobs, pool.map(_process, jobs, chunksize=16)), 1):
            key = status.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
            if key == "unreadable":
                print(f"\nskipped {path}: {status}", file=sys.stderr)
            if k % 50 == 0 or k == len(jobs):
                print(f"\r{k}/{len(jobs)} files, {time.time() - t0:.0f}s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(f"{src} -> {args.out} ({args.size}x{args.size}): "
          + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
