"""Where studies live: the `BaseStorage` contract, and `InMemoryStorage`."""

from __future__ import annotations

import copy
import threading
from typing import TYPE_CHECKING, Any

from kiln.tune._trial import Trial

if TYPE_CHECKING:
    from kiln.track import Store


class BaseStorage:
    """Keeps study configurations and trial records; `Study` is its only caller.

    Contract (one shared test suite, tests/tune/test_storage.py, runs against every storage):
    - Thread-safe: any method may be called from several threads at once. Storages backed by a
      database are also process-safe: several processes (or hosts) may share one study.
    - `create_trial` assigns trial numbers 0, 1, 2, ... without gaps or repeats, atomically.
    - Reads return copies: mutating a returned object never changes what is stored.
    - `create_study` raises `ValueError` if the name exists; `load_study` and the trial methods
      raise `KeyError` naming the study (or trial) when it does not exist.
    - Values are JSON-compatible (the configuration) or `Trial` records (their JSON form).
    """

    def create_study(self, name: str, config: dict[str, Any]) -> None:
        raise NotImplementedError

    def load_study(self, name: str) -> dict[str, Any]:
        raise NotImplementedError

    def study_names(self) -> list[str]:
        raise NotImplementedError

    def create_trial(self, study: str, trial: Trial) -> int:
        """Store `trial` under the next free number, which it returns (and sets on `trial`)."""
        raise NotImplementedError

    def update_trial(self, study: str, trial: Trial) -> None:
        raise NotImplementedError

    def heartbeat(self, study: str, numbers: list[int], when: float) -> None:
        """Set the `heartbeat` of trials `numbers` to `when` (UNIX seconds), nothing else."""
        raise NotImplementedError

    def trials(self, study: str) -> list[Trial]:
        """Every trial of the study, ordered by number."""
        raise NotImplementedError


class InMemoryStorage(BaseStorage):
    """A dict behind a lock: fast, shared by the threads of one process, gone when it ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._studies: dict[str, dict[str, Any]] = {}
        self._trials: dict[str, list[dict[str, Any]]] = {}

    def create_study(self, name: str, config: dict[str, Any]) -> None:
        with self._lock:
            if name in self._studies:
                raise ValueError(f"A study named {name!r} already exists in this storage.")
            self._studies[name] = copy.deepcopy(config)
            self._trials[name] = []

    def load_study(self, name: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._get(name))

    def study_names(self) -> list[str]:
        with self._lock:
            return sorted(self._studies)

    def create_trial(self, study: str, trial: Trial) -> int:
        with self._lock:
            self._get(study)
            trial.number = len(self._trials[study])
            self._trials[study].append(trial.to_json())
            return trial.number

    def update_trial(self, study: str, trial: Trial) -> None:
        with self._lock:
            self._get(study)
            if not 0 <= trial.number < len(self._trials[study]):
                raise KeyError(f"Study {study!r} has no trial {trial.number}.")
            self._trials[study][trial.number] = trial.to_json()

    def heartbeat(self, study: str, numbers: list[int], when: float) -> None:
        with self._lock:
            self._get(study)
            if missing := [n for n in numbers if not 0 <= n < len(self._trials[study])]:
                raise KeyError(f"Study {study!r} has no trials {missing}.")
            for n in numbers:
                self._trials[study][n]["heartbeat"] = when

    def trials(self, study: str) -> list[Trial]:
        with self._lock:
            self._get(study)
            return [Trial.from_json(copy.deepcopy(t)) for t in self._trials[study]]

    def _get(self, name: str) -> dict[str, Any]:
        if name not in self._studies:
            raise KeyError(f"No study named {name!r}. Known: {sorted(self._studies)}")
        return self._studies[name]


def make_storage(storage: BaseStorage | str | Store | None) -> BaseStorage:
    """`None` is in memory; a string is a database URL ("sqlite:///kiln.db") or a SQLite path,
    and a `kiln.track.Store` is that store's database: studies live next to its runs."""
    if storage is None:
        return InMemoryStorage()
    if isinstance(storage, BaseStorage):
        return storage
    from kiln.track import Store

    if isinstance(storage, str | Store):
        from kiln.tune._storage_sql import SQLStorage

        return SQLStorage(storage)
    raise TypeError("storage must be a BaseStorage, a database URL, a kiln.track.Store or None. "
                    f"Received: {storage!r}")  # fmt: skip
