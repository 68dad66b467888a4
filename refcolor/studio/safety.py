"""What keeps a local server local and bounded: Host / Origin checks (no DNS rebinding, no
cross-site posts), a request body cap enforced while the body streams in, and image decoding that
accepts only PNG / JPEG / WebP and checks the declared size before any pixel is decoded."""

from __future__ import annotations

import io
import ipaddress
import json
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

from PIL import Image

from refcolor.data.image_folder import to_rgb

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
MiB = 1 << 20


class ApiError(Exception):
    """A failure answered as JSON {"error": message} with `status`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """max_body_bytes: whole request body (all images together); max_pixels / max_side: per image,
    checked on the header's declared size before decoding; max_queue: inference jobs waiting or
    running before new ones are refused with 503."""

    max_body_bytes: int = 48 * MiB
    max_pixels: int = 4096 * 4096
    max_side: int = 8192
    max_queue: int = 8

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_pixels", "max_side", "max_queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits: {name} must be a positive int, got {value!r}")

    def to_json(self) -> dict:
        return {
            "max_body_bytes": self.max_body_bytes,
            "max_pixels": self.max_pixels,
            "max_side": self.max_side,
            "max_queue": self.max_queue,
        }


# --------------------------------------------------------------------------- hosts and origins


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_warning(host: str) -> str | None:
    """The warning to print when the server listens beyond this machine, else None."""
    if is_loopback(host):
        return None
    return (
        f"refcolor serve: warning: listening on {host}, not only on this machine: anyone who can reach this "
        "address can use the models (there is no authentication); bind 127.0.0.1 unless you need that "
        "(other machines must use this address or a name given with --allow-host)"
    )


def allowed_hosts(bind_host: str, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """Host names (no port) a request's Host header may carry: the loopback names, the bound address
    unless it is a wildcard (0.0.0.0 / ::), and the names given with --allow-host."""
    names = set(LOOPBACK_NAMES) | {name.lower() for name in extra}
    if bind_host not in ("0.0.0.0", "::", ""):
        names.add(bind_host.lower().strip("[]"))
    return frozenset(names)


def _host_name(netloc: str) -> str:
    """'Example.org:7860' -> 'example.org'; '[::1]:80' -> '::1'."""
    try:
        return (urlsplit(f"//{netloc}").hostname or "").lower()
    except ValueError:
        return ""


def check_host_and_origin(headers: dict[str, str], hosts: frozenset[str]) -> None:
    """Host must name this server (a DNS-rebinding page sends its own domain). Origin, when sent,
    must be this very server (browsers send it with every cross-site POST and fetch); requests
    without it (curl, scripts) are not cross-site. ApiError 403 otherwise."""
    host = headers.get("host", "")
    if _host_name(host) not in hosts:
        raise ApiError(403, f"Host header {host!r} is not this server (allowed: {', '.join(sorted(hosts))})")
    origin = headers.get("origin")
    if origin is None:
        return
    try:
        parts = urlsplit(origin)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise ApiError(403, f"cross-origin request refused: malformed Origin {origin!r}") from None
    if parts.scheme not in ("http", "https") or (parts.netloc.lower() != host.lower()):
        raise ApiError(403, f"cross-origin request refused: Origin {origin!r} is not this server ({host})")


# --------------------------------------------------------------------------- ASGI guard


class Guard:
    """ASGI middleware: Host / Origin checks, then the body cap. The body is counted as it streams
    in (a Content-Length above the cap is refused before reading anything; a chunked or lying body
    is cut off at the cap), so an upload is never held whole in memory to be measured."""

    def __init__(self, app, *, hosts: frozenset[str], max_body_bytes: int, headers: dict[str, str] | None = None):
        self.app = app
        self.hosts = hosts
        self.max_body_bytes = max_body_bytes
        self.headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            check_host_and_origin(headers, self.hosts)
            length = headers.get("content-length")
            if length is not None:
                if not length.isdigit():
                    raise ApiError(400, f"Content-Length must be a number of bytes, got {length!r}")
                if int(length) > self.max_body_bytes:
                    raise ApiError(413, body_too_large(int(length), self.max_body_bytes))
        except ApiError as err:
            return await send_json_error(send, err, self.headers)

        received = 0
        cap = self.max_body_bytes

        async def capped_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise ApiError(413, body_too_large(received, cap, at_least=True))
            return message

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, capped_receive, send_with_headers)


def body_too_large(size: int, cap: int, *, at_least: bool = False) -> str:
    more = "at least " if at_least else ""
    return f"request body too large: {more}{size} bytes, the limit is {cap} bytes"


async def send_json_error(send, err: ApiError, extra_headers=()) -> None:
    body = json.dumps({"error": err.message}, separators=(",", ":")).encode()  # as JSONResponse writes it
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.extend(extra_headers)
    if err.status == 413:
        headers.append((b"connection", b"close"))  # the rest of the upload is not read
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- images


def decode_image(data: bytes, field: str, limits: Limits) -> Image.Image:
    """Bytes of an uploaded PNG / JPEG / WebP -> its first frame as an RGB PIL image (EXIF
    orientation applied, transparency on white). The declared size is checked against the limits
    before decoding (a few-KB file may declare gigapixels). ApiError 400 / 413 / 415 otherwise."""
    if not data:
        raise ApiError(400, f"{field}: empty file")
    with warnings.catch_warnings():
        # Our limits are checked below and are stricter than Pillow's warning threshold; Pillow's own
        # error (beyond twice that threshold) still stops an image at open.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        except Image.UnidentifiedImageError:
            raise ApiError(415, f"{field}: not a PNG, JPEG or WebP image") from None
        except Image.DecompressionBombError as err:  # Pillow's own cap
            raise ApiError(413, f"{field}: image too large to decode ({err})") from None
        except Exception as err:  # a malformed header
            raise ApiError(400, f"{field}: unreadable image ({type(err).__name__}: {err})") from None
        width, height = image.size
        if width < 1 or height < 1:
            raise ApiError(400, f"{field}: image has no pixels ({width}x{height})")
        if max(width, height) > limits.max_side or width * height > limits.max_pixels:
            raise ApiError(
                413,
                f"{field}: image of {width}x{height} exceeds the limits (longest side {limits.max_side}, "
                f"{limits.max_pixels} pixels)",
            )
        try:
            image.seek(0)  # animated PNG / WebP: the first frame only
            image.load()
            return to_rgb(image)
        except Image.DecompressionBombError as err:
            raise ApiError(413, f"{field}: image too large to decode ({err})") from None
        except Exception as err:  # truncated or corrupt data
            message = " ".join(f"{type(err).__name__}: {err}".split())
            raise ApiError(400, f"{field}: corrupt or truncated {image.format} image ({message})") from None
