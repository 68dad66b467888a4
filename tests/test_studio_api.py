"""refcolor studio's HTTP API (refcolor.studio): answers on small deterministic models, and the
safety rules of a local server (Host / Origin, body cap, image limits, bounded queue), in process
(Starlette's TestClient) and on a real uvicorn server for the streaming and concurrency cases."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import threading
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette", reason="the studio extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the studio extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (test extra) is not installed")

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

with warnings.catch_warnings():  # Starlette >= 1.10 suggests httpx2 for its TestClient; httpx still works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

import refcolor  # noqa: E402
from refcolor.cli import main  # noqa: E402
from refcolor.studio.app import create_app  # noqa: E402
from refcolor.studio.models import Colorizers, load_colorizers, parse_checkpoint_option  # noqa: E402
from refcolor.studio.safety import ApiError, Limits, allowed_hosts, bind_warning, decode_image  # noqa: E402
from refcolor.studio.worker import InferenceQueue, QueueFull  # noqa: E402
from tests.studio_helpers import (  # noqa: E402
    colour_image,
    oracle_painter,
    png,
    running_server,
    save_tiny_models,
    sketch_image,
)

pytestmark = pytest.mark.usefixtures("one_thread")
BASE = "http://127.0.0.1:7860"


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory):
    return save_tiny_models(tmp_path_factory.mktemp("studio_models"))


@pytest.fixture(scope="module")
def colorizers(tiny_paths):
    """The scft and exemplar models loaded from their checkpoints, and the oracle GuidingPainter
    (exact colours)."""
    loaded = load_colorizers(tiny_paths)
    loaded.guide = oracle_painter()
    loaded.sources["guide"] = "oracle"
    return loaded


@pytest.fixture(scope="module")
def client(colorizers):
    with TestClient(create_app(colorizers), base_url=BASE) as c:
        yield c


def _image(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def _error(response, status: int, *words: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert isinstance(message, str) and "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message, message
    return message


def _close(a, b, tolerance: int = 2) -> bool:
    return all(abs(int(x) - int(y)) <= tolerance for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------- answers


def test_health_lists_the_models_queue_and_limits(client):
    data = client.get("/api/health").json()
    assert data["status"] == "ok" and data["version"] == refcolor.__version__
    assert data["models"]["guide"]["source"] == "oracle"
    assert data["models"]["scft"]["image_size"] == 32 and data["models"]["scft"]["source"].endswith("scft.safetensors")
    exemplar = data["models"]["exemplar"]
    assert exemplar["image_size"] == 32 and exemplar["source"].endswith("exemplar.safetensors")
    assert data["not_served"] == {}
    assert data["queue"]["capacity"] == Limits().max_queue and data["limits"] == Limits().to_json()


def test_page_and_assets_are_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and "refcolor studio" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    for asset in ("studio.js", "common.js", "fill.js", "studio.css"):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200 and len(response.text) > 1000
        assert "http://" not in response.text and "https://" not in response.text  # nothing from elsewhere
    assert "https://" not in page.text and "http://" not in page.text


def test_regions_answer_the_guide_json_with_overlay_and_labels(client, colorizers):
    sketch = sketch_image(90, 74)
    response = client.post("/api/regions", files={"sketch": ("cat.png", png(sketch), "image/png")})
    assert response.status_code == 200, response.text
    data = response.json()
    expected = colorizers.guide.regions(sketch)
    assert data["sketch"] == "cat.png"
    assert data["size"] == [90, 74] and data["regions"] == expected.to_json()["regions"]
    assert [r["rank"] for r in data["regions"]] == [1, 2, 3]
    assert data["working_size"] == list(expected.working_size)
    assert set(data["seconds"]) == {"queue", "inference"} and float(response.headers["x-refcolor-seconds"]) >= 0
    overlay = Image.open(io.BytesIO(base64.b64decode(data["overlay"].split(",", 1)[1])))
    assert overlay.size == (90, 74)
    labels = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["labels"].split(",", 1)[1]))).convert("RGB"))
    numbers = labels[..., 0].astype(np.int64) + 256 * labels[..., 1].astype(np.int64)
    assert np.array_equal(numbers, expected.labels.numpy())


@pytest.mark.parametrize("colors_field", ['["#e03c31", [40, 90, 200]]', '["#E03C31", "#285ac8"]'])
def test_guide_colorize_paints_each_region_its_colour_at_full_size(client, colors_field):
    sketch = sketch_image(150, 110)  # larger than the working size: the full-resolution path
    data = {"mode": "guide", "colors": colors_field}
    out = _image(client.post("/api/colorize", data=data, files={"sketch": ("s.png", png(sketch), "image/png")}))
    assert out.size == (150, 110) and out.mode == "RGB"
    assert _close(out.getpixel((120, 60)), (224, 60, 49))  # region 1: right half
    assert _close(out.getpixel((30, 95)), (40, 90, 200))  # region 2: bottom-left
    assert _close(out.getpixel((30, 30)), (128, 128, 128))  # region 3: no colour -> gray oracle


def _one_colour_per_line_region(picture: Image.Image, sketch: Image.Image) -> None:
    """Within every area the sketch's lines enclose (refcolor.ops.line_regions, gap 0) larger than
    50 px, away from the lines (2 px), the picture's colour varies by less than 2/255."""
    from scipy import ndimage

    rgb = np.asarray(picture.convert("RGB")).astype(np.int64)
    gray, labels = _expected_regions(sketch, 0)
    lines = gray < 0.8
    away = ~ndimage.binary_dilation(lines, iterations=2)
    checked = 0
    for region in range(labels.max() + 1):
        inside = (labels == region) & away
        if (labels == region).sum() > 50 and inside.any():
            spread = rgb[inside].max(axis=0) - rgb[inside].min(axis=0)
            assert spread.max() < 2, (region, spread)
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize("mode", ["guide", "reference", "exemplar"])
def test_flat_colours_on_every_mode(client, colorizers, mode):
    """flat=true: the model's own flat output (one colour per area enclosed by the lines, the
    lines on top), as the Python API gives it; false and absent: the soft output."""
    sketch = sketch_image(96, 80)
    reference = colour_image(50, 40, seed=4)
    if mode == "guide":
        fields = {"mode": "guide", "colors": '["#e03c31", "#285ac8"]'}
        files = {"sketch": ("s.png", png(sketch), "image/png")}

        def direct(flat):
            return colorizers.guide.colorize(sketch, ["#e03c31", "#285ac8"], flat=flat)

    else:
        name = "sketch" if mode == "reference" else "image"
        fields = {"mode": mode}
        files = {name: ("s.png", png(sketch), "image/png"), "reference": ("r.png", png(reference), "image/png")}
        model = colorizers.scft if mode == "reference" else colorizers.exemplar

        def direct(flat):
            return model(sketch.convert("RGB"), reference, flat=flat)

    flat = _image(client.post("/api/colorize", data={**fields, "flat": "true"}, files=files))
    soft = _image(client.post("/api/colorize", data={**fields, "flat": "false"}, files=files))
    default = _image(client.post("/api/colorize", data=fields, files=files))
    assert flat.size == soft.size == (96, 80)
    assert np.array_equal(np.asarray(flat), np.asarray(direct(True)))
    assert np.array_equal(np.asarray(soft), np.asarray(direct(False)))
    assert np.array_equal(np.asarray(default), np.asarray(soft))  # the server's models: soft by default
    _one_colour_per_line_region(flat, sketch)
    if mode == "guide":  # the oracle's quarters cross the ellipse: its soft output is not flat
        with pytest.raises(AssertionError):
            _one_colour_per_line_region(soft, sketch)


