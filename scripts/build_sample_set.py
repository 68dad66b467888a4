#!/usr/bin/env python
"""Rebuild the bundled sample set `refcolor/assets/samples/` from Debian's openclipart-png.

    apt-get install openclipart-png && python scripts/build_sample_set.py

Choice (deterministic): every PNG under /usr/share/openclipart/png, sorted, shuffled with a fixed
seed; taken in that order while they pass, until N are taken:
- readable, at most 16 Mpx (a few files are decompression bombs);
- a cut-out illustration: after compositing on white, >= 98% of the 1-px border is near-white
  (a full-bleed picture would get white bars in the square);
- the content (non-white) bounding box is at least 160 px on its longer side (so it is
  downscaled, never upscaled) and covers >= 15% of the output square;
- colourful: >= 30% of the content pixels saturated, spread over >= 2 hues (see `colour_stats`);
- not a byte-identical copy of one already taken (the package repeats some files);
- at most N/8 from one top-level category (otherwise "computer" icons would fill 40% of it).
Output: the content bounding box plus a 4% margin, centred in a white square, Lanczos-resized to
128x128 (the whole illustration stays visible, unlike a centre crop of a wide picture), saved as
optimised 8-bit RGB PNG named NNN_<category>_<name>.png in sorted order of the source paths.
SOURCES.md maps each file to its original, with the package version and licence.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

# The sibling script (scripts/ is sys.path[0] when this file is run).
from prepare_training_folder import OPENCLIPART, colour_stats, list_images

from refcolor.data.image_folder import open_rgb

OUT = Path(__file__).resolve().parents[1] / "refcolor" / "assets" / "samples"
SIZE, MARGIN, MIN_CONTENT = 128, 0.04, 160


def square_on_white(im: Image.Image) -> Image.Image | None:
    """The content box centred in a white square, resized to SIZE; None if `im` is rejected."""
    rgb = np.asarray(im)
    white = rgb.min(axis=-1) >= 240
    border = np.concatenate([white[0], white[-1], white[:, 0], white[:, -1]])
    if border.mean() < 0.98 or white.all():
        return None
    ys, xs = np.nonzero(~white)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = round(max(x1 - x0, y1 - y0) * (1 + 2 * MARGIN))
    if max(x1 - x0, y1 - y0) < MIN_CONTENT or (~white).sum() < 0.15 * side * side:
        return None
    sq = Image.new("RGB", (side, side), (255, 255, 255))
    sq.paste(im.crop((x0, y0, x1, y1)), ((side - (x1 - x0)) // 2, (side - (y1 - y0)) // 2))
    return sq.resize((SIZE, SIZE), Image.Resampling.LANCZOS, reducing_gap=3.0)


def accept(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as im:
            if im.width * im.height > 16_000_000:
                return None
        im = open_rgb(path)
    except Exception:  # unreadable: not a candidate
        return None
    _, saturated, hues = colour_stats(im)
    return square_on_white(im) if saturated >= 0.3 and hues >= 2 else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--src", type=Path, default=Path(OPENCLIPART))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if not args.src.is_dir():
        ap.error(f"{args.src} not found: apt-get install openclipart-png")

    files = list_images(args.src)
    random.Random(args.seed).shuffle(files)
    taken, seen, per_category, tried = {}, set(), Counter(), 0
    for path in files:
        if len(taken) == args.count:
            break
        category = path.relative_to(args.src).parts[0]
        if per_category[category] >= max(1, args.count // 8):
            continue
        tried += 1
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in seen:
            continue
        out = accept(path)
        if out is not None:
            seen.add(digest)
            per_category[category] += 1
            taken[path] = out
    print(
        f"{len(taken)} taken of {tried} tried ({len(files)} files); per category: {dict(sorted(per_category.items()))}"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.png"):
        old.unlink()
    rows = []
    for k, path in enumerate(sorted(taken)):
        rel = path.relative_to(args.src)
        slug = re.sub(r"[^a-z0-9]+", "_", f"{rel.parts[0]}_{path.stem}".lower()).strip("_")[:48]
        name = f"{k:03d}_{slug}.png"
        taken[path].save(args.out / name, "PNG", optimize=True)
        rows.append(f"| `{name}` | `{rel}` |")

    version = (
        subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "openclipart-png"], capture_output=True, text=True, check=False
        ).stdout
        or "unknown"
    )
    doc = (__doc__.split("\n\n", 2)[2]).strip()
    (args.out / "SOURCES.md").write_text(
        "# Sample images\n\n"
        f"{len(rows)} public-domain colour clip-art illustrations, {SIZE}x{SIZE} RGB PNG, for the demo, "
        "tests and docs (`refcolor.data.sample_images_dir()`).\n\n"
        f"- Source: Debian's `openclipart-png` package, version `{version}` (openclipart 0.18), files under "
        f"`{args.src}`.\n"
        "- Licence: public domain. The package's `/usr/share/doc/openclipart-png/copyright` says: "
        '"creative commons Public Domain Dedication" -- "Copyright-Only Dedication (based on United States '
        'law) or Public Domain Certification", under which the work "may be freely reproduced, distributed, '
        "transmitted, used, modified, built upon, or otherwise exploited by anyone for any purpose, "
        'commercial or non-commercial".\n'
        f"- Rebuilt by `scripts/build_sample_set.py --count {args.count} --seed {args.seed}` "
        f"(Pillow {PIL.__version__}; another Pillow may resample or compress slightly differently).\n\n"
        f"## How they were chosen and changed\n\n{doc}\n\n"
        "## Files\n\n| file | original (under the source folder) |\n|---|---|\n" + "\n".join(rows) + "\n"
    )
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {len(rows)} images to {args.out}: {total / 1e6:.2f} MB in all (with SOURCES.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
