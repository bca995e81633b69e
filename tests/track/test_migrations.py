"""Opening a store upgrades an old database in place and keeps its data."""

from __future__ import annotations

import json

import sqlalchemy as sa

from kiln.track import Store
from kiln.track._migrate import current_revision, head_revision, make_engine, upgrade
from kiln.track._url import resolve_url
from kiln.tune import Float, Sobol, Study


def test_upgrade_from_first_revision_keeps_data(store_url: str):
    engine = make_engine(resolve_url(store_url))
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO runs (name, status, config, system, pid, host, started_at, heartbeat_at,"
            " ended_at) VALUES ('old', 'finished', '{\"lr\": 0.1}', '{}', 1, 'h', 1.0, 2.0, 3.0)"
        ))  # fmt: skip
        conn.execute(sa.text("INSERT INTO metrics (run_id, key, step, value, wall_time) "
                             "VALUES (1, 'loss', 1, 0.5, 1.5)"))  # fmt: skip
    engine.dispose()
    store = Store(store_url)
    assert current_revision(store.engine) == head_revision() == "0003"
    old = store.get_run(1)
    assert (old.name, old.status, old.config, old.summary) == ("old", "finished", {"lr": 0.1}, {})
    assert store.metrics(1)["loss"].value == [0.5]
    assert store.artifacts(1) == []
    store.close()


def test_open_twice_is_a_no_op(store_url: str):
    Store(store_url).close()
    store = Store(store_url)
    assert current_revision(store.engine) == head_revision()
    store.close()


def _old_run(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO runs (name, status, config, system, summary, pid, host, started_at,"
            " heartbeat_at) VALUES ('old', 'finished', '{}', '{}', '{}', 1, 'h', 1.0, 2.0)"
        ))  # fmt: skip


def test_a_store_before_studies_upgrades_when_a_study_opens_it(store_url: str):
    engine = make_engine(resolve_url(store_url))
    upgrade(engine, "0002")
    _old_run(engine)
    engine.dispose()
    study = Study({"x": Float(0.0, 1.0)}, {"y": "min"}, sampler=Sobol(seed=0), storage=store_url,
                  name="s")  # fmt: skip
    study.optimize(lambda t: t.params["x"], trials=3)
    store = Store(store_url)
    assert current_revision(store.engine) == "0003"
    assert [r.name for r in store.runs()] == ["old"]  # the runs and the study share the store
    assert [t.values for t in Study.load("s", store).trials] == [t.values for t in study.trials]
    store.close()


# The tables kiln.tune made on its own before revision 0003, as it created them.
_OLD_TUNE_TABLES = [
    "CREATE TABLE kiln_tune_studies (name VARCHAR(255) NOT NULL PRIMARY KEY, config TEXT NOT NULL)",
    "CREATE TABLE kiln_tune_trials (study VARCHAR(255) NOT NULL REFERENCES kiln_tune_studies"
    " (name), number INTEGER NOT NULL, state VARCHAR(16) NOT NULL, record TEXT NOT NULL,"
    " PRIMARY KEY (study, number))",
]


def test_studies_in_the_old_tune_tables_move_into_the_store(store_url: str):
    engine = make_engine(resolve_url(store_url))
    upgrade(engine, "0002")
    _old_run(engine)
    before = Study({"x": Float(0.0, 1.0)}, {"y": "min"}, sampler=Sobol(seed=0), name="old")
    before.optimize(lambda t: t.params["x"], trials=2)
    running = before.ask()
    config = before.config()
    del config["stale_after"]  # studies saved before it existed
    with engine.begin() as conn:
        for ddl in _OLD_TUNE_TABLES:
            conn.execute(sa.text(ddl))
        conn.execute(sa.text("INSERT INTO kiln_tune_studies VALUES ('old', :c)"),
                     {"c": json.dumps(config)})  # fmt: skip
        insert = sa.text("INSERT INTO kiln_tune_trials VALUES ('old', :n, :s, :r)")
        for t in before.trials:
            conn.execute(insert, {"n": t.number, "s": t.state.value, "r": json.dumps(t.to_json())})
    engine.dispose()
    store = Store(store_url)
    assert current_revision(store.engine) == "0003"
    assert not sa.inspect(store.engine).has_table("kiln_tune_studies")
    assert [r.name for r in store.runs()] == ["old"]
    after = Study.load("old", store)
    assert after.stale_after == 300.0 and after.sampler.to_json() == before.sampler.to_json()
    assert [t.to_json() for t in after.trials] == [t.to_json() for t in before.trials]
    assert after.trials[running.number].state.value == "running"
    after.tell(running, 0.5)
    assert after.ask().params == before.ask().params  # resumes where it stopped
    store.close()