@pytest.mark.parametrize("value", ["yes", "", "2", "truee", "x" * 500])
def test_a_bad_flat_field_is_a_one_line_400(client, value):
    files = {"sketch": ("s.png", png(sketch_image()), "image/png")}
    message = _error(
        client.post("/api/colorize", data={"mode": "guide", "flat": value}, files=files),
        400,
        "flat: expected true or false (or 1 / 0)",
    )
    assert len(message) < 200


def test_regions_follow_the_drawing_with_a_snapping_painter(colorizers):
    """GuidedColorizer(snap=True), the default: the studio's numbered regions (and so the colours
    given for them) follow the lines: every area the lines enclose lies in one numbered region,
    though the model's own regions (the oracle's quarters) cut across the ellipse."""
    from refcolor.inference.guided import GuidedColorizer

    painter = GuidedColorizer(colorizers.guide.model, snap=True)
    sketch = sketch_image(90, 74)
    with TestClient(create_app(Colorizers(guide=painter)), base_url=BASE) as c:
        response = c.post("/api/regions", files={"sketch": ("s.png", png(sketch), "image/png")})
    assert response.status_code == 200, response.text
    numbers = _numbers(response.json()["labels"])
    _, areas = _expected_regions(sketch, painter.line_options["gap"])
    for area in range(areas.max() + 1):
        assert len(np.unique(numbers[areas == area])) == 1, area
    quarters = colorizers.guide.regions(sketch).labels.numpy()  # the unsnapped oracle (snap=False)
    assert any(len(np.unique(quarters[areas == area])) > 1 for area in range(areas.max() + 1))


def test_colours_may_come_as_a_file_in_the_guide_colors_format(client, tmp_path):
    from refcolor.inference.guided import read_colors

    path = tmp_path / "colors.json"
    path.write_text(json.dumps(["#00ff00"]))
    assert read_colors(path) == [(0, 255, 0)]
    files = {"sketch": ("s.png", png(sketch_image()), "image/png"), "colors": ("colors.json", path.read_bytes())}
    out = _image(client.post("/api/colorize", data={"mode": "guide"}, files=files))
    assert _close(out.getpixel((80, 40)), (0, 255, 0))


