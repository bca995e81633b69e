"""``/v1/experiments``: kiln.tune studies over REST, SigOpt-style.

A worker anywhere asks for a suggestion (a running trial), evaluates it, heartbeats while it
runs, may report intermediate values (and learns whether to stop), and posts an observation.
Every study lives in the app's store, so ``kiln.tune.Study.load(name, storage=<store URL>)``
reaches the same one.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from kiln.server._schemas import (
    ErrorOut,
    ExperimentIn,
    ExperimentOut,
    ExperimentsOut,
    HypervolumeOut,
    ImportanceOut,
    ObservationIn,
    ParetoOut,
    ReportIn,
    ReportOut,
    TrialOut,
    TrialsOut,
)
from kiln.track import Store
from kiln.tune import Study, Trial, TrialPruned, TrialState
from kiln.tune._storage_sql import SQLStorage

ERRORS = {code: {"model": ErrorOut} for code in (400, 401, 404, 409, 422)}
router = APIRouter(prefix="/v1/experiments", tags=["experiments"], responses=ERRORS)  # type: ignore[arg-type]
_OPEN = (TrialState.PENDING, TrialState.RUNNING, TrialState.STALE)


class Studies:
    """One `Study` object per study for the server's life: its lock serialises the asks and
    tells of all requests, so concurrent workers never get the same point."""

    def __init__(self, store: Store) -> None:
        self.storage = SQLStorage(store)
        self._lock = threading.Lock()
        self._open: dict[str, Study] = {}

    def get(self, name: str) -> Study:
        with self._lock:
            if name not in self._open:
                if name not in self.storage.study_names():
                    raise HTTPException(404, f"no experiment {name!r} in this store "
                                        "(GET /v1/experiments lists them)")  # fmt: skip
                self._open[name] = Study.load(name, self.storage)
            return self._open[name]

    def create(self, config: dict[str, Any]) -> Study:
        name = config.pop("name", None)
        with self._lock:
            if name is not None and name in self.storage.study_names():
                raise HTTPException(409, f"an experiment named {name!r} already exists "
                                    f"(GET /v1/experiments/{name})")  # fmt: skip
            try:
                study = Study.from_config(config, storage=self.storage, name=name)
            except ValueError as e:
                raise HTTPException(422, str(e)) from e
            self._open[study.name] = study
            return study


def _study(request: Request, experiment_id: str) -> Study:
    return request.app.state.studies.get(experiment_id)


def _experiment(study: Study) -> dict:
    counts = {state.value: 0 for state in TrialState}
    for t in study.trials:
        counts[t.state.value] += 1
    return {"id": study.name, "name": study.name, **study.config(), "trials": counts}


def _trial(trial: Trial) -> dict:
    return {**trial.to_json(), "id": trial.number}


def _unfinished(study: Study, suggestion: int) -> Trial:
    try:
        trial = study.trial(suggestion)
    except KeyError as e:
        raise HTTPException(404, f"experiment {study.name!r} has no suggestion {suggestion}: "
                            f"{e.args[0]}") from e  # fmt: skip
    if trial.state not in _OPEN:
        raise HTTPException(409, f"suggestion {suggestion} of experiment {study.name!r} is "
                            f"already {trial.state.value}")  # fmt: skip
    return trial


@router.post("", response_model=ExperimentOut, status_code=201)
def create_experiment(request: Request, body: ExperimentIn) -> dict:
    """A new study; the body is `kiln.tune.Study.config()`'s JSON form and a name."""
    return _experiment(request.app.state.studies.create(body.model_dump()))


@router.get("", response_model=ExperimentsOut)
def list_experiments(request: Request) -> dict:
    studies: Studies = request.app.state.studies
    return {"experiments": [_experiment(studies.get(n)) for n in studies.storage.study_names()]}


@router.get("/{experiment_id}", response_model=ExperimentOut)
def get_experiment(request: Request, experiment_id: str) -> dict:
    return _experiment(_study(request, experiment_id))


@router.post("/{experiment_id}/suggestions", response_model=TrialOut, status_code=201)
def suggest(request: Request, experiment_id: str) -> dict:
    """A new running trial: queued points first, then the sampler's, never the point of
    another open suggestion. Send heartbeats while it runs, then an observation."""
    return _trial(_study(request, experiment_id).ask())


