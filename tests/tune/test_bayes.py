"""The Bayes sampler: better than random search, feasibility first, learns from failures."""

import builtins
import math
import time
import warnings

import numpy as np
import pytest
import torch
from botorch.test_functions.multi_objective import BraninCurrin

from kiln.tune import Bayes, Categorical, Float, Random, Study, Trial, TrialState
from kiln.tune._bayes import _seeded, _still_current, _vanishing
from kiln.tune._warp import TailWarp

from .conftest import fast_bayes

BRANIN_CURRIN = BraninCurrin()


def _branin_currin(trial):
    y = BRANIN_CURRIN(torch.tensor([[trial.params["x0"], trial.params["x1"]]]))[0]
    return {"branin": float(y[0]), "currin": float(y[1])}


def _hypervolume(sampler, budget: int) -> float:
    study = Study({"x0": Float(0.0, 1.0), "x1": Float(0.0, 1.0)},
                  {"branin": "min", "currin": "min"}, thresholds={"branin": 18.0, "currin": 6.0},
                  sampler=sampler)  # fmt: skip
    study.optimize(_branin_currin, trials=budget)
    return study.hypervolume()


def test_bayes_beats_random_search_on_branin_currin():
    # BoTorch's max hypervolume for this reference point is 59.36.
    bayes = [_hypervolume(fast_bayes(seed, n_startup=5), 14) for seed in (0, 1)]
    random = [_hypervolume(Random(seed), 14) for seed in (0, 1)]
    assert min(bayes) > max(random) and np.mean(bayes) > 40, (bayes, random)


def test_feasibility_first_then_inside_the_feasible_region():
    # feasible only for x > 0.9; the objective pulls towards x = 0
    study = Study({"x": Float(0.0, 1.0), "y": Float(0.0, 1.0)}, {"v": "min"},
                  constraints={"c": ("<=", 0.0)}, sampler=fast_bayes(0, n_startup=3))  # fmt: skip
    for params in ({"x": 0.1, "y": 0.5}, {"x": 0.4, "y": 0.2}, {"x": 0.6, "y": 0.8}):
        study.enqueue(params)
    study.optimize(lambda t: {"v": t.params["x"], "c": 0.9 - t.params["x"]}, trials=6)
    assert any(study.is_feasible(t.values) for t in study.trials[3:])
    assert 0.9 <= study.best_trial.params["x"] < 0.97


def test_failed_trials_are_modelled_and_the_search_converges_beside_them():
    def fn(trial):
        if trial.params["x"] > 0.5:
            raise RuntimeError("diverged")
        return {"v": -trial.params["x"]}  # best just below the failing region

    study = Study({"x": Float(0.0, 1.0)}, {"v": "min"}, sampler=fast_bayes(0, n_startup=4))
    study.optimize(fn, trials=10)
    assert sum(t.state is TrialState.FAILED for t in study.trials[4:]) <= 4
    assert study.best_trial.params["x"] > 0.4


def test_more_than_four_objectives_use_parego():
    space = {f"x{i}": Float(0.0, 1.0) for i in range(3)}
    objectives = {f"f{i}": "min" for i in range(5)}
    study = Study(space, objectives, sampler=fast_bayes(0, n_startup=4))
    study.optimize(lambda t: {f"f{i}": (sum(t.params.values()) - i / 4) ** 2 for i in range(5)},
                   trials=5)  # fmt: skip
    assert all(t.state is TrialState.COMPLETED for t in study.trials)
    assert math.isfinite(study.hypervolume())


