"""Load test of the studio's API on loopback: requests/s and p50/p95 latency of /api/regions and
/api/colorize under many concurrent clients, and a check that every answer is the answer to its
own request (no lost or mixed-up responses).

    python scripts/studio_load_test.py                       # 32 clients, 64 requests per endpoint
    python scripts/studio_load_test.py --url http://127.0.0.1:7860   # a server already running

Without --url it saves the models (random weights of the bundled models' architectures, from
configs/bundled_*.toml: the cost of a request does not depend on the weights' values, or the
models given with --checkpoint) and starts `refcolor serve` on a free loopback port in a
subprocess, so the clients (one asyncio loop here) do not share the server's interpreter.

Each request sends its own sketch: a distinct size (width 200 + i) and file name, so an answer
shows whose it is: /api/regions must echo the request's name and size, /api/colorize must answer a
PNG of the request's size. Meanwhile /api/health is polled every 0.2 s: its worst latency shows
whether the event loop stays free while inference runs. Refusals (503 Busy from a full queue) are
counted, never retried; any other status, a transport failure or a mismatch fails the run (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import tomllib
from PIL import Image, ImageDraw
from studio_server import start_server

ROOT = Path(__file__).resolve().parent.parent


def sketch_png(index: int, height: int) -> tuple[bytes, tuple[int, int]]:
    """A distinct line drawing per request: width 200 + index (so its answer's size identifies it)."""
    width = 200 + index
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    draw.ellipse([10, 10, width - 12, height - 12], outline=0, width=2)
    draw.line([20 + index % (width - 40), 5, width // 2, height - 5], fill=0, width=2)
    draw.rectangle([width // 3, height // 3, width // 3 + 30, height // 3 + 20], outline=0, width=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), (width, height)


def reference_png() -> bytes:
    image = Image.new("RGB", (160, 160), (230, 200, 160))
    ImageDraw.Draw(image).ellipse([30, 30, 130, 130], fill=(200, 60, 50))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_bundled_architectures(folder: Path) -> dict[str, Path]:
    """Random-weight models with the bundled configs' architectures -> {kind: .safetensors}."""
    import torch

    from refcolor.models import GuidingPainter, GuidingPainterConfig, SCFTColorizer, SCFTColorizerConfig
    from refcolor.models.registry import describe
    from refcolor.models.weights import save_weights

    torch.manual_seed(0)
    paths = {}
    for kind, cls, config_cls in (
        ("guide", GuidingPainter, GuidingPainterConfig),
        ("scft", SCFTColorizer, SCFTColorizerConfig),
    ):
        toml = tomllib.loads((ROOT / "configs" / f"bundled_{kind}.toml").read_text())
        config = config_cls.preset(toml["preset"], image_size=toml["image_size"], **toml.get("model_overrides", {}))
        paths[kind] = folder / f"{kind}.safetensors"
        save_weights(paths[kind], cls(config), describe(kind, config))
    return paths


async def one_request(client: httpx.AsyncClient, endpoint: str, index: int, height: int, reference: bytes) -> dict:
    data, (width, h) = sketch_png(index, height)
    name = f"sketch_{index:04d}.png"
    files = {"sketch": (name, data, "image/png")}
    form: dict[str, str] = {}
    if endpoint == "regions":
        path = "/api/regions"
    elif endpoint == "colorize-guide":
        path, form = "/api/colorize", {"mode": "guide", "colors": json.dumps(["#e03c31", "#2a5bd7", [40, 160, 90]])}
    else:
        path, form = "/api/colorize", {"mode": "reference"}
        files["reference"] = ("reference.png", reference, "image/png")
    started = time.perf_counter()
    try:
        response = await client.post(path, data=form, files=files)
    except httpx.HTTPError as err:
        return {"outcome": "failed", "why": f"{type(err).__name__}: {err}", "seconds": time.perf_counter() - started}
    seconds = time.perf_counter() - started
    if response.status_code == 503 and response.json().get("error"):
        return {"outcome": "busy", "seconds": seconds}
    if response.status_code != 200:
        return {"outcome": "failed", "why": f"{response.status_code} {response.text[:200]}", "seconds": seconds}
    if endpoint == "regions":
        answer = response.json()
        ok = answer.get("sketch") == name and answer.get("size") == [width, h] and answer.get("regions")
        why = f"asked {name} {width}x{h}, got {answer.get('sketch')} {answer.get('size')}"
    else:
        size = Image.open(io.BytesIO(response.content)).size
        ok = size == (width, h)
        why = f"asked {width}x{h}, got {size}"
    return {"outcome": "ok" if ok else "mixed-up", "why": why, "seconds": seconds}


async def run_endpoint(url: str, endpoint: str, requests: int, clients: int, height: int) -> dict:
    reference = reference_png()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(requests):
            queue.put_nowait(i)
        results: list[dict] = []

        async def worker():
            while not queue.empty():
                i = queue.get_nowait()
                results.append(await one_request(client, endpoint, i, height, reference))

        health: list[float] = []  # /api/health latency while the load runs: is the server responsive?
        running = True

        async def poll_health():
            async with httpx.AsyncClient(base_url=url, timeout=60) as probe:
                while running:
                    t = time.perf_counter()
                    response = await probe.get("/api/health")
                    assert response.status_code == 200, response.text
                    health.append(time.perf_counter() - t)
                    await asyncio.sleep(0.2)

        started = time.perf_counter()
        poller = asyncio.ensure_future(poll_health())
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        running = False
        await poller
    ok = [r["seconds"] for r in results if r["outcome"] == "ok"]
    quantiles = statistics.quantiles(ok, n=20, method="inclusive") if len(ok) >= 2 else [float("nan")] * 19
    return {
        "endpoint": endpoint,
        "requests": requests,
        "clients": clients,
        "ok": len(ok),
        "busy_503": sum(r["outcome"] == "busy" for r in results),
        "failed": [r["why"] for r in results if r["outcome"] == "failed"],
        "mixed_up": [r["why"] for r in results if r["outcome"] == "mixed-up"],
        "seconds": elapsed,
        "ok_per_second": len(ok) / elapsed,
        "p50": statistics.median(ok) if ok else float("nan"),
        "p95": quantiles[18],
        "health_max": max(health) if health else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--url", default=None, help="test a running server instead of starting one")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="KIND=PATH", help="models to serve")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=64, help="requests per endpoint (default: %(default)s)")
    parser.add_argument("--height", type=int, default=160, help="sketch height in px (default: %(default)s)")
    parser.add_argument(
        "--queue-size", type=int, default=None, help="server queue (default: --clients, so none is refused)"
    )
    parser.add_argument(
        "--endpoints", default="regions,colorize-guide,colorize-reference", help="comma list (default: %(default)s)"
    )
    args = parser.parse_args()
    if not 1 <= args.clients <= 256 or not 1 <= args.requests <= 10000:
        parser.error("--clients must be in 1..256 and --requests in 1..10000 (a bounded test)")

    server = None
    url = args.url
    with tempfile.TemporaryDirectory() as tmp:
        if url is None:
            if args.checkpoint:
                checkpoints = {k: Path(p) for k, _, p in (c.partition("=") for c in args.checkpoint)}
            else:
                checkpoints = save_bundled_architectures(Path(tmp))
            serve_args = ["--queue-size", str(args.queue_size or args.clients)]
            for kind, path in checkpoints.items():
                serve_args += ["--checkpoint", f"{kind}={path}"]
            server, url = start_server(serve_args, quiet=True)
        try:
            health = httpx.get(f"{url}/api/health", timeout=10).json()
            print(f"server {url}: models {json.dumps(health['models'])}, queue {health['queue']['capacity']}")
            print(f"cpu count {os.cpu_count()}, clients {args.clients}, sketch height {args.height} px")
            counts = " ".join(f"{h:>5}" for h in ("ok", "503", "fail", "mixed"))
            times = " ".join(f"{h:>7}" for h in ("req/s", "p50 s", "p95 s"))
            print(f"{'endpoint':<20} {counts} {times} health max s")
            bad = False
            for endpoint in args.endpoints.split(","):
                r = asyncio.run(run_endpoint(url, endpoint, args.requests, args.clients, args.height))
                print(
                    f"{endpoint:<20} {r['ok']:>5} {r['busy_503']:>5} {len(r['failed']):>5} {len(r['mixed_up']):>5} "
                    f"{r['ok_per_second']:>7.2f} {r['p50']:>7.3f} {r['p95']:>7.3f} {r['health_max']:>7.3f}"
                )
                for why in (r["failed"] + r["mixed_up"])[:5]:
                    print(f"  {why}")
                bad = bad or bool(r["failed"] or r["mixed_up"])
            alive = httpx.get(f"{url}/api/health", timeout=10).json()
            print(f"after: server up, queue pending {alive['queue']['pending']}, served {alive['queue']['served']}")
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
