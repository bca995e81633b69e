import subprocess
import sys

import pytest

import kiln
from kiln.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"kiln {kiln.__version__}"


def test_zoo_list(capsys):
    assert main(["zoo", "list"]) == 0
    assert "lenet5" in capsys.readouterr().out


def test_train_zoo_model_saves_a_working_model(tmp_path, monkeypatch):
    (x, y), (xt, yt) = kiln.datasets.mnist()
    monkeypatch.setattr(
        kiln.data.datasets, "mnist", lambda: ((x[:512], y[:512]), (xt[:256], yt[:256]))
    )
    out = tmp_path / "m.kiln"
    assert main(["train", "lenet5", "--epochs", "1", "--output", str(out), "--verbose", "0"]) == 0
    model = kiln.load_model(out)
    assert model(xt[:4]).shape == (4, 10)


def test_train_script_passes_arguments(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "import sys, pathlib\npathlib.Path(sys.argv[1]).write_text(' '.join(sys.argv[2:]))\n"
    )
    marker = tmp_path / "marker.txt"
    done = subprocess.run(
        [sys.executable, "-m", "kiln.cli._main", "train", str(script), str(marker), "--flag", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "--flag 3"


def test_unknown_zoo_name_is_a_clear_exit():
    with pytest.raises(SystemExit, match="No zoo model named 'lenet6'"):
        main(["train", "lenet6"])


def test_kiln_entry_point_is_installed():
    done = subprocess.run(
        [sys.executable, "-c", "import shutil; print(shutil.which('kiln') or '')"],
        capture_output=True,
        text=True,
    )
    path = done.stdout.strip() or str(__import__("pathlib").Path(sys.executable).with_name("kiln"))
    result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"kiln {kiln.__version__}"
