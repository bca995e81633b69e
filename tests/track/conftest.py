"""Store fixtures: every contract test runs on SQLite and on a throwaway PostgreSQL cluster.

The cluster comes from Debian's ``postgresql`` package (``initdb`` + ``pg_ctl`` in a temporary
folder, as ``nobody`` when the tests run as root, since PostgreSQL refuses root). Without those
binaries the PostgreSQL cases skip and say so; CI installs them (``make system-deps``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from kiln.track import Store


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("PostgreSQL refuses to run as root and runuser is missing")
    return [runuser, "-u", "nobody", "--", *cmd]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A URL of a fresh PostgreSQL server on 127.0.0.1, stopped after the session."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip(
            "no PostgreSQL binaries (/usr/lib/postgresql/*/bin): apt-get install postgresql"
        )
    root = tempfile.mkdtemp(prefix="kiln-pg-")
    os.chmod(root, 0o777)
    data, port = os.path.join(root, "data"), _free_port()
    run = lambda *cmd: subprocess.run(_as_postgres_user(list(cmd)), check=True,  # noqa: E731
                                      capture_output=True, text=True, timeout=120)  # fmt: skip
    try:
        run(f"{bin_dir}/initdb", "-D", data, "-U", "kiln", "--auth=trust", "-E", "UTF8")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(f"{bin_dir}/pg_ctl", "-D", data, "-o", options, "-l", f"{root}/log", "-w", "start")
    except subprocess.CalledProcessError as error:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {error.stderr or error.stdout}")
    try:
        yield f"postgresql://kiln@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres_user([f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate",
                                          "stop"]), capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


_counter = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A URL of an empty store: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield str(tmp_path / "kiln.db")
        return
    yield new_database(request.getfixturevalue("postgres_url"))


def new_database(server_url: str) -> str:
    """The URL of a new, empty database on the PostgreSQL server at ``server_url``."""
    import sqlalchemy as sa

    name = f"kiln_{os.getpid()}_{next(_counter)}"
    admin = sa.create_engine(server_url.replace("postgresql://", "postgresql+psycopg://"),
                             isolation_level="AUTOCOMMIT")  # fmt: skip
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def store(store_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("KILN_ARTIFACTS", str(tmp_path / "artifacts"))
    s = Store(store_url)
    yield s
    s.close()
