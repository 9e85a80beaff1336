"""Which seasonalities a series gets: by span and resolution, weekly terms only when they repeat."""

from __future__ import annotations

import numpy as np
import pytest

from devtools.synthetic import Signal
from forecaster.duration import DAY
from forecaster.model import seasonality
from forecaster.model.seasonality import seasonalities, weekly_order

STEP = 300.0


def test_seasonalities_follow_span_and_resolution():
    assert seasonalities(DAY, STEP) == {
        "daily_seasonality": False,
        "weekly_seasonality": False,
        "yearly_seasonality": False,
    }
    assert seasonalities(3 * DAY, STEP)["daily_seasonality"] is True
    assert seasonalities(15 * DAY, STEP)["weekly_seasonality"] == 14
    daily_data = seasonalities(3 * 365 * DAY, DAY)
    assert daily_data == {"daily_seasonality": False, "weekly_seasonality": True, "yearly_seasonality": True}


def test_weekly_terms_only_for_a_weekly_pattern_that_repeats():
    rng = np.random.default_rng(8)
    t = np.arange(0, 21 * DAY, STEP)
    weekday = (np.floor(t / DAY) % 7 < 5).astype(np.float64)
    traffic = 500 + 200 * np.sin(2 * np.pi * t / DAY) * (0.6 + 0.4 * weekday) + rng.normal(0, 20, len(t))
    assert weekly_order(t, traffic, STEP) > 0
    # A wandering level with a daily cycle: any "weekly pattern" fitted to it is one that never comes back.
    wander = 100 + np.cumsum(rng.normal(0, 0.5, len(t))) + 3 * np.sin(2 * np.pi * t / DAY)
    assert weekly_order(t, wander, STEP) == 0


def test_a_plain_weekly_wave_gets_the_fewer_weekly_terms():
    t = np.arange(0, 14 * DAY, STEP)
    # Order 14 predicts held-out weeks of a pure wave about as well as order 3, so its extra terms would fit noise.
    picks = [
        weekly_order(t, Signal(base=1000, daily=200, weekly=100, trend_per_day=2, noise=50).sample(t, seed), STEP)
        for seed in range(4)
    ]
    assert picks == [3, 3, 3, 3]


def test_the_weekly_order_is_the_one_pandas_rolling_mean_gives(monkeypatch: pytest.MonkeyPatch):
    import pandas as pd

    rng = np.random.default_rng(21)
    t = np.arange(0, 21 * DAY, STEP)
    histories = [
        Signal(base=b, daily=0.3 * b, weekly=w * b, trend_per_day=0.01 * b, noise=n * b).sample(t, seed)
        for seed, (b, w, n) in enumerate([(50, 0.0, 0.05), (900, 0.1, 0.02), (4000, 0.2, 0.08), (300, 0.02, 0.3)])
    ]
    histories.append(100 + np.cumsum(rng.normal(0, 0.5, len(t))))
    for history in histories:
        history[rng.random(len(t)) < 0.1] = np.nan
    ours = [weekly_order(t, history, STEP) for history in histories]

    def pandas_centred(move: object, values: np.ndarray, window: int, min_count: int) -> np.ndarray:
        return pd.Series(values).rolling(window, center=True, min_periods=min_count).mean().to_numpy()

    monkeypatch.setattr(seasonality, "centred", pandas_centred)
    assert ours == [weekly_order(t, history, STEP) for history in histories]


def test_a_weekly_order_is_kept_for_a_day_at_the_same_step():
    chosen = {"at": 1_000_000.0, "step": STEP, "order": 3}
    assert seasonality.kept_weekly_order(chosen, 1_000_000.0 + 3600, STEP) == 3
    assert seasonality.kept_weekly_order({**chosen, "order": 0}, 1_000_000.0, STEP) == 0
    assert seasonality.kept_weekly_order(chosen, 1_000_000.0 + DAY, STEP) is None  # a day on: chosen afresh
    assert seasonality.kept_weekly_order(chosen, 1_000_000.0 - STEP, STEP) is None  # a fit as of an earlier time
    assert seasonality.kept_weekly_order(chosen, 1_000_000.0, 60.0) is None
    for garbled in (None, {}, {"at": "x", "step": STEP, "order": 3}, {**chosen, "order": 7}, [1, 2, 3]):
        assert seasonality.kept_weekly_order(garbled, 1_000_000.0, STEP) is None
