"""Shared fixtures: a `device` parameter (CPU, plus CUDA when present), offline, seeded."""

from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# One CPU thread per test process: pytest-xdist runs one process per core, and torch's thread
# pools fighting over the cores make small CPU ops hundreds of times slower.
torch.set_num_threads(1)


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _offline_and_seeded(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.setenv("KILN_OFFLINE", "1")
    # fit() records runs by default: into a store of the test's own, not ./kiln.db
    monkeypatch.setenv("KILN_STORE", str(tmp_path_factory.mktemp("store") / "kiln.db"))
    torch.manual_seed(0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what tests measured (``record_property("measured", ...)``), under xdist too."""
    for report in terminalreporter.getreports("passed"):
        for name, value in report.user_properties:
            if name == "measured":
                terminalreporter.write_line(f"{report.nodeid}: {value}")
