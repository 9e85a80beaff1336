"""Where the series is now: the carried residual, a new level, the recent level as a competitor."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.model.correction import Competitor, PastErrors, lead_errors, new_level


def test_only_a_shift_beyond_every_earlier_one_is_a_new_level():
    residuals = np.zeros(500)
    residuals[100:110] = 4.0  # a burst the history already showed
    assert new_level(residuals, 3) is None
    residuals[-3:] = 9.0
    assert new_level(residuals, 3) == 9.0


def test_the_recent_level_takes_over_where_it_would_have_erred_less():
    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.normal(0, 1, 2000))  # a random walk: the last level is its best forecast
    residuals = rng.normal(0, 5, 2000)  # a "model" whose residuals are pure noise around the walk
    leads = np.arange(1, 13)
    shares = lead_errors(PastErrors(residuals, [3], True, competitors=[Competitor(walk, walk)]), leads, 0.8).shares
    assert shares.shape == (1, 12)
    assert (shares[0] == 1.0).all()
    noise = 1e3 * rng.normal(size=2000)  # a level that says nothing about what follows
    none = lead_errors(PastErrors(residuals, [3], True, competitors=[Competitor(noise, noise)]), leads, 0.8).shares
    assert (none == 0.0).all()


def test_the_recent_residual_is_carried_whole_or_not_at_all():
    rng = np.random.default_rng(9)
    wander = np.cumsum(rng.normal(0, 1, 3000))  # residuals that persist: where they are now is where they stay
    correction = lead_errors(PastErrors(wander, [3], True), np.array([1, 2]), 0.8).correction
    assert correction[0] == pytest.approx(float(np.median(wander[-3:])))
    noise = rng.normal(0, 1, 3000)  # residuals that say nothing about the next one
    correction = lead_errors(PastErrors(noise, [3], True), np.array([1, 2]), 0.8).correction
    assert correction.tolist() == [0.0, 0.0]
