"""`ImageFolder`: every readable image under a folder, as (3, size, size) float tensors in [0, 1].

Bad files are expected (a folder of a million scraped images always holds a few) and never fatal:

- At construction the folder is scanned (recursively, sorted, by extension, case-insensitive;
  hidden files and folders are ignored) and every candidate is opened and `verify()`-ed: PIL reads
  the header and, for PNG, every chunk with its CRC, without decoding pixels. Files that fail
  (0 bytes, not an image, truncated or corrupt PNG, decompression bomb) are left out with one
  `UnreadableImageWarning` each, listed in `dataset.skipped`, and summarised in one warning at the
  end of the scan.
- `verify()` cannot catch everything (a truncated JPEG passes it; a file can change after the
  scan), so `__getitem__` also tolerates decode failures: it warns once per file, records it and
  deterministically returns the next decodable index instead (so an epoch never dies and the
  length the sampler relies on never changes). Inside DataLoader workers the warning is printed by
  the worker and recorded in the worker's copy of the dataset, not the main process's.

Truncated images are treated as unreadable: PIL's global `ImageFile.LOAD_TRUNCATED_IMAGES` is
left alone.
"""

from __future__ import annotations

import operator
import os
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class UnreadableImageWarning(UserWarning):
    """A file with an image extension that could not be decoded and was skipped."""


def list_images(root: str | os.PathLike[str], extensions=EXTENSIONS) -> list[str]:
    """Image files under `root`, recursively, sorted: by extension (case-insensitive, with or
    without the dot), hidden files and folders (names starting with ".") skipped. The one folder
    listing of training, sketch extraction and the inference commands."""
    extensions = tuple(e.lower().lstrip(".") for e in extensions)
    found = []
    for dirpath, dirnames, filenames in os.walk(os.fspath(root)):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # also prunes the walk
        found += [
            os.path.join(dirpath, f)
            for f in filenames
            if not f.startswith(".") and os.path.splitext(f)[1][1:].lower() in extensions
        ]
    return sorted(found)


def sample_images_dir() -> Path:
    """The bundled public-domain sample set (`refcolor/assets/samples/`, 128x128 PNGs; see its
    SOURCES.md). Needs a filesystem install (a regular or editable one, not a zip)."""
    path = Path(str(resources.files("refcolor") / "assets" / "samples"))
    if not path.is_dir():
        raise FileNotFoundError(f"bundled sample images not found at {path}")
    return path


def to_rgb(im: Image.Image) -> Image.Image:
    """EXIF orientation applied; transparency composited on white; any mode converted to 8-bit RGB."""
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # malformed EXIF: the pixels are still fine, keep them as stored
        pass
    if im.mode.startswith("I") or im.mode == "F":
        # 16-bit / 32-bit grayscale: convert("RGB") would clip at 255 instead of rescaling.
        a = np.asarray(im, dtype=np.float64)
        a = a / 257.0 if (im.mode.startswith("I;16") or a.max() > 255) else a
        im = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        im = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im).convert("RGB")
    return im.convert("RGB")


def open_rgb(path: str | os.PathLike, size: int | None = None) -> Image.Image:
    """Decode `path` fully into an RGB image (see `to_rgb`). Raises on any unreadable file.
    `size`: the output will be resized to about `size`, so JPEGs may decode at a reduced scale
    (DCT scaling, much faster for large photos); both sides stay >= `size`."""
    with Image.open(path) as im:
        if size is not None:
            im.draft(None, (size, size))
        im.load()  # decode now, inside the caller's error handling
        return to_rgb(im)


def resize_crop(im: Image.Image, size: int, offset: tuple[float, float] = (0.5, 0.5)) -> Image.Image:
    """Square crop of side min(w, h) at relative `offset` (0.5, 0.5: centre), resized to
    size x size with Lanczos, in one resampling step (`box=`) so nothing is resampled twice."""
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) * offset[0], (h - side) * offset[1]
    return resize_lanczos(im, (size, size), box=(left, top, left + side, top + side))


def resize_lanczos(
    im: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float] | None = None
) -> Image.Image:
    """`im` (or its `box`) resized to size = (width, height): the one resampling of colour images
    for training (ImageFolder) and inference (refcolor.data.sketch_preparation), so both see the
    same pixels. Lanczos with a box pre-reduction beyond 3x (reducing_gap): fast on large photos."""
    return im.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


