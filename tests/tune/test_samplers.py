"""The sampler contract (kiln.tune.BaseSampler's docstring), run against every sampler."""

import math
import warnings

import pytest

from kiln.tune import Categorical, Float, Int, Random, Sobol, Space, Study

from .conftest import fast_bayes

SAMPLERS = {
    "random": lambda seed: Random(seed=seed),
    "sobol": lambda seed: Sobol(seed=seed),
    "bayes": lambda seed: fast_bayes(seed=seed),
}


def _space() -> Space:
    return Space(
        {
            "x": Float(0.0, 1.0),
            "y": Float(-1.0, 1.0),
            "k": Int(1, 16, log=True),
            "opt": Categorical(["adam", "sgd"]),
            "momentum": Float(0.0, 0.99, when={"opt": "sgd"}),
            "epochs": 3,
        },
        linear_constraints=[({"x": 1.0, "y": 1.0}, "<=", 0.8)],
    )


def _objective(trial):
    p = trial.params
    bonus = {"adam": 0.0, "sgd": 0.2}[p["opt"]] + p.get("momentum", 0.0)
    return {"a": (p["x"] - 0.2) ** 2 + bonus, "b": (p["y"] + 0.5) ** 2 + math.log(p["k"]),
            "size": p["k"] * 10.0}  # fmt: skip


def _study(name: str, seed: int = 0) -> Study:
    return Study(_space(), {"a": "min", "b": "min"}, constraints={"size": ("<=", 100.0)},
                 sampler=SAMPLERS[name](seed))  # fmt: skip


@pytest.fixture(scope="module", params=list(SAMPLERS))
def explored(request):
    """A study with a history (Bayes past its Sobol warm-up) and 2 pending suggestions."""
    study = _study(request.param)
    study.optimize(_objective, trials=5)
    pending = study.ask(2)
    return request.param, study, pending


def test_suggestions_respect_bounds_types_conditions_and_constraints(explored):
    _, study, _pending = explored
    for trial in study.trials:
        assert study.space.validate(trial.params) == trial.params
        assert isinstance(trial.params["k"], int) and isinstance(trial.params["x"], float)
        assert ("momentum" in trial.params) == (trial.params["opt"] == "sgd")
        assert trial.params["x"] + trial.params["y"] <= 0.8 + 1e-9
        assert trial.params["epochs"] == 3


def test_no_two_pending_suggestions_are_equal(explored):
    _, study, pending = explored
    assert len({repr(sorted(t.params.items())) for t in pending}) == 2
    one_more = study.ask()
    assert all(one_more.params != t.params for t in pending)


def test_deterministic_under_a_seed(explored):
    name, study, _ = explored
    again = _study(name)
    again.optimize(_objective, trials=5)
    assert [t.params for t in again.trials] == [t.params for t in study.trials[:5]]
    assert [t.params for t in again.ask(2)] == [t.params for t in study.trials[5:7]]


@pytest.mark.parametrize("name", ["random", "sobol"])
def test_another_seed_gives_other_points(name):
    first, second = _study(name, seed=0), _study(name, seed=1)
    assert [t.params for t in first.ask(3)] != [t.params for t in second.ask(3)]


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_an_exhausted_finite_space_repeats_instead_of_failing(name):
    study = Study({"c": Categorical(["a", "b"])}, {"v": "max"}, sampler=SAMPLERS[name](0))
    study.optimize(lambda t: {"v": float(t.params["c"] == "a")}, trials=6)
    assert {t.params["c"] for t in study.trials} == {"a", "b"}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_a_space_of_fixed_values_only_suggests_them(name):
    study = Study({"data": "/data", "epochs": 3}, {"v": "max"}, sampler=SAMPLERS[name](0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "fell back to random points" from Bayes
        study.optimize(lambda t: {"v": float(t.number)}, trials=12)
    assert [t.params for t in study.trials] == [{"data": "/data", "epochs": 3}] * 12


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_infeasible_linear_constraints_raise_value_error(name):
    space = Space({"x": Float(0.0, 1.0)}, [({"x": 1.0}, ">=", 2.0)])
    with pytest.raises(ValueError, match="linear constraints"):
        Study(space, {"v": "max"}, sampler=SAMPLERS[name](0)).ask()
