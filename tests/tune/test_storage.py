"""The storage contract (kiln.tune.BaseStorage's docstring) against every storage, and a study
saved to a file resuming exactly."""

import threading

import pytest

from kiln.track import Store
from kiln.tune import Float, InMemoryStorage, Int, Random, Sobol, Study, SuccessiveHalving, Trial
from kiln.tune._storage_sql import SQLStorage

from ..track.conftest import new_database, postgres_url  # noqa: F401 (a fixture)
from .conftest import fast_bayes


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def storage(request, tmp_path):
    if request.param == "memory":
        return InMemoryStorage()
    if request.param == "sqlite":
        return SQLStorage(f"sqlite:///{tmp_path / 'tune.db'}")
    return SQLStorage(new_database(request.getfixturevalue("postgres_url")))


def test_studies_are_created_once_and_loaded_by_name(storage):
    storage.create_study("s", {"a": [1, 2]})
    assert storage.load_study("s") == {"a": [1, 2]} and storage.study_names() == ["s"]
    with pytest.raises(ValueError, match="'s' already exists"):
        storage.create_study("s", {})
    with pytest.raises(KeyError, match="'nope'"):
        storage.load_study("nope")
    with pytest.raises(KeyError, match="'nope'"):
        storage.trials("nope")


def test_trial_numbers_are_dense_under_threads(storage):
    storage.create_study("s", {})

    def add():
        for _ in range(10):
            storage.create_trial("s", Trial(-1, {"x": 1.0}))

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [t.number for t in storage.trials("s")] == list(range(40))


def test_reads_are_copies_and_updates_persist(storage):
    storage.create_study("s", {})
    trial = Trial(-1, {"x": 1.0})
    storage.create_trial("s", trial)
    trial.values, trial.intermediate = {"a": 2.0}, {3: {"a": 1.5}}
    storage.update_trial("s", trial)
    read = storage.trials("s")[0]
    assert read.values == {"a": 2.0} and read.intermediate == {3: {"a": 1.5}}
    read.params["x"] = 9.0
    assert storage.trials("s")[0].params == {"x": 1.0}
    with pytest.raises(KeyError):
        storage.update_trial("s", Trial(7, {}))


def test_heartbeats_set_one_number(storage):
    storage.create_study("s", {})
    trials = [Trial(-1, {"x": float(i)}, heartbeat=1.0) for i in range(3)]
    for t in trials:
        storage.create_trial("s", t)
    storage.heartbeat("s", [0, 2], 5.0)
    assert [t.heartbeat for t in storage.trials("s")] == [5.0, 1.0, 5.0]
    trials[0].values = {"a": 1.0}
    trials[0].heartbeat = 6.0
    storage.update_trial("s", trials[0])
    assert storage.trials("s")[0].heartbeat == 6.0 and storage.trials("s")[0].values == {"a": 1.0}
    with pytest.raises(KeyError, match="'s'"):
        storage.heartbeat("s", [1, 3], 7.0)


def test_studies_and_runs_share_one_store(tmp_path):
    store = Store(tmp_path / "kiln.db")
    store.create_run("r").finish()
    study = Study({"x": Float(0.0, 1.0)}, {"y": "min"}, sampler=Sobol(seed=0), storage=store,
                  name="s")  # fmt: skip
    study.optimize(lambda t: t.params["x"], trials=2)
    again = Study.load("s", storage=str(tmp_path / "kiln.db"))  # a plain path is the same store
    assert [t.values for t in again.trials] == [t.values for t in study.trials]
    assert [r.name for r in Store(tmp_path / "kiln.db").runs()] == ["r"]


@pytest.mark.parametrize("sampler", [lambda: Random(seed=3), lambda: Sobol(seed=3),
                                     lambda: fast_bayes(seed=3, n_startup=3)])  # fmt: skip
def test_a_loaded_study_resumes_exactly(tmp_path, sampler):
    def fn(trial):
        return {"a": trial.params["x"] * trial.params["n"], "b": (trial.params["x"] - 0.5) ** 2}

    def new(url: str) -> Study:
        return Study({"x": Float(0.0, 1.0), "n": Int(1, 4)}, {"a": "max", "b": "min"},
                     thresholds={"a": 0.0, "b": 1.0}, sampler=sampler(),
                     pruner=SuccessiveHalving(2, 3), storage=url, name="resume")  # fmt: skip

    whole = new(f"sqlite:///{tmp_path / 'whole.db'}")
    whole.optimize(fn, trials=5)
    url = f"sqlite:///{tmp_path / 'parts.db'}"
    new(url).optimize(fn, trials=3)
    resumed = Study.load("resume", storage=url)
    assert resumed.pruner.to_json() == {"type": "SuccessiveHalving", "min_step": 2, "reduction": 3}
    assert resumed.sampler.to_json() == whole.sampler.to_json()
    resumed.optimize(fn, trials=2)
    assert [t.params for t in resumed.trials] == [t.params for t in whole.trials]
    assert resumed.hypervolume() == pytest.approx(whole.hypervolume())


def test_a_loaded_study_starts_its_gp_fits_where_the_stored_trials_left_them(tmp_path, monkeypatch):
    # from the 4th trial on, each fit starts from the hyperparameters the last suggestion
    # stored on its trial; a study loaded after model-based trials fits exactly as the whole one
    from kiln.tune import _acquisition, _bayes

    monkeypatch.setattr(_bayes, "WARM_START_FROM", 4)
    starts = []
    fit_gps = _acquisition.fit_gps

    def recorded(x, y, start=None):
        starts.append(start)
        return fit_gps(x, y, start)

    monkeypatch.setattr(_acquisition, "fit_gps", recorded)

    def fn(trial):
        return {"a": trial.params["x"] * trial.params["n"], "b": (trial.params["x"] - 0.5) ** 2}

    def new(url: str) -> Study:
        return Study({"x": Float(0.0, 1.0), "n": Int(1, 4)}, {"a": "max", "b": "min"},
                     thresholds={"a": 0.0, "b": 1.0}, sampler=fast_bayes(seed=3, n_startup=3),
                     storage=url, name="warm")  # fmt: skip

    whole = new(f"sqlite:///{tmp_path / 'whole.db'}")
    whole.optimize(fn, trials=7)
    assert starts[:1] == [None]  # trial 3: 3 completed trials, a fit from the defaults
    stored = [t.system.get("bayes_gp") for t in whole.trials]
    assert stored[:3] == [None] * 3 and all(s is not None for s in stored[3:])
    assert starts[1:] == [stored[3], stored[4], stored[5]]  # each from the trial before it
    url = f"sqlite:///{tmp_path / 'parts.db'}"
    new(url).optimize(fn, trials=5)
    resumed = Study.load("warm", storage=url)
    assert resumed.trials[4].system == whole.trials[4].system  # kept by the storage
    resumed.optimize(fn, trials=2)
    assert [t.params for t in resumed.trials] == [t.params for t in whole.trials]