def test_reference_colorize_matches_the_colorizer(client, colorizers):
    sketch, reference = sketch_image(70, 45), colour_image(50, 40)
    files = {"sketch": ("s.png", png(sketch), "image/png"), "reference": ("r.jpg", png(reference, format="JPEG"))}
    out = _image(client.post("/api/colorize", data={"mode": "reference"}, files=files))
    assert out.size == (70, 45)
    reference_decoded = Image.open(io.BytesIO(png(reference, format="JPEG"))).convert("RGB")
    expected = colorizers.scft(sketch.convert("RGB"), reference_decoded)
    assert np.array_equal(np.asarray(out), np.asarray(expected))


def _gradient(width: int, height: int) -> Image.Image:
    """A mildly coloured gradient with 1-pixel stripes: its L* varies, and detail finer than any
    working size would be lost by a resize round trip (so the check sees full-resolution L*)."""
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    stripes = 24.0 * (np.arange(width) % 2)[None, :, None]
    rgb = 30 + 170 * (0.6 * x + 0.4 * y) + stripes + np.array([20.0, 0.0, -20.0]) * (y - 0.5)
    return Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8), "RGB")


def test_exemplar_colorize_keeps_the_images_size_and_luminance(client, colorizers):
    """mode=exemplar: the ExemplarColorizer's own answer, at the image's full size (larger than the
    model's 32 px working size), with the image's L* (the model only gives a*b*; refcolor.lab)."""
    from refcolor.lab import rgb_to_lab

    image, reference = _gradient(120, 84), colour_image(50, 40, seed=3)
    files = {"image": ("i.png", png(image), "image/png"), "reference": ("r.jpg", png(reference, format="JPEG"))}
    out = _image(client.post("/api/colorize", data={"mode": "exemplar"}, files=files))
    assert out.size == (120, 84) and out.mode == "RGB"
    reference_decoded = Image.open(io.BytesIO(png(reference, format="JPEG"))).convert("RGB")
    assert np.array_equal(np.asarray(out), np.asarray(colorizers.exemplar(image, reference_decoded)))

    def lightness(picture: Image.Image):
        import torch

        return rgb_to_lab(torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].double() / 255)[0, 0]

    difference = (lightness(out) - lightness(image)).abs()
    # Equal up to 8-bit rounding and the sRGB clipping of out-of-gamut colours (few pixels).
    assert difference.median() < 0.5 and difference.mean() < 1.0, (difference.median(), difference.mean())
    assert lightness(image).std() > 10  # the check above compared a varied L*, not a flat one


def test_exemplar_is_not_served_without_a_checkpoint_or_bundled_model(tiny_paths, tmp_path, monkeypatch):
    """guide and scft given, no exemplar checkpoint and no bundled exemplar model: the studio starts
    without it; health says why, mode=exemplar is a 503 naming --checkpoint exemplar=PATH."""
    monkeypatch.setenv("REFCOLOR_PRETRAINED_DIR", str(tmp_path))  # an empty folder: nothing bundled
    loaded = load_colorizers({"guide": tiny_paths["guide"], "scft": tiny_paths["scft"]})
    assert loaded.exemplar is None and set(loaded.sources) == {"guide", "scft"}
    assert "no bundled exemplar model" in loaded.missing["exemplar"]
    files = {"image": ("i.png", png(colour_image())), "reference": ("r.png", png(colour_image(seed=2)))}
    with TestClient(create_app(loaded), base_url=BASE) as c:
        message = _error(
            c.post("/api/colorize", data={"mode": "exemplar"}, files=files),
            503,
            "mode 'exemplar'",
            "no bundled exemplar model",
            "--checkpoint exemplar=PATH",
        )
        health = c.get("/api/health").json()
        assert health["models"]["exemplar"] is None and health["models"]["scft"]["image_size"] == 32
        assert health["not_served"] == {"exemplar": loaded.missing["exemplar"]}
        assert loaded.missing["exemplar"] in message


def test_unloaded_kinds_are_clear_errors(colorizers):
    with TestClient(create_app(Colorizers(guide=colorizers.guide)), base_url=BASE) as c:
        files = {"sketch": ("s.png", png(sketch_image())), "reference": ("r.png", png(colour_image()))}
        _error(c.post("/api/colorize", data={"mode": "reference"}, files=files), 503, "--checkpoint scft=PATH")
        files = {"image": ("i.png", png(colour_image())), "reference": ("r.png", png(colour_image()))}
        _error(c.post("/api/colorize", data={"mode": "exemplar"}, files=files), 503, "--checkpoint exemplar=PATH")
        health = c.get("/api/health").json()
        assert health["models"]["scft"] is None and set(health["not_served"]) == {"scft", "exemplar"}


