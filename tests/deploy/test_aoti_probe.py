"""The AOTInductor load probe: a crash in torch's C++ loader costs a warning, not the process.

The probe's process is a stand-in here (one that segfaults, fails or exits 0); the slow test in
test_repository.py probes a real package.
"""

import sys

import pytest
import torch

from kiln import deploy
from kiln.deploy._aoti_probe import probe_packages

from .conftest import fake_packages, rel_error

CPU = torch.device("cpu")
SEGFAULT = ("-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
CRASHED = "loading them crashed a probe process (exit code -11: SIGSEGV, segmentation fault)"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_probe_killed_by_a_signal_is_reported_by_its_name(tmp_path):
    x = torch.zeros(2, 6)
    assert probe_packages({2: tmp_path / "batch_2.pt2"}, CPU, {2: x}, _program=SEGFAULT) == CRASHED


def test_a_probe_gets_device_dtype_packages_and_shapes_and_passes_when_it_exits_0(tmp_path):
    paths = {1: tmp_path / "batch_1.pt2", 8: tmp_path / "batch_8.pt2"}
    examples = {1: torch.zeros(1, 3, 4, 4, dtype=torch.uint8), 8: torch.zeros(8, 3, 4, 4)}
    expected = ["cpu", "uint8", str(paths[1]), "1,3,4,4", str(paths[8]), "8,3,4,4"]
    check = ("-c", f"import sys; assert sys.argv[1:] == {expected!r}, sys.argv")
    assert probe_packages(paths, CPU, examples, _program=check) is None
    graphed = ["--graphs", *expected]  # as the engine will run them: captured and replayed
    check = ("-c", f"import sys; assert sys.argv[1:] == {graphed!r}, sys.argv")
    assert probe_packages(paths, CPU, examples, graphs=True, _program=check) is None


def test_a_python_error_or_a_hang_in_the_probe_is_reported_in_a_line(tmp_path):
    paths, examples = {2: tmp_path / "batch_2.pt2"}, {2: torch.zeros(2, 6)}
    fails = ("-c", "print('loading'); raise RuntimeError('no kernel image for this device')")
    assert probe_packages(paths, CPU, examples, _program=fails) == (
        "loading them failed in a probe process (exit code 1: RuntimeError: no kernel image "
        "for this device)"
    )
    hangs = ("-c", "import time; time.sleep(60)")
    assert probe_packages(paths, CPU, examples, timeout=1, _program=hangs) == (
        "loading them did not finish in 1 s in a probe process"
    )


def test_the_probe_module_loads_packages_and_reports_a_file_that_is_not_one(tmp_path):
    """The real ``python -m kiln.deploy._aoti_probe`` (it imports torch: a few seconds)."""
    (tmp_path / "batch_2.pt2").write_bytes(b"not a package")
    reason = probe_packages({2: tmp_path / "batch_2.pt2"}, CPU, {2: torch.zeros(2, 6)})
    assert reason is not None
    assert reason.startswith("loading them failed in a probe process (exit code 1: ValueError: ")
    assert "batch_2.pt2 is not an AOTInductor package" in reason


def test_when_the_probe_fails_optimize_warns_and_compiles_in_process(mlp, monkeypatch, tmp_path):
    built = fake_packages(monkeypatch)
    probed = []

    def crashing_probe(paths, device, examples, graphs):
        assert not graphs  # a CPU: no CUDA graphs to probe
        probed.append((sorted(paths), device, {s: tuple(x.shape) for s, x in examples.items()}))
        return CRASHED

    compiled = []

    def jit_compile(module, example, options):  # the real one: the slow no-toolchain test
        compiled.append(len(example))
        return lambda x: module(x)

    monkeypatch.setattr("kiln.deploy._optimize.probe_packages", crashing_probe)
    monkeypatch.setattr("kiln.deploy._optimize.jit_compile", jit_compile)
    message = (r"AOTInductor built packages, but loading them crashed a probe process \(exit "
               r"code -11: SIGSEGV, segmentation fault\); compiling with torch\.compile in this "
               r"process instead\. The engine is as fast, but kiln\.deploy\.save stores no "
               r"packages, so kiln\.deploy\.load compiles again\. A different torch version may "
               r"load them \(this is torch .+\)\.")  # fmt: skip
    with pytest.warns(UserWarning, match=message) as record:
        engine = deploy.optimize(mlp, torch.randn(2, 6), "fp32", (1, 4), compile=True, jobs=1)
    assert record[0].filename == __file__  # points at the call of optimize
    assert len(built) == 2 and probed == [([1, 4], CPU, {1: (1, 6), 4: (4, 6)})]
    assert compiled == [1, 4] and engine.info["passes"][-1]["name"] == "inductor_jit"
    x = torch.randn(5, 6)
    assert rel_error(engine(x), mlp(x).detach()) <= 1e-5
    folder = deploy.save(engine, tmp_path, "mlp", onnx=False)
    assert not (folder / "aoti").exists()
