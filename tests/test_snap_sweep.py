"""scripts/snap_sweep.py: the snapping rules it measures against flats.snap_regions (docs/training_log.md,
"Snapping: gaps and rules against the 0.5 dB target"), and one run of it on a small folder."""

from __future__ import annotations

import pytest
import torch

from refcolor import images as im
from refcolor.inference import flats
from tests.helpers import load_script

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sweep():
    return load_script("snap_sweep")


def test_share_zero_is_snap_regions_ties_included(sweep):
    g = torch.Generator().manual_seed(0)
    channels = torch.randint(0, 4, (3, 9, 13), generator=g)  # few channels: many ties
    labels = torch.randint(0, 6, (3, 9, 13), generator=g)
    assert torch.equal(sweep.snap_by_share(0.0, 0.0)(channels, labels), flats.snap_regions(channels, labels))


def test_share_and_keep_decide_which_of_the_models_channels_stay(sweep):
    # One line region (label 0) of ten pixels: channel 2 covers 6, channel 5 covers 3, channel 7 one;
    # a second line region (label 1) wholly channel 3.
    channels = torch.tensor([[[2, 2, 2, 2, 2, 2, 5, 5, 5, 7, 3, 3]]])
    labels = torch.tensor([[[0] * 10 + [1, 1]]])
    snapped = [2] * 10 + [3, 3]
    assert sweep.snap_by_share(0.6, 0.0)(channels, labels)[0, 0].tolist() == snapped  # 60% >= 0.6: snapped
    # 60% < 0.7: the model's channels covering at least 20% stay (2, 5); channel 7's 10% joins 2.
    assert sweep.snap_by_share(0.7, 0.2)(channels, labels)[0, 0].tolist() == [2] * 6 + [5, 5, 5, 2, 3, 3]
    # keep 0: the model's whole split stays; the clear region 1 is unchanged either way.
    assert sweep.snap_by_share(0.7, 0.0)(channels, labels).tolist() == channels.tolist()


def test_a_run_prints_soft_against_snapped_and_restores_snap_regions(sweep, tmp_path, capsys):
    g = torch.Generator().manual_seed(1)
    for i in range(2):  # blocks of flat colour: XDoG outlines them
        blocks = torch.rand(3, 4, 4, generator=g).repeat_interleave(32, 1).repeat_interleave(32, 2)
        im.tensor_to_pil(blocks).save(tmp_path / f"{i}.png")
    real = flats.snap_regions
    sweep.main([str(tmp_path), "--gap", "2", "--counts", "0,1,30", "--share", "0.7", "--keep", "0.2"])
    assert flats.snap_regions is real
    out = capsys.readouterr().out
    assert "gap 2, share 0.7, keep 0.2: 2 images" in out
    rows = [line.split() for line in out.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == [0, 1, 30]
    soft, snapped, difference = (float(v) for v in rows[0][1:])
    assert soft == snapped and difference == 0.0  # no hint: the model paints its own regions either way
    for row in rows:
        assert abs(float(row[2]) - float(row[1]) - float(row[3])) <= 0.011
    assert "borders on or within 1 px of a line: snapped" in out and "ceilings (dB): median" in out
