"""Where an MNIST-style IDX dataset lives: search folders, file names, mirrors, checksums.

A folder holds a dataset when it has all four files, each raw or ``.gz``, named
``train-images-idx3-ubyte`` (or with a dot, ``train-images.idx3-ubyte``, as the original
archives unpack on some systems), ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiln.data._download import DownloadError, fetch, offline
from kiln.data._idx import read_idx

ROLES = ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")
Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are in none of the searched places and could not be downloaded."""


@dataclass(frozen=True)
class IdxSource:
    """One IDX dataset: ``folder`` is its name under each data root (e.g. ``"mnist"``)."""

    title: str
    folder: str
    md5: dict[str, str]  # of the .gz files the mirrors serve, by role
    mirrors: tuple[str, ...]
    system_dirs: tuple[Path, ...]
    function: str  # the public loader, e.g. "kiln.datasets.mnist"
    full_call: str  # the call that searches and downloads, e.g. "kiln.datasets.mnist(full=True)"
    extra_hint: str = ""

    def search_dirs(self) -> list[Path]:
        """``$KILN_DATA/<folder>``, ``~/.kiln/datasets/<folder>``, then the system folders."""
        root = os.environ.get("KILN_DATA")
        dirs = [Path(root).expanduser() / self.folder] if root else []
        return [*dirs, Path.home() / ".kiln" / "datasets" / self.folder, *self.system_dirs]

    def download_dir(self) -> Path:
        """Downloads go to ``$KILN_DATA/<folder>`` if KILN_DATA is set, else ``~/.kiln``."""
        return self.search_dirs()[0]


def find_files(folder: Path) -> dict[str, Path]:
    """The dataset's files present in ``folder``, by role."""
    found = {}
    for role in ROLES:
        stem, kind = role.rsplit("-", 1)
        for name in (f"{role}-ubyte", f"{stem}.{kind}-ubyte"):
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file() and role not in found:
                    found[role] = candidate
    return found


def locate(source: IdxSource, path: str | os.PathLike[str] | None, download: bool) -> Path:
    """The first folder holding all four files: ``path`` alone if given, else search/download."""
    if path is not None:
        folder = Path(path).expanduser()
        if len(find_files(folder)) < len(ROLES):
            raise DatasetNotFoundError(_message(source, [folder], path_given=True, why=""))
        return folder
    dirs = source.search_dirs()
    for folder in dirs:
        if len(find_files(folder)) == len(ROLES):
            return folder
    if not download or offline():
        why = "download=False" if not download else "KILN_OFFLINE is set"
        raise DatasetNotFoundError(_message(source, dirs, path_given=False, why=why))
    target = source.download_dir()
    try:
        for role in ROLES:
            if role not in find_files(target):
                fetch(f"{role}-ubyte.gz", source.md5[role], source.mirrors, target)
    except (DownloadError, OSError) as err:
        why = f"the download failed: {err}"
        raise DatasetNotFoundError(_message(source, dirs, path_given=False, why=why)) from err
    return target


def load_arrays(source: IdxSource, folder: Path) -> Arrays:
    """uint8 images (N, 28, 28) and uint8 labels (N,) of train and test, validated."""
    files = find_files(folder)
    out = []
    for split in ("train", "t10k"):
        images = read_idx(files[f"{split}-images-idx3"])
        labels = read_idx(files[f"{split}-labels-idx1"])
        _check(source, files[f"{split}-images-idx3"], images, files[f"{split}-labels-idx1"], labels)
        out.append((images, labels))
    return out[0], out[1]


def _check(
    source: IdxSource, ipath: Path, images: np.ndarray, lpath: Path, labels: np.ndarray
) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{ipath}: {source.title} images must be uint8 of shape (N, 28, 28). "
            f"Received: dtype={images.dtype}, shape={images.shape}."
        )
    if labels.dtype != np.uint8 or labels.shape != (len(images),) or labels.max(initial=0) > 9:
        raise ValueError(
            f"{lpath}: {source.title} labels must be uint8 in 0..9 of shape ({len(images)},) to "
            f"match {ipath.name}. Received: dtype={labels.dtype}, shape={labels.shape}, "
            f"max={labels.max(initial=0)}."
        )


def _message(source: IdxSource, dirs: list[Path], *, path_given: bool, why: str) -> str:
    names = ", ".join(f"{role}-ubyte" for role in ROLES)
    if path_given:
        have = sorted(p.name for p in find_files(dirs[0]).values())
        return (
            f"{source.title}: the folder {dirs[0]} does not hold all four IDX files {names} "
            f"(each raw or .gz); it has {have or 'none of them'}. Put them there, or call "
            f"{source.full_call} (no path=) to search the standard folders and download."
        )
    lines = [
        f"{source.title} IDX files not found, and not downloaded ({why}).",
        f"Needed: {names} (each raw or .gz). Searched, in order:",
        *(f"  {d}" + _partial(d) for d in dirs),
        "Do one of:",
        f'  - pass the folder that holds them: {source.function}(path="/path/to/{source.folder}")',
        "  - put them in one of the searched folders above",
        f"  - set KILN_DATA=/your/data/root and put them in $KILN_DATA/{source.folder}",
        f"  - go online: unset KILN_OFFLINE and call {source.full_call} (download=True is the "
        f"default) to fetch them from {source.mirrors[0]} into {source.download_dir()}",
    ]
    return "\n".join([*lines, *([f"  - {source.extra_hint}"] if source.extra_hint else [])])


def _partial(folder: Path) -> str:
    n = len(find_files(folder))
    return f"  (has {n} of {len(ROLES)} files)" if n else ""
