"""The Bayes sampler's model and reference point, against separately fitted GPs and by hand."""

import numpy as np
import pytest
import torch

from kiln.tune._acquisition import _fit, fit_gp, reference_point


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