def test_a_missing_extra_names_the_install_command(monkeypatch):
    real_import = builtins.__import__

    def no_botorch(name, *args, **kwargs):
        if name.startswith("botorch"):
            raise ImportError("No module named 'botorch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_botorch)
    with pytest.raises(ImportError, match=r"pip install 'kiln\[tune\]'"):
        Study({"x": Float(0.0, 1.0)}, {"v": "min"}, sampler=Bayes(seed=0)).ask()


def _precomputing_study() -> Study:
    sampler = Bayes(seed=0, n_startup=3, num_restarts=2, raw_samples=64, mc_samples=32,
                    precompute=True)  # fmt: skip
    study = Study({"x": Float(0.0, 1.0), "y": Float(0.0, 1.0)}, {"v": "min"}, sampler=sampler)
    for _ in range(3):
        study.tell(study.ask(), {"v": 0.0})
    return study


def _precomputed(study: Study) -> dict:
    job = study.sampler._job
    job[1].join()
    return job[2][0][0]


def test_precompute_hands_out_the_suggestion_computed_while_the_trial_ran():
    study = _precomputing_study()
    first = study.ask()  # model-based; starts the next one in the background
    ahead = _precomputed(study)
    study.tell(first, {"v": (first.params["x"] - 0.3) ** 2 + first.params["y"]})
    start = time.perf_counter()
    second = study.ask()  # only the running trial's result arrived: still current
    assert time.perf_counter() - start < 0.2
    assert second.params == ahead and second.params != first.params
    _precomputed(study)  # no thread outlives the test


def test_precompute_is_discarded_once_another_trial_was_asked_for():
    study = _precomputing_study()
    computed = study.sampler._suggest
    fresh = []  # the suggestions computed while ask() waited
    study.sampler._suggest = lambda *a, background=False: (
        computed(*a, background=background) if background else fresh.append(1) or computed(*a)
    )
    first = study.ask()
    before = len(fresh)
    second = study.ask()  # the history is the one the job assumed: it takes the job
    assert len(fresh) == before
    study.enqueue({"x": 0.5, "y": 0.5})
    queued = study.ask()  # a queued point, handed out without the sampler
    third = study.ask()  # the job did not know `queued`: computed afresh
    _precomputed(study)
    assert len(fresh) == before + 1
    params = [t.params for t in (first, second, queued, third)]
    assert len({tuple(sorted(p.items())) for p in params}) == 4


def test_still_current_allows_only_results_of_busy_trials():
    def trial(number, state, x=0.1):
        return Trial(number, {"x": x}, TrialState(state))

    assumed = [trial(0, "completed"), trial(1, "running"), trial(2, "pending")]
    finished = [trial(0, "completed"), trial(1, "completed"), trial(2, "failed")]
    assert _still_current(assumed, assumed) and _still_current(assumed, finished)
    assert not _still_current(assumed, [*assumed, trial(3, "running")])  # asked since
    assert not _still_current(assumed, [*assumed[:2], trial(2, "running")])  # started since
    assert not _still_current(assumed, [*assumed[:2], trial(2, "pending", x=0.2)])
    assert not _still_current(finished, assumed)  # states never go back


def test_seeding_leaves_the_global_generator_as_it_was():
    torch.manual_seed(1)
    before = torch.get_rng_state()
    with _seeded(5, background=False):
        inside = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(5)
    assert torch.equal(inside, torch.rand(3))
    torch.manual_seed(1)
    with _seeded(5, background=True):  # a background thread must not reseed or rewind it
        assert torch.equal(torch.get_rng_state(), before)


def test_timings_device_and_json_round_trip():
    sampler = fast_bayes(0, n_startup=3)
    study = Study({"x": Float(0.0, 1.0)}, {"v": "min"}, sampler=sampler)
    study.optimize(lambda t: {"v": (t.params["x"] - 0.3) ** 2}, trials=4)
    assert set(sampler.timings) == {"fit", "acquisition"} and min(sampler.timings.values()) > 0
    config = Bayes(seed=3, device="cpu", local_steps=5, local_size=0.4, gpu_from=7).to_json()
    again = Bayes(**{k: v for k, v in config.items() if k != "type"})
    assert (again.seed, again.device, again.local_steps, again.local_size, again.gpu_from) == (
        3, "cpu", 5, 0.4, 7)  # fmt: skip


def test_small_histories_stay_on_the_cpu_until_gpu_from(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    auto = Bayes(gpu_from=500)
    assert [auto.device_for(n).type for n in (0, 499, 500)] == ["cpu", "cpu", "cuda"]
    assert Bayes(device="cpu").device_for(10_000).type == "cpu"
    assert Bayes(device="cuda:1").device_for(0) == torch.device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto.device_for(10_000).type == "cpu"
    with pytest.raises(ValueError, match=r"local_size must be in \(0, 1\]. Received: 0"):
        Bayes(local_size=0)


def test_the_first_model_steps_stay_in_a_box_around_the_best_point_then_go_anywhere():
    space = {"x": Float(0.0, 1.0), "y": Float(0.0, 1.0), "z": Float(0.0, 1.0)}
    sampler = Bayes(seed=0, n_startup=4, num_restarts=2, raw_samples=64, mc_samples=32,
                    local_steps=3, local_size=0.2)  # fmt: skip
    study = Study(space, {"v": "min"}, sampler=sampler)
    for p in ([0.6, 0.6, 0.6], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.1, 0.1, 0.9]):
        study.enqueue(dict(zip("xyz", p)))
    study.optimize(lambda t: {"v": sum((t.params[k] - 0.9) ** 2 for k in "xyz")}, trials=4)
    distances = []
    for _ in range(4):  # noiseless: the best by posterior mean is the best observed
        best = np.array([study.best_trial.params[k] for k in "xyz"])
        trial = study.ask()
        point = np.array([trial.params[k] for k in "xyz"])
        distances.append(np.abs(point - best).max())
        study.tell(trial, {"v": float(((point - 0.9) ** 2).sum())})
    assert max(distances[:3]) <= 0.1 + 1e-9 < distances[3], distances  # this seed leaves it


class _Means:
    """A stand-in model whose posterior mean at each training point is given."""

    def __init__(self, mean):
        self.mean = torch.tensor(mean, dtype=torch.float64)

    def posterior(self, x):
        return self


def test_the_box_is_centred_on_the_largest_hypervolume_contribution_by_posterior_mean():
    study = Study({"c": Categorical(["a", "b"]), "x": Float(0.0, 1.0), "y": Float(0.0, 1.0)},
                  {"f": "max", "g": "max"})  # fmt: skip
    sampler = Bayes(seed=0, local_size=0.2)
    x = torch.tensor([[1.0, 0.0, 0.5, 0.5], [0.0, 1.0, 0.95, 0.3], [1.0, 0.0, 0.1, 0.1]])
    # maximized means, reference (0, 0): contributions 1 (4 x 1 minus 3 x 1), 2 and 0
    mean = [[1.0, 3.0], [4.0, 1.0], [0.5, 0.5]]
    warp = TailWarp(np.array(mean))
    warped = _Means(warp(np.array(mean)))
    feasible = np.zeros((3, 0))
    box = sampler._trust_region(warped, x, 2, feasible, [0.0, 0.0], warp, study.space)
    assert box == pytest.approx(np.array([[0.0, 0.0, 0.85, 0.2], [1.0, 1.0, 1.0, 0.4]]))
    infeasible = np.array([[1.0], [1.0], [1.0]])
    assert sampler._trust_region(warped, x, 2, infeasible, [0.0, 0.0], warp, study.space) is None
    assert sampler._trust_region(warped, x, 2, feasible, [5.0, 0.0], warp, study.space) is None


def test_targets_feasibility_first_then_the_thresholds_then_the_hypervolume():
    study = Study({"x": Float(0.0, 1.0)}, {"a": "min", "b": "max"},
                  thresholds={"a": 2.0, "b": 1.0}, constraints={"c": ("<=", 0.0)})  # fmt: skip
    y = np.array([[-3.0, 2.0], [-1.0, 1.5]])  # maximized: a = 3, b = 2 and a = 1, b = 1.5
    warp = TailWarp(y)
    infeasible = np.array([[0.5], [0.1]])
    assert Bayes._targets(study, y, infeasible, warp, 1) == ([(2, 0.0, -1.0)], [])
    feasible = np.array([[-0.5], [0.1]])  # only the first trial: beats b's threshold, not a's
    goals, ref = Bayes._targets(study, y, feasible, warp, 1)
    assert ref == [-2.0, 1.0]
    w = warp(np.array([ref]))[0]
    assert goals == [(2, 0.0, -1.0), (0, w[0], 1.0), (1, w[1], 1.0)]
    both = np.array([[-0.5], [-0.1]])  # the second trial, feasible now, beats both thresholds
    assert Bayes._targets(study, y, both, warp, 1) == (None, [-2.0, 1.0])


def test_vanishing_means_below_e_minus_15_of_the_objective_scale_everywhere():
    y = np.array([[0.0, 0.0], [10.0, 100.0]])  # scale: log(5 * 50) = 5.52
    tkw = {"dtype": torch.float64, "device": torch.device("cpu")}

    def flat(v):
        return lambda x: torch.full(x.shape[:1], v, dtype=torch.float64)

    assert _vanishing(flat(-10.0), 2, y, 0, tkw) and not _vanishing(flat(-9.0), 2, y, 0, tkw)


def test_a_batch_seeking_feasibility_beside_a_failed_trial_is_modelled_not_random():
    # the failure indicator makes the model a list of GPs; each point of the batch believes
    # the ones before it: three distinct points, and no fallback to random ones
    study = Study({"x": Float(0.0, 1.0), "y": Float(0.0, 1.0)}, {"a": "min", "b": "min"},
                  constraints={"c": ("<=", 0.0)}, sampler=fast_bayes(0, n_startup=3))  # fmt: skip
    for i, trial in enumerate(study.ask(4)):
        values = {"a": trial.params["x"], "b": 1 - trial.params["x"], "c": 1.0}
        study.tell(trial, state="failed") if i == 0 else study.tell(trial, values)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        batch = study.ask(3)
    assert len({tuple(sorted(t.params.items())) for t in batch}) == 3