@router.get("/{experiment_id}/suggestions", response_model=TrialsOut)
def list_suggestions(request: Request, experiment_id: str) -> dict:
    """Suggestions not observed yet: pending, running, and stale (no heartbeat lately)."""
    trials = _study(request, experiment_id).trials
    return {"trials": [_trial(t) for t in trials if t.state in _OPEN]}


@router.post("/{experiment_id}/suggestions/{suggestion_id}/heartbeat", status_code=204)
def heartbeat(request: Request, experiment_id: str, suggestion_id: int) -> Response:
    """The worker of this suggestion is alive (do it well within the experiment's
    stale_after); an observed suggestion accepts and ignores it."""
    study = _study(request, experiment_id)
    try:
        study.heartbeat(study.trial(suggestion_id))
    except KeyError as e:
        raise HTTPException(404, f"experiment {experiment_id!r} has no suggestion "
                            f"{suggestion_id}: {e.args[0]}") from e  # fmt: skip
    return Response(status_code=204)


@router.post("/{experiment_id}/suggestions/{suggestion_id}/reports", response_model=ReportOut)
def report(request: Request, experiment_id: str, suggestion_id: int, body: ReportIn) -> dict:
    """Intermediate values at a step (an epoch); answers whether the pruner stops the trial."""
    trial = _unfinished(_study(request, experiment_id), suggestion_id)
    try:
        trial.report(body.step, body.values)
    except TrialPruned as e:
        return {"prune": True, "message": str(e)}
    return {"prune": False, "message": None}


@router.post("/{experiment_id}/observations", response_model=TrialOut, status_code=201)
def observe(request: Request, experiment_id: str, body: ObservationIn) -> dict:
    """The outcome of a suggestion: its values, or `failed: true` (or `pruned: true`). Values
    that miss a metric or are not finite record it as failed, with the reason."""
    if body.failed and body.pruned:
        raise HTTPException(422, "an observation is failed or pruned, not both. Received: "
                            f"{body.model_dump()}")  # fmt: skip
    state = "failed" if body.failed else "pruned" if body.pruned else None
    if state is None and body.values is None:
        raise HTTPException(422, "an observation needs values, or failed: true. Received: "
                            f"{body.model_dump()}")  # fmt: skip
    study = _study(request, experiment_id)
    trial = _unfinished(study, body.suggestion)
    return _trial(study.tell(trial.number, body.values, state=state, error=body.error))


@router.get("/{experiment_id}/observations", response_model=TrialsOut)
def list_observations(request: Request, experiment_id: str) -> dict:
    """Observed suggestions (completed, failed or pruned), by id."""
    trials = _study(request, experiment_id).trials
    return {"trials": [_trial(t) for t in trials if t.state not in _OPEN]}


@router.get("/{experiment_id}/pareto_front", response_model=ParetoOut)
def pareto_front(request: Request, experiment_id: str) -> dict:
    study = _study(request, experiment_id)
    front = [_trial(t) for t in study.pareto_front()]
    reference = _reference(study)
    volume = study.hypervolume() if reference is not None else None
    return {"trials": front, "hypervolume": volume, "reference": reference}


@router.get("/{experiment_id}/hypervolume", response_model=HypervolumeOut)
def hypervolume_history(request: Request, experiment_id: str) -> dict:
    """Hypervolume after each trial (all zeros while no reference can be had)."""
    study = _study(request, experiment_id)
    reference = _reference(study)
    if reference is None:
        return {"history": [0.0] * len(study.trials), "reference": None}
    return {"history": study.hypervolume_history(), "reference": reference}


@router.get("/{experiment_id}/importance", response_model=ImportanceOut)
def importance(
    request: Request, experiment_id: str,
    objective: Annotated[str | None, Query(max_length=250)] = None,
) -> dict:  # fmt: skip
    """Share of an objective's variance each parameter explains alone (0 to 1)."""
    study = _study(request, experiment_id)
    try:
        scores = study.importance(objective)
    except ValueError as e:
        raise HTTPException(422, str(e)) from e
    return {"objective": objective or next(iter(study.objectives)), "importance": scores}


def _reference(study: Study) -> dict[str, float] | None:
    """The hypervolume's reference point in the objectives' own units, or None."""
    try:
        point = study.reference_point()
    except ValueError:  # no thresholds and no feasible trial to infer them from
        return None
    return {m: float(v if d == "max" else -v)
            for (m, d), v in zip(study.objectives.items(), point)}  # fmt: skip
