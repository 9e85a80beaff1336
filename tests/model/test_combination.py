"""Forecasts combined: the least-squares point of the simplex, reweighted towards the least absolute error."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.model.combination import combination_weights, simplex_least_squares


def test_the_combination_is_the_least_squares_point_of_the_simplex():
    rng = np.random.default_rng(4)
    for size in (2, 3, 5, 8):
        errors = rng.normal(size=(size, 500)) + rng.normal(size=(1, 500))  # candidates sharing part of their errors
        errors[0] *= 3  # one much worse: it may get no weight at all
        gram = errors @ errors.T / 500
        weights = simplex_least_squares(gram)
        assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0)
        trials = rng.dirichlet(np.ones(size), 20_000)
        assert weights @ gram @ weights <= np.einsum("ij,jk,ik->i", trials, gram, trials).min() + 1e-12
    # Two candidates with independent errors of equal size: half each, whose combination errs 1/sqrt(2) as much.
    independent = rng.normal(size=(2, 20_000))
    assert combination_weights(independent) == pytest.approx([0.5, 0.5], abs=0.02)
