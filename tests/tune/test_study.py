"""Studies: ask/tell, trial states, failures, workers, Pareto front and hypervolume."""

import gc
import operator
import os
import threading
import time
from pathlib import Path

import pytest

from kiln.tune import Float, Int, Random, Sobol, Study, TrialState
from kiln.tune._workers import worker_env


def _study(**kwargs) -> Study:
    space = {"x": Float(0.0, 1.0), "n": Int(1, 10)}
    return Study(space, {"a": "max", "b": "min"}, sampler=Random(seed=0), **kwargs)


def test_ask_tell_and_states():
    study = _study(constraints={"size": ("<=", 5.0)})
    trial = study.ask()
    assert trial.state is TrialState.RUNNING and set(trial.params) == {"x", "n"}
    done = study.tell(trial, {"a": 1.0, "b": 2.0, "size": 3.0, "seconds": 9.5})
    assert done.state is TrialState.COMPLETED and done.values["seconds"] == 9.5  # stored only
    with pytest.raises(ValueError, match="already completed"):
        study.tell(trial, {"a": 1.0, "b": 2.0, "size": 3.0})
    missing = study.tell(study.ask(), {"a": 1.0})
    assert missing.state is TrialState.FAILED and "Missing metrics ['b', 'size']" in missing.error
    nan = study.tell(study.ask(), {"a": float("nan"), "b": 0.0, "size": 0.0})
    assert nan.state is TrialState.FAILED and "'a': nan" in nan.error
    assert study.tell(study.ask(), state="pruned").state is TrialState.PRUNED
    assert [t.state.value for t in study.trials] == ["completed", "failed", "failed", "pruned"]


def test_bad_study_definitions_echo_the_value():
    space = {"x": Float(0.0, 1.0)}
    for kwargs, message in [
        ({"objectives": {"a": "maximize"}}, "a='maximize'"),
        ({"objectives": "a"}, "Received: 'a'"),
        ({"objectives": {"a": "max"}, "constraints": {"p": ("<", 1)}}, "p=('<', 1)"),
        ({"objectives": {"a": "max"}, "thresholds": {"b": 1.0}}, "['b']"),
    ]:
        with pytest.raises(ValueError) as info:
            Study(space, sampler=Random(0), **kwargs)
        assert message in str(info.value)


def test_a_study_from_its_json_config():
    study = _study(constraints={"size": ("<=", 5.0)}, thresholds={"a": 0.0}, stale_after=9.0)
    again = Study.from_config(study.config())
    assert again.config() == study.config() and again.name != study.name
    space = study.config()["space"]
    for extra, message in [
        ({"sampler": {"type": "Grid"}}, "Received: {'type': 'Grid'}"),
        ({"sampler": {"type": "Sobol", "sed": 1}}, "argument 'sed'"),
        ({"pruner": {"type": "SuccessiveHalving", "reduction": 1}}, "reduction=1"),
        ({"constraints": {"size": ["<", 5]}}, "size=['<', 5]"),
        ({"stale_after": -1}, "stale_after=-1"),
    ]:
        with pytest.raises(ValueError) as info:
            Study.from_config({"space": space, "objectives": {"a": "max"}, **extra})
        assert message in str(info.value)
    with pytest.raises(ValueError, match="at least"):
        Study.from_config({"space": space})


def test_a_failing_trial_never_kills_the_study():
    def fn(trial):
        if trial.number % 2:
            raise RuntimeError("out of memory")
        return {"a": trial.params["x"], "b": float(trial.params["n"])}

    study = _study()
    study.optimize(fn, trials=6, workers=2)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.FAILED) == 3 and states.count(TrialState.COMPLETED) == 3
    failed = next(t for t in study.trials if t.state is TrialState.FAILED)
    assert "RuntimeError: out of memory" in failed.error


def test_thread_workers_run_concurrently():
    running, peak, lock = [0], [0], threading.Lock()

    def fn(trial):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return {"a": 0.0, "b": 0.0}

    study = _study()
    study.optimize(fn, trials=8, workers=4)
    assert len(study.completed()) == 8 and peak[0] == 4


def test_process_workers_with_a_picklable_objective():
    study = Study({"x": Float(0.0, 1.0)}, {"number": "max"}, sampler=Sobol(seed=0))
    study.optimize(operator.attrgetter("number"), trials=4, workers=2, processes=True)
    assert sorted(t.values["number"] for t in study.trials) == [0, 1, 2, 3]
    study.optimize(operator.attrgetter("missing"), trials=1, workers=1, processes=True)
    assert "AttributeError" in study.trials[-1].error


