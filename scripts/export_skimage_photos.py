#!/usr/bin/env python
"""Write the colour photographs that scikit-image ships (no download) as PNGs into OUT, for
evaluating the exemplar colorizer on photos (issue 13): the bundled models train on openclipart
only, so these photos are all held out.

    python scripts/export_skimage_photos.py data/skimage_photos_full
    python scripts/prepare_training_folder.py data/skimage_photos_full data/skimage_photos128 --size 128 --no-split
    refcolor evaluate --model exemplar --data data/skimage_photos128 --out reports/exemplar_photos

Kept: the seven colour photographs of skimage.data. Left out: `cat` (the same photo as `chelsea`),
`colorwheel` and `logo` (synthetic graphics, not photos).
"""

from __future__ import annotations

import argparse
from pathlib import Path

PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="output folder (created)")
    args = ap.parse_args(argv)
    import skimage.data
    from PIL import Image

    args.out.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        path = args.out / f"{name}.png"
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(path)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
