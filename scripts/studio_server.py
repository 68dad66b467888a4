"""`refcolor serve` in a subprocess on a free loopback port, for the studio scripts
(studio_load_test.py, studio_screenshots.py): start it and wait until /api/health answers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(serve_args: list[str], *, quiet: bool = False) -> tuple[subprocess.Popen, str]:
    """`python -m refcolor serve --port PORT *serve_args` -> (process, base URL) once healthy;
    SystemExit if it dies or is not healthy within 120 s. quiet: discard the server's stdout."""
    port = free_port()
    command = [sys.executable, "-m", "refcolor", "serve", "--port", str(port), *serve_args]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL if quiet else None)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise SystemExit(f"the server did not start ({' '.join(command)})")
        time.sleep(0.25)
