"""The studio's routes: the page, its static assets and the JSON / PNG API (see the package docstring
and the README's Studio section). Every failure is answered as {"error": "..."} with a 4xx / 5xx
status; nothing a request sends is ever used as a file path."""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import logging
from pathlib import Path

from PIL import Image
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import refcolor
from refcolor.studio.models import Colorizers
from refcolor.studio.safety import ApiError, Guard, Limits, allowed_hosts, decode_image
from refcolor.studio.worker import InferenceQueue, QueueFull

STATIC = Path(__file__).parent / "static"
MODES = ("guide", "reference", "exemplar")
FIELDS = ("mode", "sketch", "reference", "image", "colors", "flat")  # /api/colorize's fields
LINE_REGION_FIELDS = ("sketch", "gap")
# The fill tool's gap closing, in pixels: wider openings are rarely gaps any more (two lines that
# far apart enclose an area of their own), and the bound keeps a request's work bounded.
MAX_GAP = 32
LINE_THRESHOLD = 0.8  # refcolor.ops.line_regions' default: a pixel darker than this is a line
log = logging.getLogger("refcolor.studio")

# Same-origin everything, no inline script, images from data:/blob: URLs the page makes itself.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _api(handler):
    """Route wrapper: expected failures as their JSON error; anything else as a 500 JSON error
    (logged with its traceback on the server, never sent to the client)."""

    @functools.wraps(handler)
    async def wrapped(request: Request):
        try:
            return await handler(request)
        except ApiError as err:
            return error_response(err.status, err.message)
        except QueueFull as err:
            return error_response(503, str(err), {"retry-after": "1"})
        except HTTPException as err:
            return error_response(err.status_code, str(err.detail))
        except Exception as err:
            log.exception("refcolor studio: %s %s failed", request.method, request.url.path)
            return error_response(500, f"internal error ({type(err).__name__}); see the server's log")

    return wrapped


# --------------------------------------------------------------------------- request parsing


class Upload:
    """A parsed multipart request: fields by name, file contents as bytes (bounded by the body cap)."""

    def __init__(self, fields: dict[str, str | bytes], filenames: dict[str, str]):
        self.fields = fields
        self.filenames = filenames  # only echoed back in JSON, never opened

    @classmethod
    async def read(cls, request: Request, allowed: tuple[str, ...] = FIELDS) -> Upload:
        """The multipart body's fields; a name outside `allowed` or given twice is a 400."""
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise ApiError(415, f"expected a multipart/form-data body, got {content_type or 'none'!r}")
        fields: dict[str, str | bytes] = {}
        filenames: dict[str, str] = {}
        # The multipart parser streams the body (files spill to temporary files beyond 1 MiB).
        async with request.form(max_files=len(allowed), max_fields=len(allowed)) as form:
            for name, value in form.multi_items():
                if name not in allowed:
                    raise ApiError(400, f"unknown field {name!r} (expected some of {', '.join(allowed)})")
                if name in fields:
                    raise ApiError(400, f"field {name!r} given twice")
                if isinstance(value, UploadFile):
                    fields[name] = await value.read()
                    filenames[name] = value.filename or ""
                else:
                    fields[name] = value
        return cls(fields, filenames)

    def image_bytes(self, name: str) -> bytes:
        value = self.fields.get(name)
        if value is None:
            raise ApiError(400, f"missing field {name!r} (an image file)")
        return value if isinstance(value, bytes) else value.encode("latin-1", "replace")

    def text(self, name: str, default: str | None = None) -> str:
        value = self.fields.get(name, default)
        if value is None:
            raise ApiError(400, f"missing field {name!r}")
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(400, f"field {name!r} is not UTF-8 text") from None
        return value


def parse_colors_field(text: str) -> list[tuple[int, int, int]]:
    from refcolor.inference.guided import parse_colors

    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ApiError(400, f"colors: not valid JSON ({err})") from None
    try:
        return parse_colors(data)
    except ValueError as err:
        raise ApiError(400, str(err)) from None


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # fast: the page, not an archive, reads it
    return buffer.getvalue()


