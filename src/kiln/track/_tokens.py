"""API tokens for the REST service: random, shown once, stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from sqlalchemy import Engine, func, insert, select

from kiln.track._schema import TokenRow

PREFIX = "kiln_"


def create(engine: Engine, name: str) -> str:
    token = PREFIX + secrets.token_urlsafe(32)
    row = {"name": name[:200], "sha256": _hash(token), "created_at": time.time()}
    with engine.begin() as conn:
        conn.execute(insert(TokenRow).values(**row))
    return token


def verify(engine: Engine, token: str) -> bool:
    digest = _hash(token)
    with engine.connect() as conn:
        found = conn.execute(select(TokenRow.sha256).where(TokenRow.sha256 == digest)).first()
    return found is not None and hmac.compare_digest(found[0], digest)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(TokenRow)).scalar_one()
