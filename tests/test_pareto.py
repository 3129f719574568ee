"""Pareto tools on hand-made points: sorting, crowding, hypervolume normalization, knee."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.pareto import (
    crowding_distance,
    dominates,
    hypervolume,
    knee_point,
    non_dominated,
    non_dominated_sort,
    normalized_hypervolume,
    pareto_ranks,
)

POINTS = [[1, 5], [2, 3], [3, 4], [4, 1], [2, 3], [5, 5]]


def test_non_dominated_sort_hand_made():
    assert non_dominated(POINTS) == [0, 1, 3, 4]  # duplicates of a front point both stay
    assert non_dominated_sort(POINTS) == [[0, 1, 3, 4], [2], [5]]
    assert pareto_ranks(POINTS).tolist() == [0, 0, 1, 0, 0, 2]
    assert dominates([1, 1], [1, 2]) and not dominates([1, 2], [1, 2]) and not dominates([0, 3], [1, 2])


def test_non_dominated_matches_brute_force_in_three_objectives():
    rng = np.random.default_rng(0)
    F = rng.integers(0, 6, (200, 3)).astype(float)
    brute = [i for i in range(len(F)) if not any(dominates(F[j], F[i]) for j in range(len(F)))]
    assert non_dominated(F) == brute


def test_crowding_boundaries_are_infinite():
    d = crowding_distance([[0, 4], [1, 2], [2, 1], [4, 0]])
    assert np.isinf(d[0]) and np.isinf(d[3]) and np.all(np.isfinite(d[1:3]))


def test_hypervolume_of_true_front_is_one_and_subsets_are_less():
    front = np.array([[0.0, 1.0], [0.25, 0.5], [0.5, 0.25], [1.0, 0.0]])
    assert normalized_hypervolume(front, front) == pytest.approx(1.0)
    # by hand (reference 1.1): the two corners dominate 0.11 + 0.11 - 0.01 = 0.21; the front's staircase
    # 0.25*0.1 + 0.25*0.6 + 0.5*0.85 + 0.1*1.1 = 0.71
    assert normalized_hypervolume(front[[0, 3]], front) == pytest.approx(0.21 / 0.71)
    # dominated extra points change nothing; points beyond the reference add nothing
    assert normalized_hypervolume(np.vstack([front, [[0.9, 0.9], [5, 5]]]), front) == pytest.approx(1.0)
    # normalization: scaling an objective does not change the normalized value
    scaled = front * [10.0, 1.0]
    assert normalized_hypervolume(scaled[[0, 1, 3]], scaled) == pytest.approx(
        normalized_hypervolume(front[[0, 1, 3]], front))


def test_hypervolume_normalizes_then_measures_by_hand():
    # (0, 1) and (0.5, 0.5) in the unit box, reference 1.1: 0.5*0.1 + 0.6*0.6 = 0.41
    assert hypervolume([[0.0, 1.0], [0.5, 0.5]], ideal=[0, 0], nadir=[1, 1]) == pytest.approx(0.41)
    # the same points in other units (x2, x10) normalize to the same box
    assert hypervolume([[0.0, 10.0], [1.0, 5.0]], ideal=[0, 0], nadir=[2, 10]) == pytest.approx(0.41)


def test_knee_point_picks_the_bulge():
    pts = [[0, 1.0], [0.1, 0.3], [0.5, 0.2], [1.0, 0.0], [0.6, 0.9]]
    assert knee_point(pts) == 1
    assert knee_point([[3, 3]]) == 0
