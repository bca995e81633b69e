"""The Bayes sampler's model, warp, reference point and region probability, against
separately fitted GPs, closed forms and numbers by hand."""

import numpy as np
import pytest
import torch

from kiln.tune._acquisition import (
    _fit,
    fit_gp,
    fit_gps,
    log_probability_of_region,
    reference_point,
)
from kiln.tune._warp import TailWarp


def test_the_batched_model_is_the_separately_fitted_gps():
    torch.manual_seed(0)
    x = torch.rand(24, 3, dtype=torch.float64)
    y = torch.stack([x.sum(-1), 10 * (x**2).prod(-1), torch.sin(5 * x[:, 0])], dim=-1)
    test = torch.rand(7, 3, dtype=torch.float64)
    batched = fit_gp(x, y).posterior(test)
    for j in range(3):
        alone = _fit(x, y[:, j : j + 1]).posterior(test)
        torch.testing.assert_close(batched.mean[:, j], alone.mean[:, 0], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(batched.variance[:, j], alone.variance[:, 0],
                                   rtol=1e-9, atol=1e-12)  # fmt: skip


def test_reference_point_takes_thresholds_else_the_front_minus_a_tenth_of_its_range():
    # maximized values; (0, 0) is dominated, so the front is the other three
    y = np.array([[1.0, 5.0], [3.0, 2.0], [2.0, 4.0], [0.0, 0.0]])
    assert reference_point(y, [None, None]) == pytest.approx([1.0 - 0.2, 2.0 - 0.3])
    assert reference_point(y, [0.5, None]) == pytest.approx([0.5, 1.7])
    # a one-point front has no range: a tenth of the value's size (at least 1) instead
    assert reference_point(np.array([[4.0, -20.0]]), [None, None]) == pytest.approx([3.6, -22.0])


def test_tail_warp_compresses_only_a_long_tail_of_bad_values_and_inverts():
    # column 0: -300 reaches far below the median (-2); column 1: symmetric, left linear
    y = np.array([[0.0, 5.0], [-1.0, 4.0], [-3.0, 3.0], [-300.0, 2.0], [-2.0, 1.0]])
    warp = TailWarp(y)
    w = warp(y)
    z = (y - y.mean(0)) / y.std(0)
    m = np.median(z[:, 0])
    np.testing.assert_allclose(w[:, 0], np.where(z[:, 0] >= m, z[:, 0], m - np.log1p(m - z[:, 0])))
    np.testing.assert_allclose(w[:, 1], z[:, 1])
    assert w[3, 0] > -2.0 and z[3, 0] < -1.9  # the -300 outlier: pulled in, still the worst
    assert (np.argsort(w[:, 0]) == np.argsort(y[:, 0])).all()
    back = warp.inverse(torch.tensor(w))
    np.testing.assert_allclose(back.numpy(), y, rtol=1e-12, atol=1e-9)
    # long means more than 3 times as far below the median as above it
    assert np.isneginf(TailWarp(np.array([[1.0], [0.0], [-2.9]])).median).all()
    assert np.isfinite(TailWarp(np.array([[1.0], [0.0], [-3.1]])).median).all()


def test_log_probability_of_region_is_the_product_of_normal_tails():
    torch.manual_seed(0)
    x = torch.rand(12, 2, dtype=torch.float64)
    y = torch.stack([x.sum(-1), x[:, 0] - x[:, 1]], dim=-1)
    model = fit_gp(x, y)
    goals = [(0, 1.2, 1.0), (1, 0.1, -1.0)]  # output 0 >= 1.2 and output 1 <= 0.1
    test = torch.rand(5, 1, 2, dtype=torch.float64)
    post = model.posterior(test.squeeze(1))
    mean, sd = post.mean, post.variance.sqrt()
    normal = torch.distributions.Normal(0.0, 1.0)
    expected = normal.cdf((mean[:, 0] - 1.2) / sd[:, 0]) * normal.cdf((0.1 - mean[:, 1]) / sd[:, 1])
    got = log_probability_of_region(model, goals, None)(test)
    torch.testing.assert_close(got.exp(), expected, rtol=1e-6, atol=1e-12)


def test_a_pending_point_is_believed_at_its_mean_so_its_neighbourhood_loses_probability():
    x = torch.tensor([[0.1], [0.3], [0.9]], dtype=torch.float64)
    model = fit_gp(x, torch.tensor([[0.0], [0.2], [0.1]], dtype=torch.float64))
    goals = [(0, 1.0, 1.0)]  # output >= 1: far above everything seen, unlikely but possible
    at = torch.tensor([[[0.6]]], dtype=torch.float64)
    alone = log_probability_of_region(model, goals, None)(at)
    believed = log_probability_of_region(model, goals, at[0])(at)
    assert believed < alone - 1.0


def _mll(gp) -> float:
    from gpytorch.mlls import ExactMarginalLogLikelihood

    gp.train()
    mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
    with torch.no_grad():
        return float(mll(gp(*gp.train_inputs), gp.train_targets))


def test_a_fit_started_from_an_earlier_fit_reaches_the_same_likelihood():
    torch.manual_seed(0)
    x = torch.rand(41, 3, dtype=torch.float64)
    y = torch.stack([torch.sin(6 * x[:, 0]) + x[:, 1], (x**2).sum(-1)], dim=-1)
    _, earlier = fit_gps(x[:40], y[:40])  # the last suggestion's fit, one trial less
    assert [set(h) for h in earlier] == [{n for n, _ in _fit(x, y[:, :1]).named_parameters()}] * 2
    cold = [_fit(x, y[:, j : j + 1]) for j in range(2)]
    warm = [_fit(x, y[:, j : j + 1], earlier[j]) for j in range(2)]
    for c, w in zip(cold, warm, strict=True):
        assert _mll(w) == pytest.approx(_mll(c), abs=1e-3)
    # a start of another shape (here: 2 inputs for 3) is ignored, not an error
    other = fit_gps(x[:, :2], y)[1]
    assert _mll(_fit(x, y[:, :1], other[0])) == pytest.approx(_mll(cold[0]), abs=1e-6)
