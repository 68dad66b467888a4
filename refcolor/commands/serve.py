"""`refcolor serve`: the studio, a local web app over the colorizers (refcolor.studio).

refcolor serve [--host 127.0.0.1] [--port 7860] [--device cpu] [--checkpoint KIND=PATH ...]
    serves http://HOST:PORT/ : the page (Guided, Reference and Exemplar tabs) and its HTTP API
    (GET /api/health, POST /api/regions, POST /api/colorize). KIND is guide, scft or exemplar; a
    kind without --checkpoint uses the bundled model. guide and scft must be found; without an
    exemplar checkpoint or bundled exemplar model the Exemplar tab is not served (the server says
    so at start). Needs the `studio` extra:
    pip install --no-build-isolation -e ".[studio]"
"""

from __future__ import annotations

import argparse
import sys

from refcolor.commands import CommandError

MiB = 1 << 20


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="the studio: a local web app (Guided, Reference, Exemplar) and its HTTP API",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=7860, help="default: %(default)s")
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto (default: %(default)s)")
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="KIND=PATH",
        help="model of a kind (guide, scft or exemplar): run directory, .safetensors or .pt; repeat per kind",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name the browser may use for this server (Host header check); repeatable",
    )
    parser.add_argument("--max-body-mb", type=int, default=48, help="request body cap in MiB (default: %(default)s)")
    parser.add_argument(
        "--max-pixels", type=int, default=4096 * 4096, help="pixels per uploaded image (default: %(default)s)"
    )
    parser.add_argument("--max-side", type=int, default=8192, help="longest side of an image (default: %(default)s)")
    parser.add_argument(
        "--queue-size", type=int, default=8, help="inference jobs queued before 503 Busy (default: %(default)s)"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as err:
        raise CommandError(
            f"refcolor serve needs the 'studio' extra ({err.name} is missing): pip install 'refcolor[studio]'"
        ) from None
    from refcolor.studio.app import create_app
    from refcolor.studio.models import load_colorizers, parse_checkpoint_option
    from refcolor.studio.safety import Limits, allowed_hosts, bind_warning

    if not 0 < args.port < 65536:
        raise CommandError(f"--port must be in 1..65535, got {args.port}")
    checkpoints = {}
    for text in args.checkpoint:
        kind, path = parse_checkpoint_option(text)
        if kind in checkpoints:
            raise CommandError(f"--checkpoint {kind}=... given twice")
        checkpoints[kind] = path
    limits = Limits(
        max_body_bytes=args.max_body_mb * MiB,
        max_pixels=args.max_pixels,
        max_side=args.max_side,
        max_queue=args.queue_size,
    )
    colorizers = load_colorizers(checkpoints, device=args.device)
    app = create_app(colorizers, limits=limits, hosts=allowed_hosts(args.host, tuple(args.allow_host)))
    warning = bind_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    for kind, source in colorizers.sources.items():
        print(f"refcolor serve: {kind} model from {source}")
    for kind, reason in colorizers.missing.items():
        print(f"refcolor serve: {kind} not served: {reason}")
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"refcolor serve: open http://{host}:{args.port}/ (Ctrl-C stops)")
    # limit_concurrency: beyond that many open connections uvicorn answers 503 itself.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        limit_concurrency=256,
    )
    return 0
