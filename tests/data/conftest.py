"""Fixtures for kiln.data tests (the `device` fixture comes from tests/conftest.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kiln.data import _datasets


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME in tmp_path/home, no KILN_DATA, KILN_OFFLINE=1, system folders under tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KILN_DATA", raising=False)
    monkeypatch.setenv("KILN_OFFLINE", "1")
    for name in ("MNIST", "FASHION_MNIST"):
        source = getattr(_datasets, name)
        system = (tmp_path / "system" / source.folder,)
        monkeypatch.setattr(_datasets, name, dataclasses.replace(source, system_dirs=system))
    return tmp_path
