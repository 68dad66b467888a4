"""The fixed openclipart held-out split (refcolor/assets/openclipart_heldout.txt) and how
scripts/prepare_training_folder.py applies it and drops byte-identical copies."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from refcolor.data import sample_images_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def script(monkeypatch):
    path = REPO / "scripts" / "prepare_training_folder.py"
    spec = importlib.util.spec_from_file_location("prepare_training_folder", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # worker processes unpickle its functions by name
    spec.loader.exec_module(module)
    return module


def test_the_heldout_list_is_fixed_small_and_disjoint_from_the_sample_set(script):
    text = script.HELDOUT_LIST.read_text(encoding="utf-8")
    header = [line for line in text.splitlines() if line.startswith("#")]
    listed = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert listed == sorted(set(listed)) and all(p.endswith(".png") and not p.startswith("/") for p in listed)
    total = int(header[1].split(" of ")[1].split()[0])
    assert 0.03 < len(listed) / total < 0.07  # ~5% of the package's files
    samples = script.sample_set_sources()
    assert len(samples) == 200 and not samples & set(listed)


def test_split_and_dedupe_on_a_stand_in_folder(script, tmp_path, monkeypatch, capsys):
    src = tmp_path / "png"
    pngs = sorted(sample_images_dir().glob("*.png"))
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    for path in pngs[:3]:
        shutil.copy(path, src / "a" / path.name)
    shutil.copy(pngs[0], src / "b" / "copy.png")  # byte-identical copy of a/<first>
    heldout = tmp_path / "heldout.txt"
    script.write_heldout_list([f"a/{pngs[1].name}"], 4, heldout)
    monkeypatch.setattr(script, "OPENCLIPART", str(src))
    monkeypatch.setattr(script, "HELDOUT_LIST", heldout)

    out = tmp_path / "out"
    assert (
        script.main(["openclipart", str(out), "--size", "32", "--jobs", "1", "--min-size", "0", "--no-colour-only"])
        == 0
    )
    summary = capsys.readouterr().out
    assert "1 duplicate (skipped)" in summary and "2 train written" in summary and "1 heldout written" in summary
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == sorted(
        [f"heldout/a/{pngs[1].name}", f"train/a/{pngs[0].name}", f"train/a/{pngs[2].name}"]
    )


def test_heldout_rule_is_by_content(script, tmp_path):
    src = tmp_path / "png"
    src.mkdir()
    files = []
    for i in range(200):
        path = src / f"{i:03d}.png"
        path.write_bytes(i.to_bytes(2, "big") * 10)
        files.append(path)
    twin = src / "twin.png"
    twin.write_bytes(files[0].read_bytes())
    chosen = script.heldout_rule(src, [*files, twin])
    assert 0 < len(chosen) < 30  # ~5% of 201
    assert ("000.png" in chosen) == ("twin.png" in chosen)  # copies fall on the same side
    assert chosen == script.heldout_rule(src, [twin, *files])  # order does not matter