def data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def label_image(labels) -> Image.Image:
    """Region numbers as an RGB PNG the page reads back pixel by pixel: number = red + 256 * green
    + 65536 * blue (exact: PNG is lossless). Blue is 0 below 65536 regions, so readers of the
    red + 256 * green form agree; the image limits (at most 2**24 pixels) keep every number below
    2**24."""
    import numpy as np

    array = labels.numpy()
    if array.size and (array.min() < 0 or array.max() >= 1 << 24):
        raise ValueError(f"label_image: region numbers must be in [0, 2**24), got {array.min()}..{array.max()}")
    rgb = np.zeros((*array.shape, 3), dtype=np.uint8)
    rgb[..., 0] = array % 256
    rgb[..., 1] = (array // 256) % 256
    rgb[..., 2] = array // 65536
    return Image.fromarray(rgb, "RGB")


FLAGS = {"true": True, "1": True, "on": True, "false": False, "0": False, "off": False}


def parse_flat_field(text: str | None) -> bool | None:
    """The `flat` form field: true / false (also 1 / 0, on / off; a checkbox sends "on"), or None
    when absent: the model's own default (refcolor.inference.flats)."""
    if text is None:
        return None
    flag = FLAGS.get(text.strip().lower())
    if flag is None:
        raise ApiError(400, f"flat: expected true or false (or 1 / 0), got {text[:40]!r}")
    return flag


def parse_gap_field(text: str) -> int:
    """The `gap` form field: an integer 0..MAX_GAP (pixels of line gap to close)."""
    stripped = text.strip()
    # The length check first: int() of thousands of digits is slow, and refused past 4300.
    if not (0 < len(stripped) <= 3 and stripped.isascii() and stripped.isdigit()) or int(stripped) > MAX_GAP:
        raise ApiError(400, f"gap: expected an integer from 0 to {MAX_GAP} (pixels), got {text[:40]!r}")
    return int(stripped)


def line_regions_answer(image: Image.Image, gap: int) -> dict:
    """The fill tool's regions of one decoded image: the line drawing (a colour image outlined as the
    guided tab does it: refcolor.data.sketch_preparation.prepare_sketch, extract="auto", at the
    image's own size), its line pixels (darker than LINE_THRESHOLD) and refcolor.ops.line_regions'
    labels, all at the image's full size."""
    import numpy as np

    from refcolor import images
    from refcolor.data.sketch_preparation import prepare_sketch
    from refcolor.ops import line_regions

    sketch = prepare_sketch(images.to_tensor(image, "sketch", op="studio").float())  # (1, 1, H, W)
    labels = line_regions(sketch, threshold=LINE_THRESHOLD, gap=gap)[0]
    lines = sketch[0, 0].numpy()
    gray = np.clip(np.rint(lines * 255), 0, 255).astype(np.uint8)
    return {
        "size": [image.width, image.height],
        "gap": gap,
        "threshold": LINE_THRESHOLD,
        "count": int(labels.max()) + 1,
        "labels": data_url(label_image(labels)),
        "line_art": data_url(Image.fromarray(gray, "L")),
        "line_mask": data_url(Image.fromarray(lines < LINE_THRESHOLD)),  # 1-bit: white = line pixel
    }


def _timing_headers(queued: float, ran: float) -> dict[str, str]:
    return {
        "x-refcolor-queue-seconds": f"{queued:.4f}",
        "x-refcolor-seconds": f"{ran:.4f}",
        "server-timing": f"queue;dur={queued * 1000:.1f}, inference;dur={ran * 1000:.1f}",
        "cache-control": "no-store",
    }


# --------------------------------------------------------------------------- the app


def create_app(
    colorizers: Colorizers,
    *,
    limits: Limits | None = None,
    hosts: frozenset[str] | None = None,
) -> Starlette:
    """The studio app serving `colorizers` (see refcolor.studio.models.load_colorizers)."""
    limits = limits or Limits()
    hosts = hosts if hosts is not None else allowed_hosts("127.0.0.1")
    queue = InferenceQueue(limits.max_queue)

    def model(kind: str, mode: str):
        found = colorizers.get(kind)
        if found is None:  # 503: this server does not serve that kind (another one may)
            raise ApiError(503, f"mode {mode!r}: {colorizers.reason(kind)}")
        return found

    async def index(request: Request):
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    @_api
    async def health(request: Request):
        return JSONResponse(
            {
                "status": "ok",
                "version": refcolor.__version__,
                "models": colorizers.describe(),
                "not_served": colorizers.not_served(),
                "queue": {"pending": queue.pending, "capacity": queue.capacity, "served": queue.served},
                "limits": limits.to_json(),
                "line_regions": {"max_gap": MAX_GAP, "threshold": LINE_THRESHOLD},
            }
        )

    @_api
    async def regions(request: Request):
        upload = await Upload.read(request)
        painter = model("guide", "guide")
        data = upload.image_bytes("sketch")
        name = upload.filenames.get("sketch")

        def job() -> dict:
            sketch = decode_image(data, "sketch", limits)
            found = painter.regions(sketch)
            answer = {"sketch": name or "upload", **found.to_json()}
            answer["working_size"] = list(found.working_size)
            answer["overlay"] = data_url(found.overlay())
            answer["labels"] = data_url(label_image(found.labels))
            return answer

        answer, queued, ran = await queue.run(job)
        answer["seconds"] = {"queue": round(queued, 4), "inference": round(ran, 4)}
        return JSONResponse(answer, headers=_timing_headers(queued, ran))

    @_api
    async def line_regions(request: Request):
        upload = await Upload.read(request, LINE_REGION_FIELDS)
        gap = parse_gap_field(upload.text("gap", "0"))
        data = upload.image_bytes("sketch")
        name = upload.filenames.get("sketch")

        def job() -> dict:
            return {"sketch": name or "upload", **line_regions_answer(decode_image(data, "sketch", limits), gap)}

        answer, queued, ran = await queue.run(job)
        answer["seconds"] = {"queue": round(queued, 4), "inference": round(ran, 4)}
        return JSONResponse(answer, headers=_timing_headers(queued, ran))

    @_api
    async def colorize(request: Request):
        upload = await Upload.read(request)
        mode = upload.text("mode")
        if mode not in MODES:
            raise ApiError(400, f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        # flat: one colour per area enclosed by the lines, the lines on top (refcolor.inference.flats).
        flat = parse_flat_field(upload.text("flat") if "flat" in upload.fields else None)
        if mode == "guide":
            painter = model("guide", mode)
            sketch_data = upload.image_bytes("sketch")
            colors = parse_colors_field(upload.text("colors", "[]"))

            def job() -> bytes:
                sketch = decode_image(sketch_data, "sketch", limits)
                try:
                    return png_bytes(painter.colorize(sketch, colors, flat=flat))
                except ValueError as err:  # more colours than regions
                    raise ApiError(400, str(err)) from None

        elif mode == "reference":
            colorizer = model("scft", mode)
            sketch_data, reference_data = upload.image_bytes("sketch"), upload.image_bytes("reference")

            def job() -> bytes:
                sketch = decode_image(sketch_data, "sketch", limits)
                reference = decode_image(reference_data, "reference", limits)
                return png_bytes(colorizer(sketch, reference, flat=flat))

        else:
            exemplar = model("exemplar", mode)
            image_data, reference_data = upload.image_bytes("image"), upload.image_bytes("reference")

            def job() -> bytes:
                image = decode_image(image_data, "image", limits)
                reference = decode_image(reference_data, "reference", limits)
                return png_bytes(exemplar(image, reference, flat=flat))

        body, queued, ran = await queue.run(job)
        return Response(body, media_type="image/png", headers=_timing_headers(queued, ran))

    async def not_found(request: Request, exc: Exception):
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return error_response(status, f"{request.method} {request.url.path}: {detail}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        queue.close()

    app = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/api/health", health, methods=["GET"]),
            Route("/api/regions", regions, methods=["POST"]),
            Route("/api/colorize", colorize, methods=["POST"]),
            Route("/api/line_regions", line_regions, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(Guard, hosts=hosts, max_body_bytes=limits.max_body_bytes, headers=SECURITY_HEADERS)],
        exception_handlers={HTTPException: not_found},
        lifespan=lifespan,
    )
    app.state.queue = queue
    app.state.colorizers = colorizers
    app.state.limits = limits
    return app
