"""``kiln dashboard`` (serve the REST API and web pages) and ``kiln token create``."""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS = ("dashboard", "token")


def add_parsers(subparsers: Any) -> None:
    """Add the ``dashboard`` and ``token`` subcommands to ``kiln``'s subparsers."""
    store_help = (
        "tracking store: a SQLite path or a postgresql:// URL (default: $KILN_STORE or ./kiln.db)"
    )
    dash = subparsers.add_parser("dashboard", help="serve the runs dashboard and REST API")
    dash.add_argument(
        "--host", default="127.0.0.1", help="address (default 127.0.0.1; others need a token)"
    )
    dash.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    dash.add_argument("--store", help=store_help)
    dash.add_argument("--max-upload-mb", type=float, default=256.0,
                      help="largest artifact upload accepted, in MB (default 256)")  # fmt: skip
    token = subparsers.add_parser("token", help="API tokens for a dashboard beyond loopback")
    token.add_argument("action", choices=["create"])
    token.add_argument("--name", default="token", help="a label to remember it by")
    token.add_argument("--store", help=store_help)


def run(args: argparse.Namespace) -> int:
    """Run ``kiln dashboard`` or ``kiln token create``."""
    if args.command == "token":
        from kiln.track import Store

        token = Store(args.store).create_token(args.name)
        print(token)
        print("Store it now: only its hash is kept. Send it as 'Authorization: Bearer <token>'.")
        return 0
    from kiln.server import serve

    print(f"kiln dashboard: http://{args.host}:{args.port}/ (Ctrl-C stops it)")
    serve(args.store, host=args.host, port=args.port,
          max_upload_bytes=int(args.max_upload_mb * (1 << 20)))  # fmt: skip
    return 0
