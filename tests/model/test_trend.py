"""The trend as it was known at each past point."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from forecaster.model.trend import rate_drift, trailing_line


def test_the_trailing_line_at_each_point_knows_only_what_came_before():
    values = 3 + 0.5 * np.arange(100.0)
    values[[40, 50]] = np.nan  # gaps in the grid
    level, slope = trailing_line(values, 20)
    assert np.isnan(level[:9]).all()  # fewer than ten values known
    assert level[30:] == pytest.approx(3 + 0.5 * np.arange(30.0, 100.0))
    assert slope[30:] == pytest.approx(np.full(70, 0.5))
    later = values.copy()
    later[60:] += 100
    changed, _ = trailing_line(later, 20)
    np.testing.assert_array_equal(changed[:60], level[:60])


def test_the_rate_drifts_as_far_as_it_moved_from_one_window_to_the_next():
    rng = np.random.default_rng(3)
    shape = np.sin(2 * np.pi * np.arange(1000) / 50)  # repeats every window, as a daily shape does every day
    steady = 2.0 * np.arange(1000) + shape + rng.normal(0, 1, 1000)
    typical, drift = rate_drift(steady, 50)  # type: ignore[misc]
    assert typical == pytest.approx(2.0, abs=0.05)
    # Only the noise moves a window's slope: about sqrt(2 * 12 / 50^3) = 0.014 per step.
    assert 0.008 < drift < 0.03
    walk = 2.0 + np.repeat(np.cumsum(rng.normal(0, 0.5, 40)), 50)  # the rate takes a step of sd 0.5 every window
    _, drift = rate_drift(np.cumsum(walk), 50)  # type: ignore[misc]
    assert 0.3 < drift < 0.7
    assert rate_drift(np.cumsum(walk)[:140], 50) is None  # fewer changes known than a window
    gappy = np.cumsum(walk)
    gappy[1::2] = np.nan  # every other sample missing: slopes, but no step between two samples
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, drift = rate_drift(gappy, 50)  # type: ignore[misc]
    assert 0.3 < drift < 0.7
