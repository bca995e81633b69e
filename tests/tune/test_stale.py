"""Stale trials: a running trial whose heartbeat stopped reads as stale, frees its point, stays
listed, and can still be told; workers' heartbeats keep long trials running."""

import threading
import time

import pytest

from kiln.tune import BaseSampler, Categorical, Float, Random, Sobol, Study, TrialState
from kiln.tune._heartbeat import Heartbeat


def _two_points(seed: int, **kwargs) -> Study:
    return Study({"c": Categorical(["a", "b"])}, {"y": "min"}, sampler=Random(seed), **kwargs)


def _silence(study: Study, number: int) -> None:
    """As if the worker of trial `number` died long ago: its last heartbeat at time 0."""
    study.storage.heartbeat(study.name, [number], 0.0)


def test_a_silent_trial_reads_stale_and_frees_its_point():
    repeats = {"running": 0, "stale": 0}
    for seed in range(20):
        for case in repeats:
            study = _two_points(seed)
            first = study.ask()
            if case == "stale":
                _silence(study, first.number)
                assert study.trials[0].state is TrialState.STALE
                assert BaseSampler.busy(study.trials) == []
            repeats[case] += study.ask().params == first.params
    # a running trial's point is never suggested twice; a stale one's is, by chance (about half)
    assert repeats["running"] == 0 and 3 <= repeats["stale"] <= 17


def test_a_stale_trial_stays_listed_and_can_still_finish():
    study = _two_points(0)
    late, revived = study.ask(), study.ask()
    _silence(study, late.number)
    _silence(study, revived.number)
    assert [t.state for t in study.trials] == [TrialState.STALE] * 2
    study.heartbeat(revived)  # its worker was only slow: running again
    assert study.tell(late, {"y": 1.0}).state is TrialState.COMPLETED
    assert [t.state for t in study.trials] == [TrialState.COMPLETED, TrialState.RUNNING]


def test_stale_is_decided_by_the_timeout():
    study = _two_points(0, stale_after=0.2)
    trial = study.ask()
    assert study.trials[0].state is TrialState.RUNNING
    time.sleep(0.3)
    assert study.trials[0].state is TrialState.STALE
    trial.report(1, {"y": 2.0})  # a report is a heartbeat too
    assert study.trials[0].state is TrialState.RUNNING


def test_optimize_heartbeats_keep_a_long_trial_running():
    seen = []
    study = Study({"x": Float(0.0, 1.0)}, {"y": "min"}, sampler=Sobol(seed=0), stale_after=0.3)

    def fn(trial):
        time.sleep(0.8)  # longer than stale_after, without a report
        seen.append(study.trials[trial.number].state)
        return 0.0

    study.optimize(fn, trials=2, workers=2)
    assert seen == [TrialState.RUNNING] * 2


def test_stale_after_is_saved_and_checked(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    Study({"x": Float(0.0, 1.0)}, {"y": "min"}, storage=url, name="s", stale_after=12.5)
    assert Study.load("s", url).stale_after == 12.5
    with pytest.raises(ValueError, match="stale_after=0"):
        Study({"x": Float(0.0, 1.0)}, {"y": "min"}, stale_after=0)


def test_heartbeat_beats_the_live_trials_and_survives_failures():
    beats: list[list[int]] = []
    fail = threading.Event()
    fail.set()

    def beat(numbers):
        if fail.is_set():
            fail.clear()
            raise ConnectionError("server restarting")
        beats.append(numbers)

    with pytest.warns(RuntimeWarning, match="server restarting"), Heartbeat(beat, 0.01) as hb:
        with hb.running(3), hb.running(5):
            time.sleep(0.1)
        with hb.running(7):
            time.sleep(0.1)
        time.sleep(0.05)
    assert [3, 5] in beats and [7] in beats and set(map(tuple, beats)) <= {(3, 5), (7,)}
    count = len(beats)
    time.sleep(0.05)
    assert len(beats) == count  # stopped
