"""Hypervolume history and parameter importance."""

import pytest

from kiln.tune import Categorical, Float, Sobol, Study


def test_hypervolume_history_grows_with_each_useful_trial():
    study = Study({"x": Float(0.0, 1.0)}, {"a": "max", "b": "max"},
                  thresholds={"a": 0.0, "b": 0.0}, sampler=Sobol(0))  # fmt: skip
    for a, b in [(1, 1), (0.5, 0.5), (2, 0.5), (-1, 3)]:
        study.tell(study.ask(), {"a": a, "b": b})
    assert study.hypervolume_history() == pytest.approx([1.0, 1.0, 1.5, 1.5])


def test_importance_ranks_the_parameter_that_matters_first():
    space = {"x": Float(0.0, 1.0), "noise": Float(0.0, 1.0), "c": Categorical(["a", "b"])}
    study = Study(space, {"y": "min"}, sampler=Sobol(0))
    study.optimize(lambda t: 10 * t.params["x"] + 0.1 * t.params["noise"], trials=64)
    scores = study.importance()
    assert next(iter(scores)) == "x" and scores["x"] > 0.8 and scores["noise"] < 0.1
    with pytest.raises(ValueError, match="'z'"):
        study.importance("z")
