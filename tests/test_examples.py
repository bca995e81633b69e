"""Every example runs; LeNet-5 reaches the issue's bar on the bundled digits."""

import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _code_lines(path: Path) -> int:
    lines = path.read_text().splitlines()
    body = "\n".join(lines)
    body = re.sub(r'^""".*?"""', "", body, count=1, flags=re.S)  # the docstring
    return sum(1 for line in body.splitlines() if line.strip() and not line.strip().startswith("#"))


def test_lenet5_example_is_short():
    path = ROOT / "examples" / "lenet5_mnist.py"
    assert _code_lines(path) <= 15
    assert ";" not in path.read_text()


@pytest.mark.slow
def test_lenet5_example_reaches_98_percent(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lenet5_mnist.py"])
    runpy.run_path(str(ROOT / "examples" / "lenet5_mnist.py"), run_name="__main__")
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", out).group(1))
    assert accuracy >= 0.98, out[-2000:]
    assert (tmp_path / "lenet5.kiln").exists()
