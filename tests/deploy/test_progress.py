"""optimize says what it does and how long each part took: log lines, and engine.info["timings"].

The package builds are stand-ins here (conftest.fake_packages): each sleeps a known time, so the
timings have an oracle.
"""

import io
import json
import re
import sys
import time

import torch

from kiln import deploy
from kiln.deploy._builds import Board, _run_all
from kiln.deploy._progress import Progress

from .conftest import fake_packages

BUILD_S = 0.2


def test_optimize_logs_every_phase_and_one_line_per_package(mlp, monkeypatch, capfd, tmp_path):
    fake_packages(monkeypatch, BUILD_S)
    engine = deploy.optimize(mlp, torch.randn(2, 6), "fp16", (1, 4), compile=True, jobs=1)
    err = capfd.readouterr().err
    lines = err.splitlines()
    assert all(re.match(r"^\[kiln\.deploy \d\d:\d\d:\d\d \+ *\d+\.\d+s\] ", line) for line in lines)
    for phase in ("capture (torch.export): done in", "pass fold_batchnorm: rel err",
                  "pass fp16: rel err", "loading the packages in a probe process: done in",
                  "batch 4: runner ready (package, check"):  # fmt: skip
        assert phase in err, err
    built = [line for line in lines if "package built in" in line]
    assert [re.search(r"batch (\d+):", line)[1] for line in built] == ["4", "1"]  # largest first
    assert float(re.search(r"built in ([\d.]+) s", built[0])[1]) >= BUILD_S - 0.05
    assert err.index("loading the packages in a probe process ...") > err.rindex("package built")
    timings = engine.info["timings"]
    expected = {"capture", "pass_fold_batchnorm", "pass_fp16", "packages", "package_1",
                "package_4", "probe", "runners", "total"}  # fmt: skip
    assert set(timings) == expected and min(timings.values()) >= 0
    assert timings["package_1"] >= BUILD_S - 0.05 and timings["package_4"] >= BUILD_S - 0.05
    # one at a time; the phases nest (timings are rounded to milliseconds)
    assert timings["packages"] >= timings["package_1"] + timings["package_4"] - 0.002
    assert timings["total"] >= timings["capture"] + timings["packages"] + timings["runners"] - 0.003
    folder = deploy.save(engine, tmp_path, "mlp", onnx=False)
    assert json.loads((folder / "config.json").read_text())["timings"] == timings


def test_verbose_false_prints_nothing_and_still_records_timings(mlp, capfd):
    engine = deploy.optimize(mlp, torch.randn(2, 6), "fp32", (2,), verbose=False)
    assert capfd.readouterr().err == ""
    assert {"capture", "pass_fold_batchnorm", "runners", "total"} == set(engine.info["timings"])
    engine = deploy.optimize(mlp, torch.randn(2, 6), "fp32", (2,))  # eager on a CPU: quiet
    assert capfd.readouterr().err == ""


def test_parallel_builds_start_together_autotuned_then_largest_first():
    stream = io.StringIO()
    sleep = [sys.executable, "-c", "import time; time.sleep(1.0)"]
    started = time.perf_counter()
    _run_all(
        dict.fromkeys([1, 8, 64], sleep), {1}, jobs=3, board=Board(Progress(True, stream), {1})
    )
    wall = time.perf_counter() - started
    events = re.findall(r"batch (\d+): package (build started|built)", stream.getvalue())
    starts = [size for size, what in events if what == "build started"]
    assert starts == ["1", "64", "8"]
    assert [what for _, what in events[:3]] == ["build started"] * 3  # all three at once
    assert wall < 2.5, f"3 one-second builds with jobs=3 ran one after another ({wall:.1f} s)"
