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
        build_packages(conv, examples, {1: {}, 2: {}}, tmp_path, jobs=2)
    assert sorted(handed) == [1, 2]
    for weight in handed.values():
        assert weight.stride() == conv.weight.stride() != conv.weight.contiguous().stride()
        assert torch.equal(weight, conv.weight.detach())
