"""``create_app``: the REST API and the dashboard pages over one ``Store``."""

from __future__ import annotations

from typing import Any

from kiln._extras import require
from kiln.dashboard import STATIC as DASHBOARD
from kiln.track import Store


def create_app(
    store: Store | str | None = None, *, token_required: bool = False,
    max_upload_bytes: int = 256 << 20,
) -> Any:  # fmt: skip
    """A FastAPI app serving ``store`` (a Store, URL, or None for ``$KILN_STORE``/``kiln.db``).

    ``token_required``: every ``/v1`` request needs ``Authorization: Bearer <token>`` with a
    token of ``store.create_token`` (``kiln token create``). ``serve`` turns it on for any
    address beyond loopback.
    """
    require("fastapi", "server")
    from fastapi import Depends, FastAPI
    from fastapi.responses import RedirectResponse
    from fastapi.staticfiles import StaticFiles

    from kiln import __version__
    from kiln.server import _errors, _experiments, _runs
    from kiln.server._auth import check_token

    app = FastAPI(title="kiln", version=__version__,
                  description="Runs, metrics, artifacts and studies of a kiln store.")  # fmt: skip
    app.state.store = store if isinstance(store, Store) else Store(store)
    app.state.studies = _experiments.Studies(app.state.store)
    app.state.token_required = token_required
    app.state.max_upload_bytes = max_upload_bytes
    _errors.install(app)
    app.include_router(_runs.router, dependencies=[Depends(check_token)])
    app.include_router(_experiments.router, dependencies=[Depends(check_token)])

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/ui/index.html")

    if DASHBOARD.is_dir():
        app.mount("/ui", StaticFiles(directory=DASHBOARD), name="dashboard")
    return app
