"""`SQLStorage`: studies in the tracking store's database (a SQLite file or PostgreSQL URL).

The tables (`studies`, `trials`) belong to kiln.track's schema and migrations, so one store
holds runs and studies, and opening it upgrades both in one step.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, exc, func, insert, select, update

from kiln.track._migrate import make_engine, upgrade
from kiln.track._schema import StudyRow, TrialRow
from kiln.track._url import resolve_url
from kiln.tune._storage import BaseStorage
from kiln.tune._trial import Trial

if TYPE_CHECKING:
    from kiln.track import Store


class SQLStorage(BaseStorage):
    """Thread- and process-safe: trial numbers come from the (study, number) primary key, and a
    writer that loses the race for a number retries with the next one.

    `store`: a database URL or path (as `kiln.track.Store` takes), an Engine, or a `Store`."""

    def __init__(self, store: str | os.PathLike[str] | Engine | Store) -> None:
        from kiln.track import Store

        if isinstance(store, Store):
            self.engine = store.engine
        elif isinstance(store, Engine):
            self.engine = store
        else:
            self.engine = make_engine(resolve_url(store))
        self.url = self.engine.url.render_as_string(hide_password=True)
        self._lock = threading.Lock()  # SQLite allows one writer; serialise ours up front
        upgrade(self.engine)

    def create_study(self, name: str, config: dict[str, Any]) -> None:
        with self._lock, self.engine.begin() as db:
            if db.execute(select(StudyRow.name).where(StudyRow.name == name)).first():
                raise ValueError(f"A study named {name!r} already exists in {self.url}.")
            db.execute(insert(StudyRow).values(name=name, config=config, created_at=time.time()))

    def load_study(self, name: str) -> dict[str, Any]:
        with self.engine.connect() as db:
            row = db.execute(select(StudyRow.config).where(StudyRow.name == name)).first()
        if row is None:
            raise KeyError(f"No study named {name!r} in {self.url}. Known: {self.study_names()}")
        return row[0]

    def study_names(self) -> list[str]:
        with self.engine.connect() as db:
            return sorted(db.execute(select(StudyRow.name)).scalars())

    def create_trial(self, study: str, trial: Trial) -> int:
        self.load_study(study)
        for _ in range(100):
            try:
                with self._lock, self.engine.begin() as db:
                    last = db.execute(
                        select(func.max(TrialRow.number)).where(TrialRow.study == study)
                    ).scalar()
                    trial.number = 0 if last is None else last + 1
                    db.execute(insert(TrialRow).values(study=study, number=trial.number,
                                                       **self._columns(trial)))  # fmt: skip
                return trial.number
            except exc.IntegrityError:
                continue  # another process took this number
        raise RuntimeError(f"Could not allocate a trial number in study {study!r}.")

    def update_trial(self, study: str, trial: Trial) -> None:
        with self._lock, self.engine.begin() as db:
            done = db.execute(
                update(TrialRow)
                .where(TrialRow.study == study, TrialRow.number == trial.number)
                .values(**self._columns(trial))
            )
        if done.rowcount != 1:
            raise KeyError(f"Study {study!r} has no trial {trial.number}.")

    def heartbeat(self, study: str, numbers: list[int], when: float) -> None:
        with self._lock, self.engine.begin() as db:
            done = db.execute(
                update(TrialRow)
                .where(TrialRow.study == study, TrialRow.number.in_(numbers))
                .values(heartbeat_at=when)
            )
        if done.rowcount != len(set(numbers)):
            raise KeyError(f"Study {study!r} lacks some of the trials {sorted(numbers)}.")

    def trials(self, study: str) -> list[Trial]:
        query = (select(TrialRow.record, TrialRow.state, TrialRow.heartbeat_at)
                 .where(TrialRow.study == study).order_by(TrialRow.number))  # fmt: skip
        with self.engine.connect() as db:
            rows = db.execute(query).all()
        if not rows:
            self.load_study(study)  # raises KeyError for an unknown study
        return [Trial.from_json({**json.loads(record), "state": state, "heartbeat": beat})
                for record, state, beat in rows]  # fmt: skip

    @staticmethod
    def _columns(trial: Trial) -> dict[str, Any]:
        return {"state": trial.state.value, "heartbeat_at": trial.heartbeat,
                "record": json.dumps(trial.to_json())}  # fmt: skip
