"""Parallel package builds: the schedule (one autotuned build at a time) and worker failures."""

import sys
import warnings

import pytest
import torch

from kiln.deploy._builds import _run_all, _startable, build_packages


def test_at_most_jobs_builds_and_one_autotuned_build_at_a_time():
    tuned = {1, 8}
    assert _startable([1, 8, 64, 256], {}, tuned, jobs=3) == [1, 64, 256]
    assert _startable([8, 64], {1: None}, tuned, jobs=4) == [64]
    assert _startable([8], {}, tuned, jobs=1) == [8]
    assert _startable([64, 256], {1: None, 8: None}, set(), jobs=2) == []


def test_a_failing_worker_raises_with_its_output():
    ok = [sys.executable, "-c", "print('fine')"]
    bad = [sys.executable, "-c", "import sys; print('no kernels for you'); sys.exit(3)"]
    _run_all({1: ok, 2: ok}, set(), jobs=2)
    with pytest.raises(RuntimeError, match=r"batch size 2 failed \(exit code 3\)[\s\S]*no kernels"):
        _run_all({1: ok, 2: bad}, {1}, jobs=2)


def test_build_logs_are_kept_where_asked_and_workers_print_their_stacks_on_a_timer(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("KILN_BUILD_LOGS", str(tmp_path / "logs"))
    ok = [sys.executable, "-c", "print('fine')"]
    bad = [sys.executable, "-c", "import sys; print('broken'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match="broken"):  # one at a time, the largest first
        _run_all({1: bad, 2: ok}, set(), jobs=1)
    assert (tmp_path / "logs" / "batch_2.log").read_text() == "fine\n"
    assert (tmp_path / "logs" / "batch_1.log").read_text() == "broken\n"

    import subprocess

    from kiln.deploy._builds import worker_env

    code = (
        "import time\nfrom kiln.deploy._progress import watching\n"
        "with watching():\n    time.sleep(0.6)\ntime.sleep(0.5)  # none after it\n"
    )
    after = "line 5"  # a dump from the last sleep would name it
    for every, dumps in (("0.2", True), ("", False), ("soon", False)):
        env = {**worker_env(), "KILN_BUILD_STACKS": every}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert ("most recent call first" in done.stderr) == dumps, (every, done.stderr)
        assert after not in done.stderr
    assert "KILN_BUILD_STACKS takes seconds (e.g. 30). Received: 'soon'" in done.stderr


def test_workers_get_channels_last_weights_exactly_and_the_user_no_storage_warning(
    monkeypatch, tmp_path
):
    # torch warns "No complete tensor found in the group" for every non-contiguous weight it
    # saves; for channels_last weights of their own (what kiln's passes leave) that is noise
    conv = torch.nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last).eval()
    handed = {}

    def run_all(commands, tuned, jobs, board=None):  # the workers, reading their programs
        for size, command in commands.items():
            handed[size] = torch.export.load(command[3]).state_dict["weight"]

    monkeypatch.setattr("kiln.deploy._builds._run_all", run_all)
    examples = {1: torch.randn(1, 3, 8, 8), 2: torch.randn(2, 3, 8, 8)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_packages(dict.fromkeys(examples, conv), examples, {1: {}, 2: {}}, tmp_path, jobs=2)
    assert sorted(handed) == [1, 2]
    for weight in handed.values():
        assert weight.stride() == conv.weight.stride() != conv.weight.contiguous().stride()
        assert torch.equal(weight, conv.weight.detach())
