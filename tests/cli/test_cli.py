import dataclasses
import subprocess
import sys

import pytest
import torch

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


def test_train_resnet_on_synthetic_images_at_a_small_size(tmp_path, capsys):
    out = tmp_path / "r18.kiln"
    args = ["train", "resnet18", "--synthetic", "--samples", "64", "--epochs", "1"]
    args += ["--batch-size", "16", "--image-size", "32", "--output", str(out), "--verbose", "0"]
    assert main(args) == 0
    assert "64 training and 12 test samples from synthetic (3, 32, 32)" in capsys.readouterr().out
    model = kiln.load_model(out)
    assert model.input_specs[0].shape == (3, 32, 32)
    assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 1000)


def test_image_size_needs_a_builder_that_takes_it(monkeypatch):
    from kiln.zoo import _registry

    entry = _registry.get_entry("lenet5")
    fixed = dataclasses.replace(entry, build=lambda num_classes=10: entry.build())
    monkeypatch.setitem(_registry._REGISTRY, "lenet5", fixed)
    with pytest.raises(SystemExit, match="fixed input size"):
        main(["train", "lenet5", "--image-size", "32"])


def test_train_script_passes_arguments(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "import sys, pathlib\npathlib.Path(sys.argv[1]).write_text(' '.join(sys.argv[2:]))\n"
    )
    marker = tmp_path / "marker.txt"
    done = subprocess.run(
        [sys.executable, "-m", "kiln.cli", "train", str(script), str(marker), "--flag", "3"],
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


def test_train_zoo_model_on_two_processes(tmp_path):
    out = tmp_path / "two.kiln"
    cmd = [sys.executable, "-m", "kiln.cli", "train", "lenet5", "--gpus", "2", "--epochs",
           "1", "--samples", "512", "--output", str(out), "--verbose", "0"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert kiln.load_model(out)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    # each rank runs `python -m kiln.cli`: no "found in sys.modules" warning from runpy
    assert "RuntimeWarning" not in done.stderr, done.stderr[-3000:]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--nodes", "2", "--node-rank", "2", "--rdzv", "h:1"], "0 <= --node-rank < --nodes"),
        (["--nodes", "2", "--rdzv", "h:1", "--rdzv-timeout", "0"], "received gpus=1, nodes=2"),
        (["--nodes", "2"], "--nodes > 1 needs --rdzv host:port"),
        (["--nodes", "2", "--rdzv", "node0"], "--rdzv takes host:port"),
    ],
)
def test_launch_options_out_of_range_are_a_clear_exit(tmp_path, options, expected):
    script = tmp_path / "noop.py"
    script.write_text("")
    with pytest.raises(SystemExit) as info:
        main(["launch", "--gpus", "1", *options, str(script)])
    assert str(info.value).startswith("kiln launch:") and expected in str(info.value)
