"""kiln.tune.connect against a real server (uvicorn on a free port, in a thread): workers over
HTTP share one study with the in-process Study on the same store."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from kiln._serving import serving
from kiln.server import create_app
from kiln.track import Store
from kiln.tune import Float, Int, Sobol, Study, SuccessiveHalving, TrialState, connect

SPACE = {"x": Float(0.0, 1.0), "n": Int(1, 4)}


def _serve(store: Store, token_required: bool = False) -> contextlib.AbstractContextManager[str]:
    return serving(create_app(store, token_required=token_required))


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "kiln.db")


@pytest.fixture
def url(store: Store) -> Iterator[str]:
    with _serve(store) as url:
        yield url


def _values(trial) -> dict[str, float]:
    time.sleep(0.02)  # the two workers overlap
    x, n = trial.params["x"], trial.params["n"]
    return {"a": x * n, "b": (x - 0.5) ** 2 + n / 4, "c": 0.5 - x * (n == 4)}


def test_two_workers_over_http_share_one_study(url: str, store: Store):
    remote = connect(url).create_study(
        SPACE, {"a": "max", "b": "min"}, name="e2e", constraints={"c": (">=", 0.0)},
        sampler=Sobol(seed=3),
    )  # fmt: skip
    workers = [threading.Thread(target=connect(url).study("e2e").optimize, args=(_values, 6))
               for _ in range(2)]  # fmt: skip
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    study = Study.load("e2e", storage=store.url)  # the same study, in process
    trials = study.trials
    assert [t.number for t in trials] == list(range(12))
    assert all(t.state is TrialState.COMPLETED for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 12  # no duplicates
    front = remote.pareto_front()
    assert [(t.number, t.values) for t in front] == [(t.number, t.values)
                                                     for t in study.pareto_front()]  # fmt: skip
    assert remote.hypervolume() == pytest.approx(study.hypervolume())
    assert remote.hypervolume_history() == pytest.approx(study.hypervolume_history())
    assert [t.to_json() for t in remote.trials] == [t.to_json() for t in trials]


def test_simultaneous_asks_never_get_the_same_point(url: str, store: Store):
    connect(url).create_study(SPACE, {"a": "max"}, name="burst", sampler=Sobol(seed=0))
    start, asked = threading.Barrier(12), []

    def ask() -> None:
        study = connect(url).study("burst")
        start.wait()
        asked.append(study.ask())

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(t.number for t in asked) == list(range(12))
    assert len({tuple(sorted(t.params.items())) for t in asked}) == 12
    local = Study(SPACE, {"a": "max"}, sampler=Sobol(seed=0))  # the same points, one at a time
    expected = {t.number: t.params for t in local.ask(12)}
    assert {t.number: t.params for t in asked} == expected


def test_remote_heartbeats_keep_a_long_trial_running(url: str, store: Store):
    remote = connect(url).create_study(SPACE, {"a": "max"}, name="long", sampler=Sobol(seed=0),
                                       stale_after=0.4)  # fmt: skip
    seen = []

    def fn(trial):
        time.sleep(1.0)  # longer than stale_after, without a report
        seen.append(Study.load("long", storage=store.url).trials[trial.number].state)
        return trial.params["x"]

    remote.optimize(fn, trials=1)
    assert seen == [TrialState.RUNNING]
    dead = remote.ask()  # no worker sends its heartbeats
    time.sleep(0.5)
    assert [t.state for t in remote.trials] == [TrialState.COMPLETED, TrialState.STALE]
    assert remote.tell(dead, 0.5).state is TrialState.COMPLETED  # late, but still counted


def _reports(trial):
    for step in (1, 2, 3):
        trial.report(step, {"a": float(trial.number) * step})
    if trial.number == 0:
        return "not a dict"
    return {"a": float(trial.number)}


def test_reports_pruning_and_failures_over_http(url: str, store: Store):
    remote = connect(url).create_study(
        SPACE, {"a": "min"}, name="prune", sampler=Sobol(seed=0),
        pruner=SuccessiveHalving(min_step=1, reduction=2),
    )  # fmt: skip
    remote.optimize(_reports, trials=3, workers=1, processes=True)  # a child process relays
    trials = Study.load("prune", storage=store.url).trials
    assert [t.state for t in trials] == [TrialState.FAILED] + [TrialState.PRUNED] * 2
    assert "must return a dict" in trials[0].error and "'not a dict'" in trials[0].error
    assert trials[0].intermediate == {1: {"a": 0.0}, 2: {"a": 0.0}, 3: {"a": 0.0}}
    assert trials[1].intermediate == {1: {"a": 1.0}}  # worse than trial 0 at the first rung

    def boom(trial):
        raise RuntimeError("out of memory")

    remote.optimize(boom, trials=1)
    assert "RuntimeError: out of memory" in remote.trials[-1].error


def test_client_errors_are_the_exceptions_a_local_study_raises(url: str, store: Store):
    client = connect(url)
    with pytest.raises(KeyError, match="no experiment 'nope'"):
        client.study("nope")
    client.create_study(SPACE, {"a": "max"}, name="once", sampler=Sobol(seed=0))
    with pytest.raises(ValueError, match="'once' already exists"):
        client.create_study(SPACE, {"a": "max"}, name="once")
    with pytest.raises(ValueError, match="a='best'"):
        client.create_study(SPACE, {"a": "best"}, name="bad")
    assert client.studies() == ["once"]
    with pytest.raises(ValueError, match="http:// or https://"):
        connect("localhost:8765")
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(ConnectionError, match=r"no kiln server answers .* \(waited 0.2 s\)"):
        connect(closed, wait=0.2)


def test_a_token_is_sent(store: Store):
    token = store.create_token("worker")
    with _serve(store, token_required=True) as url:
        with pytest.raises(PermissionError, match="401"):
            connect(url).studies()
        client = connect(url, token=token)
        client.create_study(SPACE, {"a": "max"}, name="t", sampler=Sobol(seed=0))
        assert client.study("t").ask().number == 0