class _SetUpObjective:
    """Picklable; setup() runs once per worker process and stamps when it ended."""

    def __init__(self, stamp_dir, fail=False):
        self.stamp_dir, self.fail, self.pid = str(stamp_dir), fail, None

    def setup(self):
        if self.fail:
            raise OSError("no data on this host")
        time.sleep(0.5)
        self.pid = os.getpid()
        (Path(self.stamp_dir) / str(self.pid)).write_text(repr(time.time()))

    def __call__(self, trial):
        return {"number": float(self.pid == os.getpid()), "pid": float(os.getpid())}


def test_process_workers_set_up_the_objective_before_a_trial_starts(tmp_path):
    study = Study({"x": Float(0.0, 1.0)}, {"number": "max"}, sampler=Sobol(seed=0))
    study.optimize(_SetUpObjective(tmp_path), trials=4, workers=2, processes=True)
    assert [t.values["number"] for t in study.trials] == [1.0] * 4  # set up in its own process
    ready = {int(f.name): float(f.read_text()) for f in tmp_path.iterdir()}
    assert len(ready) == 2  # once per worker process
    # no trial's clock ran while its process started and set up
    assert all(t.started >= ready[int(t.values["pid"])] for t in study.trials)


class _SlowGarbage:
    """Freed only by the garbage collector (it is in a reference cycle); slow to free."""

    def __init__(self, stamp):
        self.stamp, self.me = stamp, self

    def __del__(self):
        time.sleep(0.3)
        Path(self.stamp).write_text(repr(time.time()))


def _leaves_slow_garbage(trial):
    gc.disable()  # in this worker process: only its cleanup's gc.collect() frees the cycle
    _SlowGarbage(f"{trial.params['stamps']}/{trial.number}")
    return {"number": float(trial.number)}


def test_a_worker_process_cleans_up_after_a_trial_before_the_next_starts(tmp_path):
    study = Study({"stamps": str(tmp_path)}, {"number": "max"}, sampler=Sobol(seed=0))
    study.optimize(_leaves_slow_garbage, trials=3, workers=1, processes=True)
    first, second, _ = study.trials
    freed = float((tmp_path / "0").read_text())  # the first trial's garbage, in its process
    assert first.finished <= freed <= second.started


class _ExitsWhenFreed:
    """Ends its process when the garbage collector frees it (a crash in a trial's cleanup)."""

    def __init__(self):
        self.me = self

    def __del__(self):
        os._exit(4)


def _dies(trial):
    if trial.number == 1:
        os._exit(3)  # as a segfault or the OOM killer would, mid-trial
    if trial.number == 2:
        gc.disable()  # in this worker process: only its cleanup's gc.collect() frees it
        _ExitsWhenFreed()  # after the result is sent, in the worker's cleanup
    return {"number": float(trial.number)}


def test_a_worker_process_that_dies_is_replaced_and_the_study_goes_on():
    study = Study({"x": Float(0.0, 1.0)}, {"number": "max"}, sampler=Sobol(seed=0))
    study.optimize(_dies, trials=5, workers=1, processes=True)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETED, TrialState.FAILED] + [TrialState.COMPLETED] * 3
    assert study.trials[1].error == "worker process died (exit code 3)"
    assert [t.values["number"] for t in study.trials if t.values] == [0.0, 2.0, 3.0, 4.0]


class _ExitsInSetup:
    def setup(self):
        os._exit(5)

    def __call__(self, trial):
        return {"number": 0.0}


def test_a_worker_process_that_dies_while_starting_stops_the_study_with_its_exit_code():
    study = Study({"x": Float(0.0, 1.0)}, {"number": "max"}, sampler=Sobol(seed=0))
    with pytest.raises(RuntimeError, match="exited with code 5 before saying so"):
        study.optimize(_ExitsInSetup(), trials=3, workers=1, processes=True)
    assert study.trials == []


def test_thread_workers_set_up_the_shared_objective_once(tmp_path):
    study = Study({"x": Float(0.0, 1.0)}, {"number": "max"}, sampler=Sobol(seed=0))
    study.optimize(_SetUpObjective(tmp_path), trials=4, workers=2, processes=False)
    assert [t.values["number"] for t in study.trials] == [1.0] * 4
    assert [f.name for f in tmp_path.iterdir()] == [str(os.getpid())]


def test_an_objective_that_cannot_be_set_up_stops_the_study_with_its_error(tmp_path):
    study = Study({"x": Float(0.0, 1.0)}, {"number": "max"}, sampler=Sobol(seed=0))
    with pytest.raises(RuntimeError, match=r"could not load the objective(.|\n)*no data on this"):
        study.optimize(_SetUpObjective(tmp_path, fail=True), trials=2, workers=1, processes=True)
    assert study.trials == []


