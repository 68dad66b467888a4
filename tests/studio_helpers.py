"""Small deterministic (untrained) models and a real uvicorn server for the studio tests (refcolor.studio)."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time

import torch
from PIL import Image, ImageDraw

from refcolor.inference.guided import GuidedColorizer
from refcolor.models import (
    ExemplarColorizer,
    ExemplarColorizerConfig,
    GuidingPainter,
    GuidingPainterConfig,
    SCFTColorizer,
    SCFTColorizerConfig,
)
from refcolor.models.registry import describe
from refcolor.models.weights import save_weights
from tests.helpers import FixedRegions, HintColors


def oracle_painter() -> GuidedColorizer:
    """A GuidedColorizer whose output is exactly the chosen colours: region 1 = right half,
    2 = bottom-left quarter, 3 = top-left quarter; regions without a colour come out gray (128).
    Unsnapped: these regions by position are what the studio's tests check (snapping to the
    sketch's lines has tests of its own, tests/test_flats.py)."""
    torch.manual_seed(0)
    model = GuidingPainter(GuidingPainterConfig.preset("small", image_size=32))
    model.segmentation = FixedRegions(model.num_segments)
    model.colorization = HintColors()
    return GuidedColorizer(model, snap=False)


# A tiny exemplar model (as tests/test_exemplar_colorizer.py builds it): 32 px working size.
EXEMPLAR_CONFIG = ExemplarColorizerConfig(image_size=32, decoder_widths=(8, 8, 8, 8), unet_widths=(8, 16))


def save_tiny_models(folder, kinds=("scft", "guide", "exemplar")) -> dict[str, object]:
    """Random (untrained) tiny models of `kinds` saved as `folder`/<kind>.safetensors -> {kind: path}."""
    torch.manual_seed(0)
    configs = {
        "scft": (SCFTColorizer, SCFTColorizerConfig.preset("small", image_size=32)),
        "guide": (GuidingPainter, GuidingPainterConfig.preset("small", image_size=32)),
        "exemplar": (ExemplarColorizer, EXEMPLAR_CONFIG),
    }
    paths = {}
    for kind in kinds:
        cls, config = configs[kind]
        paths[kind] = folder / f"{kind}.safetensors"
        save_weights(paths[kind], cls(config), describe(kind, config))
    return paths


def sketch_image(width: int = 90, height: int = 74, *, seed: int = 0) -> Image.Image:
    """A white line drawing with an ellipse and a seed-dependent bar (distinct sketches per seed)."""
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    draw.ellipse([6, 6, width - 8, height - 7], outline=0, width=2)
    x = 10 + seed % max(1, width - 20)
    draw.line([x, 2, x, height // 3], fill=0, width=1)
    return image


def colour_image(width: int = 50, height: int = 40, *, seed: int = 1) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    array = (torch.rand(height, width, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(array, "RGB")


def png(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kwargs.pop("format", "PNG"), **kwargs)
    return buffer.getvalue()


@contextlib.contextmanager
def running_server(app):
    """Serve `app` with uvicorn on a free loopback port in a thread -> its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", limit_concurrency=256)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
