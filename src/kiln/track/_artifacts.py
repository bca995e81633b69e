"""Artifacts: files of a run (checkpoints, plots, sample images) in a folder the store indexes.

Files live at ``<artifact root>/<run id>/<name>``; the ``artifacts`` table holds their name,
size, media type and SHA-256. A name is a relative path without ``..``.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import shutil
import time
from pathlib import Path, PurePosixPath

from sqlalchemy import Connection, Engine, delete, insert, select

from kiln.track._records import ArtifactInfo
from kiln.track._schema import ArtifactRow


def check_name(name: str) -> str:
    parts = PurePosixPath(name).parts
    if not name or name.startswith("/") or ".." in parts or "\\" in name or len(name) > 500:
        raise ValueError(
            "an artifact name must be a relative path without '..' (at most 500 characters), "
            f"received name={name!r}"
        )
    return str(PurePosixPath(*parts))


def add(
    engine: Engine, root: Path, run_id: int, source: str | os.PathLike[str] | bytes,
    name: str | None,
) -> ArtifactInfo:  # fmt: skip
    if name is None:
        if isinstance(source, bytes):
            raise ValueError("an artifact given as bytes needs a name, e.g. name='sample.png'")
        name = Path(source).name
    name = check_name(name)
    target = root / str(run_id) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    if isinstance(source, bytes):
        tmp.write_bytes(source)
    else:
        if not Path(source).is_file():
            raise FileNotFoundError(f"no file to store as an artifact at {str(source)!r}")
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    info = ArtifactInfo(
        run_id, name, target.stat().st_size, media_type, _sha256(target), time.time()
    )
    with engine.begin() as conn:
        conn.execute(delete(ArtifactRow).where(ArtifactRow.run_id == run_id,
                                               ArtifactRow.name == name))  # fmt: skip
        conn.execute(insert(ArtifactRow).values(**info.to_dict()))
    return info


def list_(engine: Engine, run_id: int) -> list[ArtifactInfo]:
    query = select(*_COLUMNS).where(ArtifactRow.run_id == run_id).order_by(ArtifactRow.name)
    with engine.connect() as conn:
        return [ArtifactInfo(*row) for row in conn.execute(query)]


def path(engine: Engine, root: Path, run_id: int, name: str) -> Path:
    query = select(ArtifactRow.name).where(ArtifactRow.run_id == run_id, ArtifactRow.name == name)
    with engine.connect() as conn:
        found = conn.execute(query).first()
    file = root / str(run_id) / name
    if found is None or not file.is_file():
        raise FileNotFoundError(f"run {run_id} has no artifact named {name!r}")
    return file


def delete_all(conn: Connection, root: Path, run_id: int) -> None:
    conn.execute(delete(ArtifactRow).where(ArtifactRow.run_id == run_id))
    shutil.rmtree(root / str(run_id), ignore_errors=True)


_COLUMNS = (ArtifactRow.run_id, ArtifactRow.name, ArtifactRow.size, ArtifactRow.media_type,
            ArtifactRow.sha256, ArtifactRow.created_at)  # fmt: skip


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
