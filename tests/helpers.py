"""Input makers and error measures shared by the op tests, and the loader of scripts under test."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """scripts/NAME.py imported as a module (the scripts are no package), for tests to call."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected| (0 when both are 0)."""
    actual, expected = actual.double(), expected.double()
    scale = expected.abs().max().item()
    err = (actual - expected).abs().max().item()
    return err if scale == 0 else err / scale


def make_segments(B, Nc, H, W, kind, *, dtype=torch.float32, device="cpu", generator=None) -> torch.Tensor:
    """Segments of `kind`: "onehot" (label map, some labels unused so some segments are empty) or
    "soft" (softmax over segments, with one segment scaled towards empty: its count is < 1)."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    if kind == "onehot":
        labels = torch.randint(0, max(1, Nc - 1), (B, H, W), generator=g)  # label Nc-1 never used
        seg = torch.nn.functional.one_hot(labels, Nc).permute(0, 3, 1, 2).to(torch.float64)
    elif kind == "soft":
        seg = torch.softmax(2 * torch.randn(B, Nc, H, W, generator=g, dtype=torch.float64), dim=1)
        seg[:, -1] *= 0.5 / seg[:, -1].sum(dim=(1, 2), keepdim=True)  # count 0.5: treated as empty
    else:
        raise ValueError(kind)
    return seg.to(dtype=dtype, device=device).contiguous()


def make_image(B, C, H, W, *, dtype=torch.float32, device="cpu", generator=None) -> torch.Tensor:
    g = generator if generator is not None else torch.Generator().manual_seed(1)
    return torch.rand(B, C, H, W, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


def random_tps_points(B, K, *, jitter=0.15, dtype=torch.float64, generator=None):
    """dst: K random control points in [-0.9, 0.9]^2 (kept apart from each other); src = dst + jitter noise."""
    g = generator if generator is not None else torch.Generator().manual_seed(2)
    dst = torch.rand(B, K, 2, generator=g, dtype=torch.float64) * 1.8 - 0.9
    src = dst + jitter * (torch.rand(B, K, 2, generator=g, dtype=torch.float64) * 2 - 1)
    return src.to(dtype), dst.to(dtype)


def smooth_image(B, C, H, W, *, dtype=torch.float32, generator=None):
    """Low-frequency random image: kernels and the reference evaluate the spline in float32 in a
    different order, and a smooth image keeps that rounding from being amplified by sharp edges."""
    g = generator if generator is not None else torch.Generator().manual_seed(3)
    coarse = torch.rand(B, C, 5, 5, generator=g, dtype=torch.float64)
    return torch.nn.functional.interpolate(coarse, size=(H, W), mode="bicubic", align_corners=True).to(dtype)


# Compiled/Triton backends worth testing on each device (the reference is the ground truth).
KERNEL_BACKENDS = {"cpu": ("cpp", "triton"), "cuda": ("cuda", "triton")}


def usable(backend: str, device: str) -> bool:
    import refcolor

    return backend in refcolor.available_backends(device)


def kernel_backend_params():
    """pytest params (backend, device) for every kernel backend of every present device."""
    import pytest

    return [pytest.param(b, d, id=f"{b}-{d}") for d in devices() for b in KERNEL_BACKENDS[d]]


# Deterministic GuidingPainter parts for the guided colorizer and studio tests. FixedRegions paints
# these model channels: right half, bottom-left quarter, top-left quarter, so the regions
# (numbered in channel order) are 1 = right half, 2 = bottom-left, 3 = top-left.
RIGHT, BOTTOM_LEFT, TOP_LEFT = 2, 5, 7


class FixedRegions(torch.nn.Module):
    """A segmentation net whose regions depend on position only (see the channel constants)."""

    def __init__(self, num_segments: int):
        super().__init__()
        self.num_segments = num_segments

    def forward(self, sketch):
        B, _, H, W = sketch.shape
        labels = torch.full((B, H, W), RIGHT, dtype=torch.int64)
        labels[:, :, : W // 2] = BOTTOM_LEFT
        labels[:, : H // 2, : W // 2] = TOP_LEFT
        return 10.0 * F.one_hot(labels, self.num_segments).permute(0, 3, 1, 2).float()


class HintColors(torch.nn.Module):
    """An 'oracle' colorization net: outputs the hint colours (gray where a region has no hint)."""

    def forward(self, sketch, hints, segments):
        return hints[:, :3]


# Relative error bounds vs float64 for the 16-bit tests of the kernels without tl.dot (float32
# sums): a few units of each format's rounding (float16 eps 9.8e-4, bfloat16 eps 7.8e-3), checked
# on top of flash-attention's rule.
HALF_TOL = {torch.float16: 4e-3, torch.bfloat16: 3e-2}


def half_precision_params():
    """(backend, device) pairs for those 16-bit tests: Triton runs on the CPU under the
    interpreter, which handles float16 and bfloat16 when a kernel uses no tl.dot; the CUDA kernels
    need a GPU."""
    params = [pytest.param("triton", "cpu", id="triton-cpu")]
    if torch.cuda.is_available():
        params += [pytest.param(b, "cuda", id=f"{b}-cuda") for b in ("cuda", "triton")]
    return params
