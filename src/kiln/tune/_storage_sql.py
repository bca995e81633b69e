"""`SQLStorage`: studies in a database through SQLAlchemy (SQLite file or PostgreSQL URL).

Self-contained on purpose: two tables prefixed `kiln_tune_`, created if missing, so the same
database URL can hold kiln.track's tables too.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import sqlalchemy as sa

from kiln.tune._storage import BaseStorage
from kiln.tune._trial import Trial

_meta = sa.MetaData()
_studies = sa.Table(
    "kiln_tune_studies", _meta,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("config", sa.Text, nullable=False),
)  # fmt: skip
_trials = sa.Table(
    "kiln_tune_trials", _meta,
    sa.Column("study", sa.String(255), sa.ForeignKey("kiln_tune_studies.name"), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("record", sa.Text, nullable=False),
)  # fmt: skip


class SQLStorage(BaseStorage):
    """Thread- and process-safe: trial numbers come from the (study, number) primary key, and a
    writer that loses the race for a number retries with the next one."""

    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.url = url
        self.engine = sa.create_engine(url, **kwargs)
        self._lock = threading.Lock()  # SQLite allows one writer; serialise ours up front
        _meta.create_all(self.engine)

    def create_study(self, name: str, config: dict[str, Any]) -> None:
        with self._lock, self.engine.begin() as db:
            if db.execute(sa.select(_studies.c.name).where(_studies.c.name == name)).first():
                raise ValueError(f"A study named {name!r} already exists in {self.url}.")
            db.execute(_studies.insert().values(name=name, config=json.dumps(config)))

    def load_study(self, name: str) -> dict[str, Any]:
        with self.engine.connect() as db:
            row = db.execute(sa.select(_studies.c.config).where(_studies.c.name == name)).first()
        if row is None:
            raise KeyError(f"No study named {name!r} in {self.url}. Known: {self.study_names()}")
        return json.loads(row[0])

    def study_names(self) -> list[str]:
        with self.engine.connect() as db:
            return sorted(r[0] for r in db.execute(sa.select(_studies.c.name)))

    def create_trial(self, study: str, trial: Trial) -> int:
        self.load_study(study)
        for _ in range(100):
            try:
                with self._lock, self.engine.begin() as db:
                    last = db.execute(
                        sa.select(sa.func.max(_trials.c.number)).where(_trials.c.study == study)
                    ).scalar()
                    trial.number = 0 if last is None else last + 1
                    db.execute(_trials.insert().values(
                        study=study, number=trial.number, state=trial.state.value,
                        record=json.dumps(trial.to_json())))  # fmt: skip
                return trial.number
            except sa.exc.IntegrityError:
                continue  # another process took this number
        raise RuntimeError(f"Could not allocate a trial number in study {study!r}.")

    def update_trial(self, study: str, trial: Trial) -> None:
        with self._lock, self.engine.begin() as db:
            done = db.execute(
                _trials.update()
                .where(_trials.c.study == study, _trials.c.number == trial.number)
                .values(state=trial.state.value, record=json.dumps(trial.to_json()))
            )
        if done.rowcount != 1:
            raise KeyError(f"Study {study!r} has no trial {trial.number}.")

    def trials(self, study: str) -> list[Trial]:
        with self.engine.connect() as db:
            rows = db.execute(
                sa.select(_trials.c.record)
                .where(_trials.c.study == study)
                .order_by(_trials.c.number)
            ).all()
        if not rows:
            self.load_study(study)  # raises KeyError for an unknown study
        return [Trial.from_json(json.loads(r[0])) for r in rows]