class ImageFolder(torch.utils.data.Dataset):
    """Every readable image under `root`, recursively, in sorted path order.

    Items: {"image": float32 (3, size, size) in [0, 1], "path": str}. Each image is decoded, turned
    upright from its EXIF orientation, composited on white where transparent, converted to RGB, and
    its shorter side resized to `size` with the centre square kept (`random_crop=True`: a random
    square along the longer side instead, drawn from torch's global RNG, which DataLoader seeds per
    worker from the loader's generator, so `make_loader(seed=...)` makes crops reproducible).

    `verify=False` skips the header check at scan time (faster on huge trusted folders); bad files
    are then only found, warned about and skipped at load time. See the module docstring.
    Raises FileNotFoundError (missing `root`), NotADirectoryError (a file) or ValueError (no
    readable image).
    """

    def __init__(self, root, size: int = 256, *, extensions=EXTENSIONS, random_crop: bool = False, verify: bool = True):
        self.root, self.size, self.random_crop = str(root), int(size), random_crop
        self.extensions = tuple(e.lower().lstrip(".") for e in extensions)
        if not os.path.exists(self.root):
            raise FileNotFoundError(f"image folder not found: {self.root}")
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"image folder is a file, not a folder: {self.root}")
        self.skipped: list[tuple[str, str]] = []
        paths = [p for p in self._candidates() if not verify or self._verify(p)]
        if not paths:
            raise ValueError(
                f"no readable image under {self.root} (extensions searched: {', '.join(self.extensions)}; "
                f"{len(self.skipped)} unreadable file(s) skipped)"
            )
        # Paths as one byte buffer + offsets, not a list of str: workers forked from this process
        # would otherwise copy the pages of a million refcounted str objects as they touch them.
        enc = [p.encode("utf-8", "surrogateescape") for p in paths]
        self._blob = np.frombuffer(b"".join(enc), dtype=np.uint8)
        self._ends = np.cumsum([len(e) for e in enc])
        self._bad: set[int] = set()  # indices that failed at load time (this process only)
        if self.skipped:
            warnings.warn(
                f"ImageFolder({self.root}): {self.summary()} (see .skipped)", UnreadableImageWarning, stacklevel=2
            )

    def _candidates(self) -> list[str]:
        return list_images(self.root, self.extensions)

    def _skip(self, path: str, err: BaseException) -> None:
        reason = f"{type(err).__name__}: {err}"
        self.skipped.append((path, reason))
        warnings.warn(f"skipping unreadable image {path}: {reason}", UnreadableImageWarning, stacklevel=3)

    def _verify(self, path: str) -> bool:
        try:
            with Image.open(path) as im:
                im.verify()
            return True
        except Exception as e:  # any decoder error means "unreadable", never a crash
            self._skip(path, e)
            return False

    def path(self, index: int) -> str:
        index = range(len(self))[index]  # negative indices, IndexError
        start = self._ends[index - 1] if index > 0 else 0
        return self._blob[start : self._ends[index]].tobytes().decode("utf-8", "surrogateescape")

    @property
    def paths(self) -> list[str]:
        return [self.path(i) for i in range(len(self))]

    def summary(self) -> str:
        return f"{len(self)} images, {len(self.skipped)} skipped"

    def __len__(self) -> int:
        return len(self._ends)

    def load(self, path: str) -> torch.Tensor:
        """Decode one file into a float32 (3, size, size) tensor in [0, 1]; raises if unreadable."""
        im = open_rgb(path, self.size)
        offset = tuple(torch.rand(2).tolist()) if self.random_crop else (0.5, 0.5)
        a = np.asarray(resize_crop(im, self.size, offset), dtype=np.uint8)
        return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255)

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        index = operator.index(index)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        # A file that fails now (truncated JPEG, changed since the scan) is replaced by the next
        # decodable one, deterministically, so a DataLoader epoch never dies on one bad file.
        for k in range(n):
            i = (index + k) % n
            if i in self._bad:
                continue
            path = self.path(i)
            try:
                return {"image": self.load(path), "path": path}
            except Exception as e:
                self._bad.add(i)
                self._skip(path, e)
        raise RuntimeError(f"none of the {n} images under {self.root} could be decoded")

    def __repr__(self) -> str:
        return f"ImageFolder({self.root!r}, size={self.size}: {self.summary()})"
