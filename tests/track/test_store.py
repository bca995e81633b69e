"""The store's contract, on SQLite and PostgreSQL: runs, metrics, downsampling, artifacts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kiln.track import RunNotFoundError, Store


def test_run_round_trip(store: Store):
    with store.create_run("lenet5", config={"lr": 1e-3, "layers": [6, 16], "opt": object}) as run:
        run.log_metrics({"loss": 2.0, "accuracy": 0.1}, step=1, epoch=0)
        run.log_metrics({"loss": 1.0, "accuracy": 0.5}, step=2, epoch=0)
    info = store.get_run(run.id)
    assert info.name == "lenet5" and info.status == "finished" and info.ended_at is not None
    assert info.config["lr"] == 1e-3 and info.config["layers"] == [6, 16]
    assert info.config["opt"].startswith("<class")  # not JSON: kept as its str
    assert info.summary == {"loss": 1.0, "accuracy": 0.5}
    series = store.metrics(run.id)
    assert sorted(series) == ["accuracy", "loss"]
    assert series["loss"].step == [1, 2] and series["loss"].value == [2.0, 1.0]
    assert series["loss"].epoch == [0, 0] and series["loss"].total == 2


def test_non_finite_values_read_as_none(store: Store):
    run = store.create_run("nan")
    run.log_metrics({"loss": math.nan}, step=1)
    run.log_metrics({"loss": math.inf}, step=2)
    run.finish()
    assert store.metrics(run.id, ["loss"])["loss"].value == [None, None]


def test_failed_run_keeps_its_error(store: Store):
    with pytest.raises(ZeroDivisionError), store.create_run("bad") as run:
        1 / 0  # noqa: B018
    info = store.get_run(run.id)
    assert info.status == "failed" and "ZeroDivisionError" in (info.error or "")


def test_runs_filter_and_sort(store: Store):
    for name, loss in [("a-small", 0.3), ("b-big", 0.1), ("c-small", 0.2)]:
        with store.create_run(name) as run:
            run.log_metrics({"loss": loss}, step=1)
    running = store.create_run("d-running")
    assert [r.name for r in store.runs()] == ["d-running", "c-small", "b-big", "a-small"]
    assert [r.name for r in store.runs(sort="name")] == ["a-small", "b-big", "c-small",
                                                         "d-running"]  # fmt: skip
    assert [r.name for r in store.runs(sort="loss")] == ["b-big", "c-small", "a-small",
                                                         "d-running"]  # fmt: skip
    assert [r.name for r in store.runs(name="small", sort="-loss")] == ["a-small", "c-small"]
    assert [r.name for r in store.runs(status="running")] == ["d-running"]
    assert len(store.runs(limit=2)) == 2
    running.finish()
    with pytest.raises(ValueError, match="status must be one of"):
        store.runs(status="done")


def test_unknown_run(store: Store):
    with pytest.raises(RunNotFoundError, match="no run with id 999"):
        store.get_run(999)
    with pytest.raises(RunNotFoundError):
        store.metrics(999)
    with pytest.raises(RunNotFoundError):
        store.set_status(999, "finished")


def test_downsampling_keeps_each_buckets_extrema(store: Store):
    rng = np.random.default_rng(0)
    values = rng.normal(size=10_000)
    values[4321] = 50.0  # a spike that stride sampling would miss
    run = store.create_run("long")
    for start in range(0, 10_000, 2_500):
        for i in range(start, start + 2_500):
            run.log_metrics({"loss": values[i]}, step=i + 1)
    run.finish()
    full = store.metrics(run.id, ["loss"])["loss"]
    assert full.total == 10_000 and len(full.step) == 10_000
    down = store.metrics(run.id, ["loss"], downsample=200)["loss"]
    assert down.total == 10_000 and len(down.step) <= 200
    assert down.step == sorted(down.step)
    buckets = (np.arange(10_000) * 100) // 10_000  # the oracle: same buckets, numpy min/max
    expected = sorted({int(np.argmin(np.where(buckets == b, values, np.inf))) + 1 for b in
                       range(100)} | {int(np.argmax(np.where(buckets == b, values, -np.inf)))
                                      + 1 for b in range(100)})  # fmt: skip
    assert down.step == expected
    assert max(v for v in down.value if v is not None) == 50.0
    with pytest.raises(ValueError, match="at least 2"):
        store.metrics(run.id, ["loss"], downsample=1)


def test_artifacts(store: Store, tmp_path):
    run = store.create_run("art")
    file = tmp_path / "weights.kiln"
    file.write_bytes(b"\x00" * 1000)
    info = run.log_artifact(file)
    run.log_artifact(b"\x89PNG fake", name="samples/digit.png")
    assert info.size == 1000 and info.name == "weights.kiln"
    names = [(a.name, a.media_type) for a in store.artifacts(run.id)]
    assert names == [("samples/digit.png", "image/png"), ("weights.kiln",
                                                          "application/octet-stream")]  # fmt: skip
    assert store.artifact_path(run.id, "samples/digit.png").read_bytes() == b"\x89PNG fake"
    with pytest.raises(FileNotFoundError, match="no artifact named"):
        store.artifact_path(run.id, "missing.txt")
    with pytest.raises(ValueError, match="relative path without"):
        run.log_artifact(b"x", name="../escape")
    run.finish()


def test_tokens_are_stored_hashed(store: Store):
    token = store.create_token("ci")
    assert store.verify_token(token) and not store.verify_token(token + "x")
    with store.engine.connect() as conn:
        import sqlalchemy as sa

        stored = conn.execute(sa.text("SELECT sha256 FROM tokens")).scalars().all()
    assert token not in stored and len(stored[0]) == 64


def test_store_down_mid_run_loses_nothing(store: Store):
    from kiln.track._migrate import make_engine

    run = store.create_run("flaky")
    run.log_metrics({"loss": 1.0}, step=1)
    assert run.flush(10)
    working, store.engine = store.engine, make_engine("sqlite:////nonexistent/dir/kiln.db")
    with pytest.warns(RuntimeWarning, match="cannot write to the store"):
        for step in range(2, 102):
            run.log_metrics({"loss": 1.0 / step}, step=step)  # returns at once, store or not
        assert not run.flush(1.0)
    store.engine = working
    assert run.flush(20)
    run.finish()
    assert store.metrics(run.id, ["loss"])["loss"].step == list(range(1, 102))
    assert store.get_run(run.id).status == "finished"


def test_delete_run_removes_its_metrics_and_files(store: Store):
    keep, gone = store.create_run("keep"), store.create_run("gone")
    for run in (keep, gone):
        run.log_metrics({"loss": 1.0}, step=1)
        run.log_artifact(b"x", name="a.txt")
        run.finish()
    folder = store.artifact_path(gone.id, "a.txt").parent
    store.delete_run(gone.id)
    assert [r.name for r in store.runs()] == ["keep"] and not folder.exists()
    assert store.metrics(keep.id)["loss"].value == [1.0]
    with pytest.raises(RunNotFoundError):
        store.metrics(gone.id)
