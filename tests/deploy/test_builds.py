"""Parallel package builds: the schedule (one autotuned build at a time) and worker failures."""

import sys

import pytest

from kiln.deploy._builds import _run_all, _startable


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
