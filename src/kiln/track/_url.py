"""Where the store lives: a SQLAlchemy URL from an argument, ``$KILN_STORE`` or ``./kiln.db``."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PATH = "kiln.db"


def resolve_url(url: str | os.PathLike[str] | None = None) -> str:
    """A SQLAlchemy URL for ``url``: None -> ``$KILN_STORE`` or ``./kiln.db``.

    A plain path means a SQLite file; ``postgresql://`` means PostgreSQL through psycopg 3.
    """
    if url is None:
        url = os.environ.get("KILN_STORE") or DEFAULT_PATH
    text = os.fspath(url)
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    if "://" in text:
        return text
    return "sqlite:///" + str(Path(text).expanduser().resolve())


def artifact_root(url: str) -> Path:
    """The folder next to a SQLite file (``kiln.db`` -> ``kiln.artifacts/``) or ``$KILN_ARTIFACTS``.

    For a server database (PostgreSQL) the default is ``~/.kiln/artifacts``; point
    ``$KILN_ARTIFACTS`` at a shared file system when several hosts log artifacts.
    """
    if os.environ.get("KILN_ARTIFACTS"):
        return Path(os.environ["KILN_ARTIFACTS"]).expanduser()
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return path.with_name(path.stem + ".artifacts")
    if url.startswith("sqlite"):  # in memory
        import tempfile

        return Path(tempfile.mkdtemp(prefix="kiln-artifacts-"))
    return Path("~/.kiln/artifacts").expanduser()
