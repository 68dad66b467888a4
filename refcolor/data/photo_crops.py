"""Photographs that install offline, for the exemplar colorizer (issue 30): the list of Debian
wallpaper photos (refcolor/assets/photo_sources.tsv: path, package, licence, split) and the random
multi-scale square crops a training folder is made of.

A few dozen high-resolution photos give thousands of distinct training crops: each crop's side is
drawn log-uniformly between `min_fraction` and 1 of the photo's shorter side, its place uniformly,
from a generator seeded by the seed and the photo's file name, so a rerun makes the same crops.
The split is by whole photo: no crop of a held-out photo is ever a training image.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

SOURCES = Path(__file__).resolve().parent.parent / "assets" / "photo_sources.tsv"
SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class PhotoSource:
    path: Path
    package: str
    licence: str
    split: str


def read_photo_sources(path: str | Path | None = None) -> list[PhotoSource]:
    """The photos of the TSV (comment lines start with #; a header row names the columns)."""
    rows = []
    lines = [line for line in Path(path or SOURCES).read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("#")]
    if not lines or lines[0].split("\t") != ["path", "package", "licence", "split"]:
        raise ValueError(f"photo sources: expected the header 'path package licence split' in {path or SOURCES}")
    for number, line in enumerate(lines[1:], 2):
        fields = line.split("\t")
        if len(fields) != 4 or fields[3] not in SPLITS:
            raise ValueError(
                f"photo sources: line {number} must be path, package, licence, split in {SPLITS}: {line!r}"
            )
        rows.append(PhotoSource(Path(fields[0]), fields[1], fields[2], fields[3]))
    return rows


def photo_name(source: PhotoSource) -> str:
    """A file-name stem unique among the sources: package and file stem, or, for KDE's layout
    (NAME/contents/images/WIDTHxHEIGHT.jpg), package and the wallpaper's NAME."""
    stem = source.path.stem
    if re.fullmatch(r"\d+x\d+", stem) and len(source.path.parts) >= 4:
        stem = source.path.parts[-4]
    return f"{source.package}_{stem}"


def crop_boxes(
    width: int, height: int, count: int, *, seed: int = 0, key: str = "", min_fraction: float = 0.25
) -> list[tuple[int, int, int, int]]:
    """`count` square boxes (left, top, right, bottom) inside a width x height photo: side
    log-uniform in [min_fraction, 1] x the shorter side, place uniform. Deterministic in (seed, key)."""
    if width < 1 or height < 1:
        raise ValueError(f"crop_boxes: the photo must have a positive size, got {width} x {height}")
    if not 0 < min_fraction <= 1:
        raise ValueError(f"crop_boxes: argument 'min_fraction' must be in (0, 1], got {min_fraction}")
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    short = min(width, height)
    boxes = []
    for _ in range(count):
        side = max(1, round(short * math.exp(rng.uniform(math.log(min_fraction), 0.0))))
        left = rng.randint(0, width - side)
        top = rng.randint(0, height - side)
        boxes.append((left, top, left + side, top + side))
    return boxes


def centre_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centred square, as ImageFolder crops."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return (left, top, left + side, top + side)


__all__ = ["SOURCES", "SPLITS", "PhotoSource", "centre_box", "crop_boxes", "photo_name", "read_photo_sources"]
