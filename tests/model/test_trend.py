"""The trend as it was known at each past point."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.model.trend import rate_quantiles, trailing_line


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


def test_the_rates_a_series_ran_at_are_its_slow_and_fast_days():
    rng = np.random.default_rng(3)
    rates = np.repeat(rng.choice([1.0, 3.0], 20), 50)  # twenty "days" of 50 steps, each slow or fast
    values = np.cumsum(rates)
    slow, fast = rate_quantiles(values, 50, 0.1)  # type: ignore[misc]
    assert slow == pytest.approx(1.0, abs=0.05)
    assert fast == pytest.approx(3.0, abs=0.05)
    assert rate_quantiles(values[:60], 50, 0.1) is None  # fewer slopes known than a window
