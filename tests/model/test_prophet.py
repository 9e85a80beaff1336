"""Driving Prophet: the curves read straight from the fitted parameters are Prophet's own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from devtools.synthetic import Signal
from forecaster.model import prophet
from forecaster.model.seasonality import DAY

STEP = 300.0


def _predicted(model: object, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predicted = model.predict(pd.DataFrame({"ds": pd.to_datetime(times, unit="s")}))  # type: ignore[attr-defined]
    trend = predicted["trend"].to_numpy()
    return trend, predicted["yhat"].to_numpy() - trend


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {"daily_seasonality": True, "weekly_seasonality": 14},
        {"daily_seasonality": True, "weekly_seasonality": False, "growth": "flat"},
        {"daily_seasonality": 6, "weekly_seasonality": 3, "seasonality_mode": "multiplicative"},
        {"daily_seasonality": True, "weekly_seasonality": True, "scaling": "minmax", "changepoint_prior_scale": 0.5},
        {"daily_seasonality": False, "weekly_seasonality": False, "yearly_seasonality": False},
    ],
    ids=["daily+weekly", "flat", "multiplicative", "minmax", "none"],
)
def test_the_curves_read_from_the_parameters_are_prophets_own(options):
    t = 1_700_000_000.0 + np.arange(0, 15 * DAY, STEP)
    y = Signal(base=300, daily=60, weekly=25, trend_per_day=4, noise=5).sample(t, 3)
    model = prophet.load_prophet()(uncertainty_samples=0, **options)
    model.fit(pd.DataFrame({"ds": pd.to_datetime(t, unit="s"), "y": y}))
    times = np.concatenate((t, t[-1] + STEP * np.arange(1, 2 * 288 + 1)))
    trend, rest = prophet.components(model, times)
    expected_trend, expected_rest = _predicted(model, times)
    scale = np.abs(y).max()
    np.testing.assert_allclose(trend, expected_trend, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(rest, expected_rest, rtol=0, atol=1e-9 * scale)


@pytest.mark.slow
def test_a_model_with_events_is_read_through_prophets_own_predict():
    t = 1_700_000_000.0 + np.arange(0, 15 * DAY, STEP)
    y = Signal(base=300, daily=60, noise=5).sample(t, 4)
    events = pd.DataFrame(
        {"holiday": "launch", "ds": pd.to_datetime(["2023-11-20"]), "lower_window": 0, "upper_window": 0}
    )
    model = prophet.load_prophet()(uncertainty_samples=0, holidays=events)
    model.fit(pd.DataFrame({"ds": pd.to_datetime(t, unit="s"), "y": y}))
    assert not prophet._plain(model)
    trend, rest = prophet.components(model, t)
    expected_trend, expected_rest = _predicted(model, t)
    np.testing.assert_array_equal(trend, expected_trend)
    np.testing.assert_array_equal(rest, expected_rest)
