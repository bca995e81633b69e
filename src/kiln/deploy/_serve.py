"""``serve``: run the inference app with uvicorn until interrupted."""

from __future__ import annotations

from typing import Any

from kiln._extras import require
from kiln._serving import serving
from kiln.deploy._inference_app import Engines, inference_app

__all__ = ["serve", "serving"]


def serve(
    engines: Engines,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    max_delay_ms: float = 1.0,
    max_queue: int = 1024,
    max_body_bytes: int = 64 << 20,
    preferred_sizes: bool = True,
    store: Any = None,
    log_level: str = "warning",
) -> None:
    """Serve ``engines`` (name -> Engine, or a function loading them) at http://host:port.

    Listening beyond loopback turns on API tokens (``kiln token create``) of ``store`` (a
    ``kiln.track.Store``, URL or None for ``$KILN_STORE``/``kiln.db``). Loading fails the
    server: it stops and this raises ``SystemExit`` with the error.
    """
    uvicorn = require("uvicorn", "serve")
    from kiln.server._serve import is_loopback

    token_required = not is_loopback(host)
    if token_required:
        from kiln.track import Store

        store = store if isinstance(store, Store) else Store(store)
        if not store.has_tokens():
            raise SystemExit(
                f"kiln serve: listening on {host} (beyond this machine) requires an API token, "
                "and the store has none. Create one with `kiln token create`, or listen on "
                "127.0.0.1 (the default)."
            )
    server: Any = None

    def stop(error: BaseException) -> None:
        server.should_exit = True

    app = inference_app(
        engines,
        max_delay_ms=max_delay_ms,
        max_queue=max_queue,
        max_body_bytes=max_body_bytes,
        preferred_sizes=preferred_sizes,
        token_required=token_required,
        store=store,
        on_load_error=stop,
    )
    # uvloop and httptools when installed ("auto"); no access log: it costs per request
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, backlog=4096
    )
    server = uvicorn.Server(config)
    server.run()
    if app.state.load_error:
        raise SystemExit(f"kiln serve: {app.state.load_error}")
