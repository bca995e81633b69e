"""Multi-objective successive halving prunes dominated trials at rungs, and only those."""

import pytest

from kiln.tune import Float, Random, Study, SuccessiveHalving, TrialPruned, TrialState


def _study() -> Study:
    return Study({"x": Float(0.0, 1.0)}, {"acc": "max", "ms": "min"}, sampler=Random(0),
                 pruner=SuccessiveHalving(min_step=1, reduction=2))  # fmt: skip


def test_rungs_prune_dominated_trials_and_keep_the_front():
    study = _study()
    # Four trials reach rung 0 (step 1): two on the front, one dominated, one far behind.
    for acc, ms in [(0.9, 10.0), (0.5, 2.0)]:
        study.ask().report(1, {"acc": acc, "ms": ms})
    study.ask().report(1, {"acc": 0.6, "ms": 5.0})  # front (trade-off): kept
    with pytest.raises(TrialPruned):
        study.ask().report(1, {"acc": 0.4, "ms": 11.0})  # dominated by all: pruned
    with pytest.raises(TrialPruned):
        study.ask().report(1, {"acc": 0.55, "ms": 9.0})  # dominated by (0.6, 5)
    keeper = study.trials[0]
    keeper._study = study
    keeper.report(2, {"acc": 0.95, "ms": 10.0})  # rung 1 has one trial: nothing to compare


def test_pruned_trials_are_recorded_by_optimize_and_save_time():
    steps = []

    def fn(trial):
        quality = trial.params["x"]
        for epoch in range(1, 9):
            steps.append(epoch)
            trial.report(epoch, {"acc": quality * epoch / 8, "ms": 10 - 5 * quality})
        return {"acc": quality, "ms": 10 - 5 * quality}

    study = _study()
    study.optimize(fn, trials=12)
    # acc and ms both improve with x: a lower x is dominated at every rung and stops early.
    pruned = [t for t in study.trials if t.state is TrialState.PRUNED]
    assert pruned and len(steps) < 12 * 8 * 0.7
    best_x = max(t.params["x"] for t in study.trials)
    assert study.pareto_front()[0].params["x"] == best_x
    assert all(t.params["x"] < best_x for t in pruned)


def test_bad_settings_echo_values():
    with pytest.raises(ValueError, match="reduction=1"):
        SuccessiveHalving(reduction=1)
