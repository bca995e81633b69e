"""Pareto dominance, sorting, crowding and hypervolume against known values."""

import numpy as np
import pytest

from kiln.tune import crowding_distance, hypervolume, nondominated_ranks, pareto_mask
from kiln.tune._pareto import hypervolume_contributions


def test_pareto_mask_and_ranks():
    y = np.array([[3, 1], [2, 2], [1, 3], [1, 1], [2, 2], [0, 0]], dtype=float)
    assert pareto_mask(y).tolist() == [True, True, True, False, True, False]
    assert nondominated_ranks(y).tolist() == [0, 0, 0, 1, 0, 2]


def test_crowding_distance_is_infinite_at_the_ends():
    y = np.array([[0, 4], [1, 3], [3, 1], [4, 0]], dtype=float)
    d = crowding_distance(y)
    assert np.isinf(d[[0, 3]]).all()
    assert d[1] == pytest.approx(3 / 4 + 3 / 4) and d[2] == pytest.approx(d[1])


def test_hypervolume_2d_staircase():
    y = np.array([[1, 3], [2, 2], [3, 1], [0.5, 0.5]])
    assert hypervolume(y, np.array([0, 0])) == pytest.approx(6.0)  # 3 + 2 + 1
    assert hypervolume(y, np.array([4, 4])) == 0.0


def test_hypervolume_contributions_are_what_each_row_adds():
    # front (4, 1), (2, 2), (1, 3): volume 4 + 2 + 1 = 7; without each: 5, 6, 6
    y = np.array([[4, 1], [2, 2], [1, 3], [1, 1], [-1, 5]], dtype=float)
    got = hypervolume_contributions(y, np.array([0.0, 0.0]))
    assert got == pytest.approx([2.0, 1.0, 1.0, 0.0, 0.0])  # dominated; outside the reference


def test_hypervolume_3d_inclusion_exclusion_and_2d_agree_with_botorch():
    y = np.array([[2, 1, 1], [1, 2, 1]], dtype=float)
    assert hypervolume(y, np.zeros(3)) == pytest.approx(3.0)  # 2 + 2 - 1
    import torch
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    pts = np.random.default_rng(0).random((40, 2))
    expected = Hypervolume(torch.zeros(2, dtype=torch.float64)).compute(torch.tensor(pts))
    assert hypervolume(pts, np.zeros(2)) == pytest.approx(float(expected))


def test_hypervolume_of_the_dtlz2_front_approaches_its_known_maximum():
    # DTLZ2's 2-objective front is the quarter circle; reference (1.1, 1.1) for minimization.
    angles = np.linspace(0, np.pi / 2, 2000)
    front = -np.stack([np.cos(angles), np.sin(angles)], 1)
    assert hypervolume(front, np.array([-1.1, -1.1])) == pytest.approx(1.21 - np.pi / 4, abs=2e-3)