def test_one_worker_per_gpu_through_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [worker_env(i, 2)["CUDA_VISIBLE_DEVICES"] for i in range(4)] == ["0", "1", "0", "1"]
    assert "CUDA_VISIBLE_DEVICES" not in worker_env(0, 0)
    # a parent limited to GPUs 2 and 3 (which it numbers 0 and 1) hands out 2 and 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert [worker_env(i, 2)["CUDA_VISIBLE_DEVICES"] for i in range(3)] == ["2", "3", "2"]


def test_pareto_front_hypervolume_and_constraints():
    study = Study({"x": Float(0.0, 1.0)}, {"a": "max", "b": "min"},
                  constraints={"c": (">=", 0.0)}, thresholds={"a": 0.0, "b": 4.0},
                  sampler=Random(0))  # fmt: skip
    points = [(1, 1, 0), (2, 2, 0), (3, 3, 0), (0.5, 3.5, 0), (5, 0, -1), (2, 3, 0)]
    for a, b, c in points:
        study.tell(study.ask(), {"a": a, "b": b, "c": c})
    front = sorted((t.values["a"], t.values["b"]) for t in study.pareto_front())
    assert front == [(1, 1), (2, 2), (3, 3)]  # (5, 0) breaks the constraint
    # staircase against (a=0, b=4): 1*3 + 1*2 + 1*1
    assert study.hypervolume() == pytest.approx(6.0)
    assert study.hypervolume({"a": 1.0, "b": 3.0}) == pytest.approx(1 * 1 + 1 * 0)


def test_best_trial_needs_one_objective():
    study = Study({"x": Float(-2.0, 2.0)}, {"y": "min"}, sampler=Sobol(seed=0))
    study.optimize(lambda t: (t.params["x"] - 1) ** 2, trials=16)
    best = min(study.trials, key=lambda t: t.values["y"])
    assert study.best_trial.number == best.number
    with pytest.raises(ValueError, match="pareto_front"):
        _study().best_trial  # noqa: B018


def test_enqueued_points_run_first_and_stale_trials_are_marked():
    study = _study()
    study.enqueue({"x": 0.25, "n": 3})
    assert study.trials[0].state is TrialState.PENDING
    assert study.ask().params == {"x": 0.25, "n": 3}
    trial = study.ask()
    trial.heartbeat = 0.0
    study.storage.update_trial(study.name, trial)
    assert study.mark_stale(older_than=60) == [1]
    assert study.trials[1].state is TrialState.STALE and study.trials[0].state.value == "running"


def _reporting_objective(trial):
    for step in (1, 2, 3):
        trial.report(step, {"number": float(trial.number) * step})
    return {"number": float(trial.number)}


def test_process_workers_relay_reports_to_the_pruner():
    from kiln.tune import SuccessiveHalving

    study = Study({"x": Float(0.0, 1.0)}, {"number": "min"}, sampler=Sobol(seed=0),
                  pruner=SuccessiveHalving(min_step=1, reduction=2))  # fmt: skip
    study.optimize(_reporting_objective, trials=4, workers=1, processes=True)
    states = [t.state for t in study.trials]
    # each later trial is worse than trial 0 at the first rung (step 1), with 2 trials there
    assert states == [TrialState.COMPLETED] + [TrialState.PRUNED] * 3
    assert study.trials[0].intermediate == {1: {"number": 0.0}, 2: {"number": 0.0},
                                            3: {"number": 0.0}}  # fmt: skip
    assert study.trials[3].intermediate == {1: {"number": 3.0}}


def test_stop_ends_the_run_once_it_holds_and_running_trials_finish():
    study = Study({"x": Float(0.0, 1.0)}, {"y": "min"}, sampler=Sobol(seed=0))
    asked = []

    def stop(s):
        asked.append(len(s.trials))
        return any(t.values.get("y", 1.0) < 0.3 for t in s.completed())

    study.optimize(lambda t: {"y": t.params["x"]}, trials=50, workers=1, stop=stop)
    ys = [t.values["y"] for t in study.trials]
    # one worker: it stops right after the first trial below 0.3, and asked before each trial
    assert min(ys) < 0.3 and all(y >= 0.3 for y in ys[:-1]) and len(ys) < 50
    assert asked == list(range(len(ys) + 1))
    study.optimize(lambda t: {"y": 0.0}, trials=3, stop=lambda s: True)
    assert len(study.trials) == len(ys)  # already met: nothing runs