# --------------------------------------------------------------------------- bad requests


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height, with a small compressed body (a bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])  # 8-bit gray
    body = zlib.compress(b"\x00" * 65536, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(buffer, format="GIF")
    return buffer.getvalue()


SKETCH = png(sketch_image())
BAD_REQUESTS = {
    "unknown mode": ({"mode": "paint"}, {"sketch": SKETCH}, 400, ["mode must be one of guide, reference, exemplar"]),
    "no mode": ({}, {"sketch": SKETCH}, 400, ["missing field 'mode'"]),
    "no sketch": ({"mode": "guide"}, {"colors": b"[]"}, 400, ["missing field 'sketch'"]),
    "no reference": ({"mode": "reference"}, {"sketch": SKETCH}, 400, ["missing field 'reference'"]),
    "exemplar, no image": ({"mode": "exemplar"}, {"reference": SKETCH}, 400, ["missing field 'image'"]),
    "exemplar, no reference": ({"mode": "exemplar"}, {"image": SKETCH}, 400, ["missing field 'reference'"]),
    "exemplar, sketch not image": (
        {"mode": "exemplar"},
        {"sketch": SKETCH, "reference": SKETCH},
        400,
        ["missing field 'image'"],
    ),
    "exemplar, corrupt image": (
        {"mode": "exemplar"},
        {"image": SKETCH[:200], "reference": SKETCH},
        400,
        ["image: corrupt or truncated PNG"],
    ),
    "exemplar, reference not an image": (
        {"mode": "exemplar"},
        {"image": SKETCH, "reference": b"hello"},
        415,
        ["reference: not a PNG, JPEG or WebP"],
    ),
    "exemplar, image bomb": (
        {"mode": "exemplar"},
        {"image": _bomb_png(8000, 8000), "reference": SKETCH},
        413,
        ["image: ", "8000x8000 exceeds the limits"],
    ),
    "unknown field": ({"mode": "guide", "path": "/etc/passwd"}, {"sketch": SKETCH}, 400, ["unknown field 'path'"]),
    "colors not json": ({"mode": "guide", "colors": "[#fff"}, {"sketch": SKETCH}, 400, ["colors: not valid JSON"]),
    "bad colour": ({"mode": "guide", "colors": '["#ggg"]'}, {"sketch": SKETCH}, 400, ["colors[0]", "not a hex"]),
    "too many colours": (
        {"mode": "guide", "colors": json.dumps(["#000"] * 4)},
        {"sketch": SKETCH},
        400,
        ["4 colours given", "only 3 regions"],
    ),
    "corrupt png": ({"mode": "guide"}, {"sketch": SKETCH[:200]}, 400, ["sketch: corrupt or truncated PNG"]),
    "not an image": ({"mode": "guide"}, {"sketch": b"hello, world"}, 415, ["sketch: not a PNG, JPEG or WebP"]),
    "gif": ({"mode": "guide"}, {"sketch": _gif()}, 415, ["not a PNG, JPEG or WebP"]),
    "empty file": ({"mode": "guide"}, {"sketch": b""}, 400, ["sketch: empty file"]),
    "bomb": ({"mode": "guide"}, {"sketch": _bomb_png(8000, 8000)}, 413, ["8000x8000 exceeds the limits"]),
    "huge bomb": ({"mode": "guide"}, {"sketch": _bomb_png(60000, 60000)}, 413, ["sketch: image too large", "exceeds"]),
    "long side": ({"mode": "guide"}, {"sketch": _bomb_png(9000, 2)}, 413, ["9000x2 exceeds"]),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_requests_get_one_line_json_errors(client, case):
    data, files, status, words = BAD_REQUESTS[case]
    response = client.post("/api/colorize", data=data, files={k: ("f.png", v) for k, v in files.items()})
    _error(response, status, *words)
    assert client.get("/api/health").status_code == 200  # still serving


MALFORMED_MULTIPART = {
    "no boundary": (b"abc", "multipart/form-data", "Missing boundary"),
    "wrong boundary": (b'--x\r\nContent-Disposition: form-data; name="mode"\r\n\r\nguide\r\n', "boundary=y", "Invalid"),
    "no part name": (b"--x\r\nContent-Disposition: form-data\r\n\r\nguide\r\n--x--\r\n", "boundary=x", "name"),
    "noise": (bytes(range(256)) * 20, "boundary=x", "Invalid multipart"),
    "field over 1 MiB": (
        b'--x\r\nContent-Disposition: form-data; name="colors"\r\n\r\n[' + b"1," * 600_000 + b"1]\r\n--x--\r\n",
        "boundary=x",
        "exceeded maximum size",
    ),
}


@pytest.mark.parametrize("case", MALFORMED_MULTIPART, ids=list(MALFORMED_MULTIPART))
def test_malformed_multipart_bodies_are_clean_400s(client, case):
    body, content_type, words = MALFORMED_MULTIPART[case]
    if not content_type.startswith("multipart"):
        content_type = f"multipart/form-data; {content_type}"
    for path in ("/api/regions", "/api/colorize"):
        _error(client.post(path, content=body, headers={"content-type": content_type}), 400, words)


def test_regions_errors_and_methods(client):
    _error(client.post("/api/regions", files={"sketch": ("s.png", b"junk")}), 415, "sketch")
    _error(client.post("/api/regions", content=b"{}", headers={"content-type": "application/json"}), 415, "multipart")
    _error(client.get("/api/colorize"), 405, "GET /api/colorize")
    _error(client.get("/api/nothing"), 404, "/api/nothing")
    _error(client.get("/static/../app.py"), 404)
    dup = [("sketch", ("a.png", SKETCH)), ("sketch", ("b.png", SKETCH))]
    _error(client.post("/api/regions", files=dup), 400, "given twice")


def test_host_and_origin_are_checked(client):
    files = {"sketch": ("s.png", SKETCH)}
    _error(client.get("/api/health", headers={"host": "evil.example:7860"}), 403, "Host header 'evil.example:7860'")
    _error(client.get("/", headers={"host": "rebind.attacker.test"}), 403)
    evil = {"origin": "http://evil.example"}
    _error(client.post("/api/regions", files=files, headers=evil), 403, "cross-origin request refused")
    _error(client.post("/api/regions", files=files, headers={"origin": "null"}), 403)
    _error(client.post("/api/regions", files=files, headers={"origin": "http://[::1"}), 403, "malformed Origin")
    other_port = {"origin": "http://127.0.0.1:9999"}
    _error(client.post("/api/regions", files=files, headers=other_port), 403)
    assert client.post("/api/regions", files=files, headers={"origin": BASE}).status_code == 200
    assert client.get("/api/health", headers={"host": "localhost:7860"}).status_code == 200


def test_body_cap_refuses_a_declared_length_before_reading(colorizers):
    limits = Limits(max_body_bytes=64 * 1024)
    with TestClient(create_app(colorizers, limits=limits), base_url=BASE) as c:
        big = png(colour_image(300, 300))  # ~270 KB of noise
        response = c.post("/api/colorize", data={"mode": "guide"}, files={"sketch": ("s.png", big)})
        _error(response, 413, "request body too large", f"limit is {64 * 1024} bytes")
        assert c.post("/api/regions", files={"sketch": ("s.png", SKETCH)}).status_code == 200


def test_body_cap_cuts_a_streamed_body_on_a_real_server(colorizers):
    """A chunked body (no Content-Length) is counted as it arrives and cut at the cap."""
    limits = Limits(max_body_bytes=64 * 1024)
    with running_server(create_app(colorizers, limits=limits)) as url:
        boundary = "studio-test-boundary"

        def body():
            yield f'--{boundary}\r\nContent-Disposition: form-data; name="sketch"; filename="s.png"\r\n\r\n'.encode()
            for _ in range(16):
                yield b"\x00" * 16384  # 256 KiB in all

        headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
        try:
            response = httpx.post(f"{url}/api/regions", content=body(), headers=headers, timeout=30)
            _error(response, 413, "request body too large: at least", "the limit is 65536 bytes")
        except httpx.TransportError:
            pass  # the server may close the connection while the client still sends: also a refusal
        assert httpx.get(f"{url}/api/health", timeout=30).status_code == 200


def test_decode_image_accepts_png_jpeg_webp_first_frame_only():
    limits = Limits()
    for fmt in ("PNG", "JPEG", "WEBP"):
        image = decode_image(png(colour_image(20, 12), format=fmt), "sketch", limits)
        assert image.size == (20, 12) and image.mode == "RGB"
    frames = [Image.new("RGB", (10, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    assert decode_image(buffer.getvalue(), "sketch", limits).getpixel((3, 3)) == (255, 0, 0)
    rgba = Image.new("RGBA", (6, 6), (0, 0, 0, 0))
    assert decode_image(png(rgba), "sketch", limits).getpixel((2, 2)) == (255, 255, 255)  # on white
    with pytest.raises(ApiError, match="exceeds the limits") as err:
        decode_image(png(colour_image(30, 30)), "sketch", Limits(max_pixels=899))
    assert err.value.status == 413


def test_safety_helpers():
    assert bind_warning("127.0.0.1") is None and bind_warning("localhost") is None and bind_warning("::1") is None
    assert "not only on this machine" in bind_warning("0.0.0.0")
    assert allowed_hosts("0.0.0.0") == frozenset({"127.0.0.1", "localhost", "::1"})
    assert "studio.lan" in allowed_hosts("192.168.1.5", ("Studio.lan",))
    assert "192.168.1.5" in allowed_hosts("192.168.1.5")
    with pytest.raises(ValueError, match="max_queue must be a positive int, got 0"):
        Limits(max_queue=0)


# --------------------------------------------------------------------------- line regions (the Fill tab)


def _broken_box(width: int = 80, height: int = 60, gap: int = 3) -> Image.Image:
    """A white picture with a 1-px black rectangle whose right side has a `gap`-pixel opening: one
    area with no gap closing, two (inside, outside) once gaps of `gap` pixels are closed."""
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle([15, 12, 60, 45], outline=0)
    middle = (12 + 45) // 2
    draw.line([60, middle - gap // 2, 60, middle - gap // 2 + gap - 1], fill=255)
    return image


def _decode(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def _numbers(url: str) -> np.ndarray:
    rgb = _decode(url).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def _expected_regions(image: Image.Image, gap: int):
    """The fill tool's contract: the sketch the guided tab would see (a colour image outlined),
    labelled by refcolor.ops.line_regions at threshold 0.8."""
    import torch

    from refcolor.data.sketch_preparation import prepare_sketch
    from refcolor.ops import line_regions

    rgb = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    sketch = prepare_sketch(rgb)
    return sketch[0, 0].numpy(), line_regions(sketch, threshold=0.8, gap=gap)[0].numpy()


@pytest.mark.parametrize("gap", [0, 4])
def test_line_regions_answer_the_labels_lines_and_line_art_at_full_size(client, gap):
    image = _broken_box()
    files = {"sketch": ("box.png", png(image), "image/png")}
    response = client.post("/api/line_regions", data={"gap": str(gap)}, files=files)
    assert response.status_code == 200, response.text
    data = response.json()
    sketch, labels = _expected_regions(image, gap)
    assert data["sketch"] == "box.png" and data["size"] == [80, 60] and data["gap"] == gap
    assert data["threshold"] == 0.8
    assert data["count"] == (1 if gap == 0 else 2)  # the opening leaks at gap 0, is closed at 4
    assert data["count"] == labels.max() + 1
    assert np.array_equal(_numbers(data["labels"]), labels)
    assert np.array_equal(_decode(data["line_mask"]).astype(bool), sketch < 0.8)
    assert np.array_equal(_decode(data["line_art"]), np.rint(sketch * 255).astype(np.uint8))
    assert set(data["seconds"]) == {"queue", "inference"} and float(response.headers["x-refcolor-seconds"]) >= 0


def test_line_regions_outline_a_colour_image_as_the_guided_tab_does(client):
    image = colour_image(64, 48, seed=5)
    response = client.post("/api/line_regions", files={"sketch": ("photo.jpg", png(image), "image/png")})
    assert response.status_code == 200, response.text
    data = response.json()
    sketch, labels = _expected_regions(image, 0)
    assert data["gap"] == 0 and np.array_equal(_numbers(data["labels"]), labels)
    # Outlined (XDoG), not thresholded: the random colours' own luminance would give other lines.
    luminance = np.asarray(image.convert("L")) / 255
    assert not np.array_equal(sketch < 0.8, luminance < 0.8)
    assert np.array_equal(_decode(data["line_mask"]).astype(bool), sketch < 0.8)


def test_line_regions_need_no_model_and_run_through_the_queue():
    with TestClient(create_app(Colorizers()), base_url=BASE) as c:
        health = c.get("/api/health").json()
        assert health["line_regions"] == {"max_gap": 32, "threshold": 0.8}
        served = health["queue"]["served"]
        for gap in ("8", "32"):  # 32: the largest allowed
            response = c.post("/api/line_regions", data={"gap": gap}, files={"sketch": ("s.png", png(_broken_box()))})
            assert response.status_code == 200 and response.json()["gap"] == int(gap)
        assert c.get("/api/health").json()["queue"]["served"] == served + 2


def test_label_image_carries_numbers_beyond_65535_in_blue():
    import torch

    from refcolor.studio.app import label_image

    numbers = torch.tensor([[0, 255, 256, 65535], [65536, 70000, 1 << 23, (1 << 24) - 1]])
    rgb = np.asarray(label_image(numbers)).astype(np.int64)
    assert np.array_equal(rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2], numbers.numpy())
    assert (rgb[0, :, 2] == 0).all()  # below 65536: the guided tab's red + 256 * green form
    with pytest.raises(ValueError, match=r"label_image: region numbers must be in \[0, 2\*\*24\), got 0..16777216"):
        label_image(torch.tensor([[0, 1 << 24]]))


BOX = png(_broken_box())
BAD_LINE_REGION_REQUESTS = {
    "negative gap": ({"gap": "-1"}, {"sketch": BOX}, 400, ["gap: expected an integer from 0 to 32", "'-1'"]),
    "gap too large": ({"gap": "33"}, {"sketch": BOX}, 400, ["gap: expected an integer from 0 to 32", "'33'"]),
    "fractional gap": ({"gap": "1.5"}, {"sketch": BOX}, 400, ["gap: expected an integer", "'1.5'"]),
    "gap not a number": ({"gap": "wide"}, {"sketch": BOX}, 400, ["gap: expected an integer", "'wide'"]),
    "empty gap": ({"gap": ""}, {"sketch": BOX}, 400, ["gap: expected an integer", "''"]),
    "unicode digits": ({"gap": "\u0663"}, {"sketch": BOX}, 400, ["gap: expected an integer"]),
    "huge gap": ({"gap": "9" * 5000}, {"sketch": BOX}, 400, ["gap: expected an integer from 0 to 32"]),
    "no sketch": ({}, {"gap": b"2"}, 400, ["missing field 'sketch'"]),  # a file part: still multipart
    "colorize fields": ({"mode": "guide"}, {"sketch": BOX}, 400, ["unknown field 'mode'", "sketch, gap"]),
    "not an image": ({}, {"sketch": b"hello, world"}, 415, ["sketch: not a PNG, JPEG or WebP"]),
    "corrupt": ({}, {"sketch": SKETCH[:200]}, 400, ["sketch: corrupt or truncated PNG"]),
    "bomb": ({}, {"sketch": _bomb_png(8000, 8000)}, 413, ["sketch: ", "8000x8000 exceeds the limits"]),
}


@pytest.mark.parametrize("case", BAD_LINE_REGION_REQUESTS, ids=list(BAD_LINE_REGION_REQUESTS))
def test_bad_line_region_requests_get_one_line_json_errors(client, case):
    data, files, status, words = BAD_LINE_REGION_REQUESTS[case]
    response = client.post("/api/line_regions", data=data, files={k: ("f.png", v) for k, v in files.items()})
    message = _error(response, status, *words)
    assert len(message) < 300  # the echoed value is cut short
    assert client.get("/api/health").status_code == 200


def test_line_regions_keep_the_servers_limits(colorizers):
    limits = Limits(max_body_bytes=64 * 1024)
    with TestClient(create_app(colorizers, limits=limits), base_url=BASE) as c:
        big = png(colour_image(300, 300))  # ~270 KB of noise
        _error(c.post("/api/line_regions", files={"sketch": ("s.png", big)}), 413, "request body too large")
        files = {"sketch": ("s.png", BOX)}
        _error(c.post("/api/line_regions", files=files, headers={"origin": "http://evil.example"}), 403, "cross-origin")
        _error(c.get("/api/line_regions"), 405, "GET /api/line_regions")
        assert c.post("/api/line_regions", files=files).status_code == 200


# --------------------------------------------------------------------------- load and queue


def test_a_full_queue_refuses_at_once():
    import asyncio

    release = threading.Event()

    async def scenario():
        queue = InferenceQueue(1)
        first = asyncio.ensure_future(queue.run(lambda: release.wait(10) and "done"))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull, match=r"limit 1"):
            await queue.run(lambda: "never")
        release.set()
        result, waited, ran = await first
        assert result == "done" and waited >= 0 and ran >= 0
        assert queue.pending == 0 and (await queue.run(lambda: 7))[0] == 7
        queue.close()

    asyncio.run(scenario())


def test_32_concurrent_clients_get_their_own_answer_or_a_clean_503(colorizers):
    """Each client sends its own colour; every 200 must carry that colour, every refusal must be a
    JSON 503, and the server must answer /api/health throughout and after."""
    limits = Limits(max_queue=4)
    with running_server(create_app(colorizers, limits=limits)) as url:
        sketch = png(sketch_image(64, 48))

        def one(i: int):
            colour = ((37 * i) % 256, (91 * i + 40) % 256, (53 * i + 7) % 256)
            data = {"mode": "guide", "colors": json.dumps([list(colour)])}
            response = httpx.post(f"{url}/api/colorize", data=data, files={"sketch": ("s.png", sketch)}, timeout=60)
            return colour, response

        with ThreadPoolExecutor(32) as pool:
            futures = [pool.submit(one, i) for i in range(32)]
            assert httpx.get(f"{url}/api/health", timeout=10).status_code == 200
            results = [f.result() for f in futures]
        ok = 0
        for colour, response in results:
            if response.status_code == 503:
                _error(response, 503, "server is busy")
                assert response.headers["retry-after"] == "1"
                continue
            out = _image(response)
            assert out.size == (64, 48) and _close(out.getpixel((56, 20)), colour)
            ok += 1
        assert ok >= limits.max_queue  # at least a queue's worth got through
        assert httpx.get(f"{url}/api/health", timeout=10).json()["queue"]["pending"] == 0


# --------------------------------------------------------------------------- loading and the CLI


def test_load_colorizers_from_checkpoints(tiny_paths):
    loaded = load_colorizers(tiny_paths)
    assert isinstance(loaded.guide, refcolor.GuidedColorizer) and isinstance(loaded.scft, refcolor.Colorizer)
    assert isinstance(loaded.exemplar, refcolor.ExemplarColorizer)
    assert loaded.sources == {kind: str(path) for kind, path in tiny_paths.items()} and loaded.missing == {}
    assert loaded.describe()["guide"]["image_size"] == 32 and loaded.describe()["exemplar"]["image_size"] == 32
    with pytest.raises(ValueError, match=r"scft.safetensors holds a 'scft' model, expected 'exemplar'"):
        load_colorizers({**tiny_paths, "exemplar": tiny_paths["scft"]})


def test_load_colorizers_without_a_checkpoint_or_bundled_model_names_the_option(tiny_paths, monkeypatch):
    import refcolor.inference.colorizer as colorizer_module

    if hasattr(colorizer_module.Colorizer, "pretrained"):
        monkeypatch.delattr(colorizer_module.Colorizer, "pretrained")
    with pytest.raises(ValueError, match=r"no bundled scft model in this installation: give --checkpoint scft=PATH"):
        load_colorizers({"guide": tiny_paths["guide"]})
    with pytest.raises(FileNotFoundError, match="--checkpoint guide=nowhere: no such file"):
        load_colorizers({"guide": "nowhere", "scft": tiny_paths["scft"]})


def test_load_colorizers_uses_the_bundled_models_when_present(tiny_paths, tmp_path, monkeypatch):
    """Without --checkpoint: Colorizer.pretrained() / GuidedColorizer.pretrained(), here pointed at a
    folder holding the tiny models (REFCOLOR_PRETRAINED_DIR, refcolor.models.bundled's seam)."""
    if not hasattr(refcolor.Colorizer, "pretrained"):
        pytest.skip("this refcolor has no bundled-model API yet")
    for kind, path in tiny_paths.items():
        (tmp_path / f"{kind}.safetensors").write_bytes(path.read_bytes())
    monkeypatch.setenv("REFCOLOR_PRETRAINED_DIR", str(tmp_path))
    loaded = load_colorizers({"guide": tiny_paths["guide"]})
    assert loaded.sources == {"guide": str(tiny_paths["guide"]), "scft": "bundled", "exemplar": "bundled"}
    assert isinstance(loaded.scft, refcolor.Colorizer) and isinstance(loaded.exemplar, refcolor.ExemplarColorizer)
    assert load_colorizers({}).sources == {"guide": "bundled", "scft": "bundled", "exemplar": "bundled"}
    (tmp_path / "exemplar.safetensors").unlink()  # optional: not served, no error
    loaded = load_colorizers({})
    assert loaded.exemplar is None and set(loaded.missing) == {"exemplar"}
    assert load_colorizers({"exemplar": tiny_paths["exemplar"]}).sources["exemplar"] == str(tiny_paths["exemplar"])
    (tmp_path / "scft.safetensors").unlink()  # required: a one-line error
    with pytest.raises(
        FileNotFoundError, match=r"no bundled 'scft' model: .*\(refcolor serve: --checkpoint scft=PATH\)"
    ):
        load_colorizers({})


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("scft", "expected KIND=PATH"),
        ("=run", "KIND must be one of guide, scft, exemplar, got ''"),
        ("exemplar=", "expected KIND=PATH with KIND one of guide, scft, exemplar"),
        ("paint=run", "KIND must be one of guide, scft, exemplar, got 'paint'"),
    ],
)
def test_checkpoint_option_errors(text, words, capsys):
    with pytest.raises(ValueError, match=words):
        parse_checkpoint_option(text)
    assert main(["serve", "--checkpoint", text]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("refcolor serve: error:") and words in err and "\n" not in err


def test_serve_is_a_listed_command(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "--checkpoint KIND=PATH" in out and "--host" in out
    assert parse_checkpoint_option("guide=runs/g") == ("guide", __import__("pathlib").Path("runs/g"))
    assert parse_checkpoint_option("Exemplar=runs/e") == ("exemplar", __import__("pathlib").Path("runs/e"))


def test_refcolor_serve_starts_and_answers(tiny_paths, tmp_path):
    """The command in a fresh interpreter: `import refcolor` there has not imported the studio's
    extra (starlette, uvicorn); then `refcolor serve` loads the guide and scft checkpoints, starts
    without an exemplar model (none given, none bundled: it says why in one line), prints the URL
    and serves on loopback. (One subprocess for all: starting torch is the slow part.)"""
    import os
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["serve", "--port", str(port)]
    argv += ["--checkpoint", f"guide={tiny_paths['guide']}", "--checkpoint", f"scft={tiny_paths['scft']}"]
    code = (
        "import sys, refcolor; refcolor.GuidedColorizer; refcolor.Colorizer\n"
        "assert not {'starlette', 'uvicorn'} & set(sys.modules), 'import refcolor imported the studio extra'\n"
        f"from refcolor.cli import main; sys.exit(main({argv!r}))"
    )
    command = [sys.executable, "-c", code]
    env = {**os.environ, "REFCOLOR_PRETRAINED_DIR": str(tmp_path)}  # an empty folder: nothing bundled
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, server.communicate()
                time.sleep(0.2)
        assert health.json()["models"]["guide"]["source"] == str(tiny_paths["guide"])
        assert health.json()["models"]["exemplar"] is None and set(health.json()["not_served"]) == {"exemplar"}
        refused = httpx.get(f"http://127.0.0.1:{port}/", headers={"host": "attacker.test"}, timeout=10)
        assert refused.status_code == 403
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert f"open http://127.0.0.1:{port}/" in out and "warning" not in err
    [line] = [line for line in out.splitlines() if "exemplar" in line]
    assert line.startswith("refcolor serve: exemplar not served: no bundled exemplar model"), line
    assert "--checkpoint exemplar=PATH" in line
