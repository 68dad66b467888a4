"""The photos source of the exemplar training data (refcolor.data.photo_crops): the fixed list of
Debian wallpaper photos and the random multi-scale crops, split by whole photo."""

from __future__ import annotations

from pathlib import Path

import pytest

from refcolor.data.photo_crops import SPLITS, PhotoSource, centre_box, crop_boxes, photo_name, read_photo_sources


def test_bundled_list_parses_and_holds_out_whole_photos():
    sources = read_photo_sources()
    assert len(sources) >= 30
    assert {s.split for s in sources} == set(SPLITS)
    assert all(s.licence and s.package for s in sources)
    names = [photo_name(s) for s in sources]
    assert len(set(names)) == len(names)  # one output name per photo (KDE's WxH files included)
    held = sum(s.split == "heldout" for s in sources)
    assert 0.1 < held / len(sources) < 0.4


def test_kde_layout_names_the_wallpaper():
    source = PhotoSource(Path("/usr/share/wallpapers/Path/contents/images/1920x1080.jpg"), "pkg", "GPL-2+", "train")
    assert photo_name(source) == "pkg_Path"


@pytest.mark.parametrize("width, height", [(640, 480), (300, 900), (17, 17)])
def test_crop_boxes_are_square_inside_and_deterministic(width, height):
    boxes = crop_boxes(width, height, 200, seed=3, key="a")
    assert boxes == crop_boxes(width, height, 200, seed=3, key="a")
    assert boxes != crop_boxes(width, height, 200, seed=4, key="a")
    short = min(width, height)
    for left, top, right, bottom in boxes:
        assert right - left == bottom - top
        assert 0 <= left and 0 <= top and right <= width and bottom <= height
        assert right - left >= round(short * 0.25) - 1
    sides = sorted(right - left for left, _, right, _ in boxes)
    assert sides[0] < short * 0.4 and sides[-1] > short * 0.8  # several scales


def test_centre_box_and_errors(tmp_path):
    assert centre_box(10, 4) == (3, 0, 7, 4)
    with pytest.raises(ValueError, match="min_fraction"):
        crop_boxes(10, 10, 1, min_fraction=0)
    bad = tmp_path / "bad.tsv"
    bad.write_text("path\tpackage\tlicence\tsplit\n/x.jpg\tp\tl\tvalidation\n")
    with pytest.raises(ValueError, match="line 2 must be path, package, licence, split"):
        read_photo_sources(bad)
    bad.write_text("# only a comment\n")
    with pytest.raises(ValueError, match="expected the header"):
        read_photo_sources(bad)
