#!/usr/bin/env python
"""Prepare a training folder: every image under SRC decoded, turned upright (EXIF), composited on
white, its shorter side resized to --size (Lanczos) and centre-cropped to a square, saved as PNG
under OUT with the same relative path. Unreadable files are skipped and counted, never fatal.

    python scripts/prepare_training_folder.py openclipart data/openclipart256 --size 256
    python scripts/prepare_training_folder.py ~/my_images data/mine256 --limit 10000

SRC "openclipart" means Debian's openclipart-png (/usr/share/openclipart/png, 6,900
public-domain clip-art PNGs). For that source --min-size defaults to size/2 and --colour-only is
on: much of it is small icons and black-and-white line art, useless for learning colour. For any
other folder nothing is filtered unless asked. For openclipart, byte-identical copies are skipped
(--dedupe, see drop_duplicates). Existing outputs are kept (reruns resume) unless
--overwrite; each output is written to a temporary name and renamed, so an interrupted run
leaves no half-written file.

The fixed held-out split (openclipart only, on by default there; --no-split to turn it off): the
files listed in refcolor/assets/openclipart_heldout.txt (paths relative to the source folder) go
to OUT/heldout/, all others to OUT/train/, so every training run and every evaluation agree on
which images were never trained on. The list was made once by `--write-heldout-list` with the
rule of `heldout_rule` (about 5%, chosen by a hash of each file's bytes, so byte-identical copies,
which the package has, always fall on the same side; the bundled sample set's sources stay in
training, so the quick-start model never saw a held-out image either) and is read, not
recomputed, on every run: a later package version with other files cannot move an image across.

    python scripts/prepare_training_folder.py openclipart data/openclipart128 --size 128
        -> data/openclipart128/train/..., data/openclipart128/heldout/...

SRC "photos" means the photographs of Debian's wallpaper packages listed in
refcolor/assets/photo_sources.tsv (apt-get install mate-backgrounds lomiri-wallpapers
plasma-workspace-wallpapers) plus scikit-image's seven colour photos when scikit-image is
installed. The split is by whole photo (the list's split column; scikit-image's photos are all held
out): each training photo gives --crops random square crops at several scales
(refcolor.data.photo_crops.crop_boxes), each held-out photo its centre crop and --heldout-crops
random crops, so no crop of a held-out photo is ever trained on.

    python scripts/prepare_training_folder.py photos data/photos128 --size 128 --crops 200
        -> data/photos128/train/NAME_c000.png ..., data/photos128/heldout/NAME_centre.png ...
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from refcolor.data.image_folder import EXTENSIONS, open_rgb, resize_crop

OPENCLIPART = "/usr/share/openclipart/png"
REPO = Path(__file__).resolve().parent.parent
HELDOUT_LIST = REPO / "refcolor" / "assets" / "openclipart_heldout.txt"
SAMPLE_SOURCES = REPO / "refcolor" / "assets" / "samples" / "SOURCES.md"
HELDOUT_PER_MILLE = 50  # ~5% of the files


def sample_set_sources() -> set[str]:
    """Source paths (relative to the openclipart folder) of the bundled sample set, from its SOURCES.md."""
    if not SAMPLE_SOURCES.is_file():
        return set()
    return set(re.findall(r"^\| `[^`]+` \| `([^`]+)` \|", SAMPLE_SOURCES.read_text(), flags=re.M))


def file_digests(files: list[Path]) -> dict[Path, bytes]:
    return {f: hashlib.sha256(f.read_bytes()).digest() for f in files}


def drop_duplicates(files: list[Path], digests: dict[Path, bytes]) -> tuple[list[Path], int]:
    """The first (sorted) file of each distinct content, and how many copies were dropped. The
    package holds about 1,200 byte-identical copies (symbolic links across categories): kept, they
    would weigh some images twice in training and count them twice in evaluation."""
    seen: set[bytes] = set()
    kept = []
    for f in files:
        if digests[f] not in seen:
            seen.add(digests[f])
            kept.append(f)
    return kept, len(files) - len(kept)


def heldout_rule(src: Path, files: list[Path]) -> list[str]:
    """The held-out files among `files` (sorted relative POSIX paths): those whose content's SHA-256,
    read as an integer, is below HELDOUT_PER_MILLE / 1000 of the range, minus every file with the
    same bytes as a bundled sample-set source (those are trained on by the quick start)."""
    digests = file_digests(files)
    samples = sample_set_sources()
    sample_digests = {d for f, d in digests.items() if f.relative_to(src).as_posix() in samples}
    return sorted(
        f.relative_to(src).as_posix()
        for f, d in digests.items()
        if int.from_bytes(d[:8], "big") % 1000 < HELDOUT_PER_MILLE and d not in sample_digests
    )


def read_heldout_list(path: Path | None = None) -> set[str]:
    lines = (path or HELDOUT_LIST).read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def write_heldout_list(paths: list[str], total: int, path: Path | None = None) -> None:
    header = (
        "# openclipart-png held-out split: never train on these files (paths relative to /usr/share/openclipart/png).\n"
        f"# {len(paths)} of {total} files; made by scripts/prepare_training_folder.py --write-heldout-list "
        "(rule: heldout_rule there). Read, not recomputed, by every run.\n"
    )
    (path or HELDOUT_LIST).write_text(header + "".join(p + "\n" for p in paths), encoding="utf-8")


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
    return sorted(
        p
        for p in src.rglob("*")
        if p.suffix.lower() in exts
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(src).parts)
    )


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


def _photos() -> list[tuple[str, object, str]]:
    """(name, file path or scikit-image loader name, split) of every photo of the photos source."""
    from refcolor.data.photo_crops import photo_name, read_photo_sources

    photos: list[tuple[str, object, str]] = []
    for source in read_photo_sources():
        if source.path.is_file():
            photos.append((photo_name(source), source.path, source.split))
        else:
            print(f"skipped {source.path}: not installed (apt-get install {source.package})", file=sys.stderr)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from export_skimage_photos import PHOTOS

    try:
        import skimage.data  # noqa: F401
    except ImportError:
        print("scikit-image is not installed: its photos are left out", file=sys.stderr)
        return photos
    return photos + [(f"skimage_{name}", name, "heldout") for name in PHOTOS]


def prepare_photos(out: Path, size: int, crops: int, heldout_crops: int, seed: int, overwrite: bool) -> int:
    """The photos source: crops of each photo, one photo in memory at a time; reruns resume."""
    from refcolor.data.photo_crops import centre_box, crop_boxes

    counts: Counter[str] = Counter()
    for name, where, split in _photos():
        if isinstance(where, Path):
            try:
                im = open_rgb(where)
            except Exception as e:  # an unreadable photo is skipped and counted, never fatal
                print(f"skipped {where}: {type(e).__name__}: {e}", file=sys.stderr)
                counts["unreadable"] += 1
                continue
        else:
            import skimage.data

            im = Image.fromarray(getattr(skimage.data, str(where))()).convert("RGB")
        w, h = im.size
        boxes = {} if split == "train" else {"centre": centre_box(w, h)}
        count = crops if split == "train" else heldout_crops
        boxes.update({f"c{i:03d}": b for i, b in enumerate(crop_boxes(w, h, count, seed=seed, key=name))})
        for suffix, box in boxes.items():
            dst = out / split / f"{name}_{suffix}.png"
            if dst.exists() and not overwrite:
                counts[f"{split} existing"] += 1
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
            im.resize((size, size), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0).save(tmp, "PNG")
            os.replace(tmp, dst)
            counts[f"{split} written"] += 1
    print(f"photos -> {out} ({size}x{size}): " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help='a folder of images, or "openclipart" for ' + OPENCLIPART)
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--limit", type=int, help="use at most N source files (a seeded random sample)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --limit sample")
    ap.add_argument("--min-size", type=int, help="skip images whose shorter side is below this (px)")
    ap.add_argument(
        "--colour-only", action=argparse.BooleanOptionalAction, help="skip near-monochrome images (see colour_stats)"
    )
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument(
        "--dedupe",
        action=argparse.BooleanOptionalAction,
        help="skip byte-identical copies, keeping the first path (default: on for openclipart)",
    )
    ap.add_argument(
        "--split",
        action=argparse.BooleanOptionalAction,
        help="openclipart only (default on): OUT/train and OUT/heldout from " + str(HELDOUT_LIST.name),
    )
    ap.add_argument(
        "--write-heldout-list",
        action="store_true",
        help="(re)make refcolor/assets/openclipart_heldout.txt with heldout_rule and stop",
    )
    ap.add_argument("--crops", type=int, default=200, help="photos source: random crops per training photo")
    ap.add_argument("--heldout-crops", type=int, default=4, help="photos source: random crops per held-out photo")
    args = ap.parse_args(argv)

    if args.src == "photos":
        if args.crops < 1 or args.heldout_crops < 0:
            ap.error(f"--crops must be >= 1 and --heldout-crops >= 0, got {args.crops} and {args.heldout_crops}")
        return prepare_photos(args.out, args.size, args.crops, args.heldout_crops, args.seed, args.overwrite)
    clipart = args.src == "openclipart"
    src = Path(OPENCLIPART if clipart else args.src).expanduser()
    if not src.is_dir():
        ap.error(f"source folder not found: {src}" + (" (apt-get install openclipart-png)" if clipart else ""))
    min_size = args.min_size if args.min_size is not None else (args.size // 2 if clipart else 0)
    colour_only = args.colour_only if args.colour_only is not None else clipart

    files = list_images(src)
    if args.write_heldout_list:
        if not clipart:
            ap.error("--write-heldout-list applies to the openclipart source only")
        paths = heldout_rule(src, files)
        write_heldout_list(paths, len(files))
        print(f"wrote {HELDOUT_LIST}: {len(paths)} of {len(files)} files held out")
        return 0
    split = args.split if args.split is not None else clipart
    if split and not clipart:
        ap.error("--split needs the openclipart source (its held-out list names openclipart files)")
    heldout = read_heldout_list() if split else set()
    if split:
        missing = heldout - {f.relative_to(src).as_posix() for f in files}
        if missing:
            print(
                f"warning: {len(missing)} held-out files are not under {src} (another package version?)",
                file=sys.stderr,
            )
    duplicates = 0
    if args.dedupe if args.dedupe is not None else clipart:
        files, duplicates = drop_duplicates(files, file_digests(files))
    if args.limit is not None and args.limit < len(files):
        files = sorted(random.Random(args.seed).sample(files, args.limit))
    if not files:
        ap.error(f"no image files ({', '.join(EXTENSIONS)}) under {src}")

    def out_dir(f: Path) -> Path:
        if not split:
            return args.out
        return args.out / ("heldout" if f.relative_to(src).as_posix() in heldout else "train")

    outs = [(out_dir(f) / f.relative_to(src)).with_suffix(".png") for f in files]
    # a.jpg and a.png in one folder would map to the same output: keep the extension for those.
    clash = {o for o, n in Counter(outs).items() if n > 1}
    outs = [
        o.with_name(f"{o.stem}_{f.suffix[1:].lower()}.png") if o in clash else o
        for f, o in zip(files, outs, strict=True)
    ]
    jobs = [
        (str(f), str(o), args.size, min_size, colour_only, args.overwrite) for f, o in zip(files, outs, strict=True)
    ]

    counts: dict[str, int] = {"duplicate (skipped)": duplicates} if duplicates else {}
    t0 = time.time()
    with ProcessPoolExecutor(args.jobs) as pool:
        for k, ((path, dst, *_), status) in enumerate(
            zip(jobs, pool.map(_process, jobs, chunksize=16), strict=True), 1
        ):
            key = status.split(":")[0]
            if key == "unreadable":
                print(f"\nskipped {path}: {status}", file=sys.stderr)
            if split:
                key = f"{Path(dst).relative_to(args.out).parts[0]} {key}"
            counts[key] = counts.get(key, 0) + 1
            if k % 50 == 0 or k == len(jobs):
                print(f"\r{k}/{len(jobs)} files, {time.time() - t0:.0f}s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(f"{src} -> {args.out} ({args.size}x{args.size}): " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
