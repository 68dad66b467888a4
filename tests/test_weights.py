"""Inference weights: safetensors with the config in the metadata, loaded without any unpickling."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from torch import nn

from refcolor.train import load_weights, read_config, save_weights


class TinyNet(nn.Module):
    def __init__(self, width: int, tied: bool = False):
        super().__init__()
        self.embed = nn.Embedding(10, width)
        self.head = nn.Linear(width, 10, bias=False)
        if tied:
            self.head.weight = self.embed.weight  # tied input/output embedding
        self.register_buffer("scale", torch.full((width,), 2.0))


def build_model(config: dict) -> nn.Module:
    return TinyNet(config["width"], config.get("tied", False))


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_rebuilds_model_from_config(tmp_path):
    config = {"width": 6, "preset": "small", "sizes": [64, 64]}
    model = build_model(config)
    path = tmp_path / "w.safetensors"
    save_weights(path, model, config, metadata={"trained_steps": "1200"})
    assert read_config(path) == config
    loaded, loaded_config = load_weights(path, build_model)
    assert loaded_config == config and not loaded.training
    assert_same_state(model, loaded)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]  # no temporary file left


def test_file_is_safetensors_and_loading_never_unpickles(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    save_weights(path, build_model({"width": 4}), {"width": 4})
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")  # safetensors: u64 header size, then JSON
    header = json.loads(raw[8 : 8 + header_len])
    assert json.loads(header["__metadata__"]["refcolor_config"]) == {"width": 4}
    assert header["__metadata__"]["refcolor_format"] == "1"

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    model, _ = load_weights(path, build_model)
    assert torch.equal(model.scale, torch.full((4,), 2.0))


def test_tied_weights_stay_tied(tmp_path):
    config = {"width": 5, "tied": True}
    model = build_model(config)
    path = tmp_path / "tied.safetensors"
    save_weights(path, model, config)
    loaded, _ = load_weights(path, build_model)
    assert loaded.head.weight is loaded.embed.weight
    assert torch.equal(loaded.embed.weight, model.embed.weight)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_weights(tmp_path / "nope.safetensors", build_model)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "pickle"])
def test_corrupt_or_foreign_file(tmp_path, damage):
    path = tmp_path / "w.safetensors"
    save_weights(path, build_model({"width": 64}), {"width": 64})
    if damage == "garbage":
        path.write_bytes(b"this is not a weights file at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    else:
        torch.save(build_model({"width": 64}).state_dict(), path)
    with pytest.raises(ValueError, match="not a valid safetensors weights file") as err:
        load_weights(path, build_model)
    assert str(path) in str(err.value)


def test_file_without_refcolor_config(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="no refcolor config"):
        read_config(path)


def test_key_mismatch_is_one_line(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, build_model({"width": 4}), {"width": 4})

    class Renamed(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.proj = nn.Linear(4, 10, bias=False)
            self.register_buffer("scale", torch.ones(4))

    with pytest.raises(ValueError) as err:
        load_weights(path, lambda config: Renamed())
    message = str(err.value)
    assert "\n" not in message
    assert "missing keys ['proj.weight']" in message and "unexpected keys ['head.weight']" in message
    model, _ = load_weights(path, lambda config: Renamed(), strict=False)  # lenient: loads what fits
    assert torch.equal(model.scale, torch.full((4,), 2.0))


def test_shape_mismatch_is_clear(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, build_model({"width": 4}), {"width": 4})
    with pytest.raises(ValueError, match="do not fit the model built from their config: size mismatch"):
        load_weights(path, lambda config: TinyNet(5))


def test_config_and_metadata_validation(tmp_path):
    model = build_model({"width": 4})
    with pytest.raises(TypeError, match="JSON-serializable"):
        save_weights(tmp_path / "w.safetensors", model, {"width": object()})
    with pytest.raises(ValueError, match="reserved"):
        save_weights(tmp_path / "w.safetensors", model, {"width": 4}, metadata={"refcolor_config": "{}"})
    assert not list(tmp_path.iterdir())
