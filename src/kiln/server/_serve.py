"""``serve``: run the app with uvicorn; loopback by default, a token beyond it."""

from __future__ import annotations

from kiln._extras import require
from kiln.server._app import create_app
from kiln.track import Store


def serve(
    store: Store | str | None = None, host: str = "127.0.0.1", port: int = 8765, *,
    max_upload_bytes: int = 256 << 20, log_level: str = "warning",
) -> None:  # fmt: skip
    """Serve the REST API and dashboard at http://host:port until interrupted.

    Listening beyond loopback (``host="0.0.0.0"``) turns on API tokens, and needs one to
    exist: create it with ``kiln token create`` first.
    """
    uvicorn = require("uvicorn", "server")
    store = store if isinstance(store, Store) else Store(store)
    token_required = not is_loopback(host)
    if token_required and not store.has_tokens():
        raise SystemExit(
            f"kiln dashboard: listening on {host} (beyond this machine) requires an API token, "
            "and the store has none. Create one with `kiln token create`, or listen on "
            "127.0.0.1 (the default)."
        )
    app = create_app(store, token_required=token_required, max_upload_bytes=max_upload_bytes)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
