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


def test_max_step_keeps_rungs_below_it_so_a_finished_trial_is_never_pruned():
    def second_trial_pruned_at(max_step):
        study = Study(
            {"x": Float(0.0, 1.0)},
            {"acc": "max", "ms": "min"},
            sampler=Random(0),
            pruner=SuccessiveHalving(min_step=2, reduction=2, max_step=max_step),
        )
        # both train 4 steps; the second leads at step 2 and trails at step 4, its last
        for curve in ({2: 0.45, 4: 0.9}, {2: 0.5, 4: 0.8}):
            trial = study.ask()
            for step in range(1, 5):
                try:
                    trial.report(step, {"acc": curve.get(step, 0.1 * step), "ms": 1.0})
                except TrialPruned:
                    return step
        return None

    assert second_trial_pruned_at(max_step=None) == 4  # rung 1 of (2, 2) is step 4
    assert second_trial_pruned_at(max_step=4) is None  # only step 2 is a rung below 4
    spec = SuccessiveHalving(min_step=2, max_step=8).to_json()
    assert spec == {"type": "SuccessiveHalving", "min_step": 2, "reduction": 3, "max_step": 8}
    assert "max_step" not in SuccessiveHalving().to_json()  # configs saved before it still match
    saved = Study({"x": Float(0.0, 1.0)}, {"acc": "max"}, sampler=Random(0),
                  pruner=SuccessiveHalving(min_step=2, max_step=8))  # fmt: skip
    assert Study.load(saved.name, saved.storage).pruner.to_json() == spec
    with pytest.raises(ValueError, match="max_step=2"):
        SuccessiveHalving(min_step=2, max_step=2)
