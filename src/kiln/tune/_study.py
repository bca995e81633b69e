"""`Study`: a search space, objectives and constraints, and the trials that explore them."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from kiln.tune._json import build
from kiln.tune._pareto import hypervolume, pareto_mask
from kiln.tune._pruner import BasePruner, SuccessiveHalving
from kiln.tune._sampler import BaseSampler, Random, Sobol
from kiln.tune._space import LinearConstraint, Space
from kiln.tune._storage import BaseStorage, make_storage
from kiln.tune._trial import Trial, TrialPruned, TrialState

if TYPE_CHECKING:
    from kiln.track import Store

_DIRECTIONS = ("max", "min")
_OPS = ("<=", ">=")


def _sampler_from_json(data: Mapping[str, Any]) -> BaseSampler:
    from kiln.tune._bayes import Bayes

    return build({"Random": Random, "Sobol": Sobol, "Bayes": Bayes}, data, "sampler")


class Study:
    """Optimize up to a few objectives over a search space.

    >>> from kiln.tune import Float, Random
    >>> study = Study({"x": Float(-2.0, 2.0)}, {"y": "min"}, sampler=Random(seed=0))
    >>> study.optimize(lambda t: {"y": t.params["x"] ** 2}, trials=20)
    >>> round(study.best_trial.params["x"], 1) == 0.0 or study.best_trial.values["y"] < 0.2
    True

    - `objectives`: `{metric: "max" | "min"}`; several give a Pareto front.
    - `constraints`: `{metric: ("<=" | ">=", bound)}`; a trial is feasible when all hold.
    - `thresholds`: `{objective: value}`, the worst value worth having; the reference point of
      the hypervolume, and the part of the front the Bayes sampler focuses on.
    - Any other metric the objective function returns is stored with the trial.
    - `storage`: None (in memory), a `BaseStorage`, a database URL ("sqlite:///kiln.db"), or a
      `kiln.track.Store` (the study then lives in the tracking store, next to its runs).
    - `stale_after`: seconds without a heartbeat after which a running trial reads as stale (its
      worker died or hung): it stops holding its point, and stays listed. `optimize` and
      `kiln.tune.connect` workers send heartbeats on their own; `trial.report` is one too.
    """

    def __init__(
        self,
        space: Space | Mapping[str, Any],
        objectives: Mapping[str, str],
        *,
        constraints: Mapping[str, tuple[str, float]] | None = None,
        thresholds: Mapping[str, float] | None = None,
        linear_constraints: list[LinearConstraint | tuple] | None = None,
        sampler: BaseSampler | None = None,
        pruner: BasePruner | None = None,
        storage: BaseStorage | str | Store | None = None,
        name: str | None = None,
        stale_after: float = 300.0,
        _create: bool = True,
    ) -> None:
        if not isinstance(space, Space):
            space = Space(space, linear_constraints or ())
        elif linear_constraints:
            raise ValueError("Pass linear_constraints to Space(...) or to Study, not both.")
        self.space = space
        self.objectives = self._check_objectives(objectives)
        self.constraints = self._check_constraints(constraints or {})
        self.thresholds = {k: float(v) for k, v in (thresholds or {}).items()}
        if unknown := set(self.thresholds) - set(self.objectives):
            raise ValueError(f"thresholds must name objectives {list(self.objectives)}. "
                             f"Received: {sorted(unknown)}")  # fmt: skip
        if sampler is None:
            from kiln.tune._bayes import Bayes

            sampler = Bayes()
        if not (isinstance(stale_after, int | float) and stale_after > 0):
            raise ValueError("stale_after must be a positive number of seconds. "
                             f"Received: stale_after={stale_after!r}")  # fmt: skip
        self.stale_after = float(stale_after)
        self.sampler, self.pruner = sampler, pruner
        self.storage = make_storage(storage)
        self.name = name or f"study-{uuid.uuid4().hex[:8]}"
        self._lock = threading.RLock()
        if _create:
            self.storage.create_study(self.name, self.config())

    @staticmethod
    def _check_objectives(objectives: Mapping[str, str]) -> dict[str, str]:
        if isinstance(objectives, str) or not objectives:
            raise ValueError(
                f'objectives must be a dict like {{"accuracy": "max"}}. Received: {objectives!r}'
            )
        for name, d in objectives.items():
            if d not in _DIRECTIONS:
                raise ValueError(f"Objective directions are 'max' or 'min'. Received: {name}={d!r}")
        return dict(objectives)

    @staticmethod
    def _check_constraints(constraints: Mapping[str, Any]) -> dict[str, tuple[str, float]]:
        out = {}
        for name, rule in constraints.items():
            ok = isinstance(rule, tuple | list) and len(rule) == 2 and rule[0] in _OPS
            if not ok or not isinstance(rule[1], int | float):
                raise ValueError(
                    f'A constraint is (op, bound) with op "<=" or ">=", e.g. '
                    f'{{"params": ("<=", 1e6)}}. Received: {name}={rule!r}'
                )
            out[name] = (str(rule[0]), float(rule[1]))
        return out

    def config(self) -> dict[str, Any]:
        return {
            "space": self.space.to_json(),
            "objectives": self.objectives,
            "constraints": {k: list(v) for k, v in self.constraints.items()},
            "thresholds": self.thresholds,
            "sampler": self.sampler.to_json(),
            "pruner": self.pruner.to_json() if self.pruner else None,
            "stale_after": self.stale_after,
        }

    @classmethod
    def load(
        cls,
        name: str,
        storage: BaseStorage | str | Store,
        *,
        sampler: BaseSampler | None = None,
        pruner: BasePruner | None = None,
    ) -> Study:
        """The study `name` from `storage`, with its sampler and pruner as saved (or those
        given): asking it for trials continues exactly where the saved one stopped."""
        storage = make_storage(storage)
        return cls.from_config(storage.load_study(name), storage=storage, name=name,
                               sampler=sampler, pruner=pruner, _create=False)  # fmt: skip

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        storage: BaseStorage | str | Store | None = None,
        name: str | None = None,
        sampler: BaseSampler | None = None,
        pruner: BasePruner | None = None,
        _create: bool = True,
    ) -> Study:
        """A new study from the JSON form of `config()` (as the REST API receives it):
        "space" and "objectives" are required, the rest optional. Raises ValueError naming the
        rule a part breaks and echoing it."""
        if not isinstance(config, Mapping) or "objectives" not in config:
            raise ValueError('A study\'s configuration has at least "space" and "objectives". '
                             f"Received: {config!r}")  # fmt: skip
        if pruner is None and config.get("pruner"):
            pruner = build({"SuccessiveHalving": SuccessiveHalving}, config["pruner"], "pruner")
        if sampler is None and config.get("sampler"):
            sampler = _sampler_from_json(config["sampler"])
        return cls(
            Space.from_json(config.get("space")),
            config["objectives"],
            constraints=config.get("constraints") or {},
            thresholds=config.get("thresholds") or {},
            sampler=sampler,
            pruner=pruner,
            storage=storage,
            name=name,
            stale_after=config.get("stale_after", 300.0),
            _create=_create,
        )

    # --- trials -------------------------------------------------------------------------
    @property
    def trials(self) -> list[Trial]:
        """Every trial, by number. A running trial whose heartbeat is older than `stale_after`
        reads as stale (decided on read, so a late heartbeat makes it running again)."""
        now, trials = time.time(), self.storage.trials(self.name)
        for t in trials:
            if t.state is TrialState.RUNNING and now - t.heartbeat > self.stale_after:
                t.state = TrialState.STALE
        return trials

    def trial(self, number: int) -> Trial:
        """Trial `number`, read afresh; KeyError if the study has no such trial."""
        trials = self.trials
        if not 0 <= number < len(trials):
            raise KeyError(f"Study {self.name!r} has no trial {number}: it has {len(trials)}, "
                           f"numbered from 0.")  # fmt: skip
        return self._attach(trials[number])

    def heartbeat(self, *trials: Trial | int) -> None:
        """Tell the study that the workers of these trials are alive."""
        numbers = [t if isinstance(t, int) else t.number for t in trials]
        self.storage.heartbeat(self.name, numbers, time.time())

    def enqueue(self, params: Mapping[str, Any]) -> Trial:
        """Queue a point to evaluate next (a known good configuration, say)."""
        trial = Trial(-1, self.space.validate(params))
        self.storage.create_trial(self.name, trial)
        return self._attach(trial)

    def ask(self, n: int | None = None) -> Any:
        """A new running trial (or a list of `n`): queued points first, then the sampler's."""
        with self._lock:
            trials = self.trials
            queued = [t for t in trials if t.state is TrialState.PENDING][: n or 1]
            out = []
            for trial in queued:
                trial.state, trial.started = TrialState.RUNNING, time.time()
                trial.heartbeat = trial.started
                self.storage.update_trial(self.name, trial)
                out.append(self._attach(trial))
            need = (n or 1) - len(out)
            for params in self.sampler.suggest(self, need) if need else []:
                system = dict(getattr(params, "system", None) or {})  # see Bayes's _Suggested
                trial = Trial(-1, self.space.validate(params), TrialState.RUNNING, system=system)
                self.storage.create_trial(self.name, trial)
                out.append(self._attach(trial))
        return out if n is not None else out[0]

    def _attach(self, trial: Trial) -> Trial:
        trial._study = self
        return trial

    def tell(
        self,
        trial: Trial | int,
        values: Mapping[str, float] | float | None = None,
        *,
        state: TrialState | str | None = None,
        error: str | None = None,
    ) -> Trial:
        """Finish a trial: with its metric values (completed), or with a state ("failed",
        "pruned"). Values that are missing an objective or not finite fail the trial. A stale
        trial may be told: its worker was slow, not gone."""
        with self._lock:
            number = trial if isinstance(trial, int) else trial.number
            record = self.trial(number)
            if record.state.finished and record.state is not TrialState.STALE:
                raise ValueError(f"Trial {number} is already {record.state.value}.")
            state = TrialState(state) if state is not None else TrialState.COMPLETED
            if state is TrialState.COMPLETED:
                try:
                    record.values = self._check_values(values)
                except ValueError as e:
                    state, error = TrialState.FAILED, str(e)
            elif values is not None:
                record.values = self._check_values(values, partial=True)
            record.state, record.error, record.finished = state, error, time.time()
            self.storage.update_trial(self.name, record)
            if isinstance(trial, Trial):
                trial.state, trial.values, trial.error = state, record.values, error
            return record

    def _check_values(self, values: Any, partial: bool = False) -> dict[str, float]:
        if not isinstance(values, Mapping):
            if len(self.objectives) == 1 and isinstance(values, int | float):
                values = {next(iter(self.objectives)): values}
            else:
                raise ValueError(
                    f"The objective function must return a dict with {self.metric_names()}. "
                    f"Received: {values!r}"
                )
        out = {str(k): float(v) for k, v in values.items()}
        needed = [] if partial else self.metric_names()
        if missing := [m for m in needed if m not in out]:
            raise ValueError(f"Missing metrics {missing}. Received: {out}")
        if bad := {
            m: out[m] for m in self.metric_names() if m in out and not math.isfinite(out[m])
        }:
            raise ValueError(f"Metrics must be finite numbers. Received: {bad}")
        return out

    def metric_names(self) -> list[str]:
        return list(dict.fromkeys([*self.objectives, *self.constraints]))

    def _report(self, trial: Trial, step: int, values: Mapping[str, float] | float) -> None:
        with self._lock:
            checked = self._check_values(values, partial=True)
            trial.intermediate[int(step)] = checked
            trial.heartbeat = time.time()
            if trial.state is TrialState.STALE:  # a report is a sign of life
                trial.state = TrialState.RUNNING
            self.storage.update_trial(self.name, trial)
            if self.pruner is not None and self.pruner.should_prune(self, trial, int(step)):
                raise TrialPruned(f"Trial {trial.number} pruned at step {step}.")

    def mark_stale(self, older_than: float = 300.0) -> list[int]:
        """Store running trials without a heartbeat for `older_than` s as stale, for good: a
        heartbeat no longer revives them (a report or a tell still does)."""
        stale = []
        with self._lock:
            for t in self.storage.trials(self.name):
                if t.state is TrialState.RUNNING and time.time() - t.heartbeat > older_than:
                    t.state, t.finished = TrialState.STALE, time.time()
                    self.storage.update_trial(self.name, t)
                    stale.append(t.number)
        return stale

    # --- running --------------------------------------------------------------------------
    def optimize(
        self,
        fn: Callable[[Trial], Mapping[str, float] | float],
        trials: int,
        workers: int | None = None,
        processes: bool | None = None,
        stop: Callable[[Study], bool] | None = None,
    ) -> None:
        """Run `fn(trial)` for `trials` new trials on `workers` parallel workers.

        Workers are threads on a CPU; with CUDA GPUs they default to one process per GPU, each
        seeing only its own (CUDA_VISIBLE_DEVICES). A trial that raises is recorded as failed
        with its traceback and the study goes on; `TrialPruned` records it as pruned.
        An objective with a `setup()` method (load data, start CUDA) has it called once in
        each process that runs trials, before that process's first trial, so its cost is
        not counted in any trial's time; an error there stops the study.
        `stop(study)`, when given, is asked before each new trial: once it returns True no
        trial starts (a hypervolume target reached, say); those running finish."""
        from kiln.tune._workers import run_workers

        run_workers(
            self, fn, trials, workers, processes, None if stop is None else lambda: stop(self)
        )

    # --- results --------------------------------------------------------------------------
    def maximized(self, values: Mapping[str, float]) -> np.ndarray:
        """Objective values of one trial as a vector where larger is better in every entry."""
        return np.array([(1 if d == "max" else -1) * values[m] for m, d in self.objectives.items()])

    def is_feasible(self, values: Mapping[str, float]) -> bool:
        for metric, (op, bound) in self.constraints.items():
            v = values[metric]
            if (op == "<=" and v > bound) or (op == ">=" and v < bound):
                return False
        return True

    def completed(self, feasible: bool = False) -> list[Trial]:
        done = [t for t in self.trials if t.state is TrialState.COMPLETED]
        return [t for t in done if self.is_feasible(t.values)] if feasible else done

    def pareto_front(self) -> list[Trial]:
        """Feasible completed trials that no other feasible trial dominates."""
        done = self.completed(feasible=True)
        if not done:
            return []
        mask = pareto_mask(np.stack([self.maximized(t.values) for t in done]))
        return [t for t, keep in zip(done, mask) if keep]

    best_trials = property(pareto_front)

    @property
    def best_trial(self) -> Trial:
        if len(self.objectives) != 1:
            raise ValueError(f"best_trial needs one objective; this study has "
                             f"{list(self.objectives)}: use pareto_front().")  # fmt: skip
        front = self.pareto_front()
        if not front:
            raise ValueError("No feasible completed trial yet.")
        return front[0]

    def hypervolume_history(self) -> list[float]:
        """Hypervolume after each trial (for a hypervolume-vs-evaluations plot)."""
        from kiln.tune._analysis import hypervolume_history

        return hypervolume_history(self)

    def importance(self, objective: str | None = None) -> dict[str, float]:
        """Share of an objective's variance each parameter explains alone (0 to 1)."""
        from kiln.tune._analysis import importance

        return importance(self, objective)

    def reference_point(self) -> np.ndarray:
        """The hypervolume's reference (maximized convention): the thresholds where given,
        else the worst feasible value minus a tenth of the range, as BoTorch infers it."""
        done = self.completed(feasible=True)
        y = np.stack([self.maximized(t.values) for t in done]) if done else None
        ref = []
        for j, (m, d) in enumerate(self.objectives.items()):
            if m in self.thresholds:
                ref.append((1 if d == "max" else -1) * self.thresholds[m])
            elif y is None:
                raise ValueError(f"No feasible trial to infer a reference for {m!r} from; "
                                 "give thresholds.")  # fmt: skip
            else:
                lo, hi = y[:, j].min(), y[:, j].max()
                ref.append(lo - 0.1 * (hi - lo if hi > lo else max(1.0, abs(lo))))
        return np.array(ref)

    def hypervolume(self, reference: Mapping[str, float] | None = None) -> float:
        """Hypervolume of the feasible completed trials, against `reference` (metric values in
        their own units), else `reference_point()`."""
        ref = self.maximized(reference) if reference is not None else self.reference_point()
        done = self.completed(feasible=True)
        if not done:
            return 0.0
        return hypervolume(np.stack([self.maximized(t.values) for t in done]), ref)
