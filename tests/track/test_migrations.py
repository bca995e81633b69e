"""Opening a store upgrades an old database in place and keeps its data."""

from __future__ import annotations

import sqlalchemy as sa

from kiln.track import Store
from kiln.track._migrate import current_revision, head_revision, make_engine, upgrade
from kiln.track._url import resolve_url


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
    assert current_revision(store.engine) == head_revision() == "0002"
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
