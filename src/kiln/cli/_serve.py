"""``kiln serve REPOSITORY``: serve a model repository over HTTP with dynamic batching."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

COMMANDS = ("serve",)


def add_parsers(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to ``kiln``'s subparsers."""
    serve = subparsers.add_parser(
        "serve", help="serve a model repository over HTTP (dynamic batching, /metrics)"
    )
    serve.add_argument("repository", help="a model repository folder (kiln.deploy)")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address (default 127.0.0.1; others need a token: kiln token create)",
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--max-delay-ms",
        type=_non_negative,
        default=1.0,
        help="how long a batch waits for more requests after its first (default 1); not at "
        "all when the queue holds one of the engine's batch sizes exactly",
    )
    serve.add_argument(
        "--no-preferred-sizes",
        dest="preferred_sizes",
        action="store_false",
        help="wait out --max-delay-ms even when the queue holds one of the batch sizes, and "
        "take every queued request (not the ones the engine serves cheapest per sample)",
    )
    serve.add_argument(
        "--max-queue",
        type=_positive,
        default=1024,
        help="samples that may wait per model; beyond it 429 (default 1024)",
    )
    serve.add_argument(
        "--max-body-mb", type=float, default=64.0, help="largest request body, in MB (default 64)"
    )
    serve.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the repository's)")
    serve.add_argument("--store", help="tracking store holding the API tokens (beyond loopback)")


def run(args: argparse.Namespace) -> int:
    """Run ``kiln serve``: the models load in the background while the server answers."""
    from kiln.deploy import serve

    repository = Path(args.repository)
    if not repository.exists():
        raise SystemExit(
            f"kiln serve: no model repository at {str(repository)!r}: pass the "
            "folder that kiln.deploy saved the models in."
        )

    def load() -> Any:
        from kiln.deploy import load_repository  # type: ignore[attr-defined]

        return load_repository(repository, device=args.device)

    print(f"kiln serve: http://{args.host}:{args.port}/v1/models (Ctrl-C stops it)", flush=True)
    serve(
        load,
        host=args.host,
        port=args.port,
        max_delay_ms=args.max_delay_ms,
        max_queue=args.max_queue,
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        preferred_sizes=args.preferred_sizes,
        store=args.store,
        log_level="info",
    )
    return 0


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0. Received: {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1. Received: {text}")
    return value
