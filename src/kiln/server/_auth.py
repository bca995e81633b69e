"""Bearer-token check for the REST API (on when the server listens beyond loopback)."""

from __future__ import annotations

from fastapi import HTTPException, Request

from kiln.track import Store


def check_token(request: Request) -> None:
    """Reject a request without a valid ``Authorization: Bearer <token>`` header."""
    if not request.app.state.token_required:
        return
    store: Store = request.app.state.store
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "this server requires an API token: send 'Authorization: "
                            "Bearer <token>' (create one with `kiln token create`)",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    if not store.verify_token(token.strip()):
        raise HTTPException(401, "unknown API token: create one with `kiln token create`",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
