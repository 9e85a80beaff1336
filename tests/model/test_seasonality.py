"""Which seasonalities a series gets: by span and resolution, weekly terms only when they repeat."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from devtools.synthetic import Signal
from forecaster.duration import DAY
from forecaster.model import seasonality
from forecaster.model.cleaning import prepare
from forecaster.model.fit import fit_predict
from forecaster.model.options import FitSpec, ModelOptions
from forecaster.model.seasonality import scales_with_level, seasonalities, weekly_order

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


def _daily(weekends: float, growth: float, multiplicative: bool, **model: object) -> tuple[np.ndarray, FitSpec]:
    rng = np.random.default_rng(4)
    days = np.arange(1100)
    base = 1e4 * (1 + growth * days)
    weekend = (days + 3) % 7 >= 5
    shape = base * np.where(weekend, weekends, 1.0) if multiplicative else base - np.where(weekend, 3e3, 0.0)
    spec = FitSpec(step=DAY, horizon=7 * DAY, interval_width=0.8, min_points=20, model=ModelOptions(**model))  # type: ignore[arg-type]
    return shape * rng.lognormal(0, 0.03, len(days)), spec


@pytest.mark.parametrize(
    ("multiplicative", "growth", "model", "step", "expected"),
    [
        (True, 0.0005, {}, DAY, True),  # weekends a share of a growing level: fitted in log space
        (False, 0.0005, {}, DAY, False),  # weekends a fixed amount below it
        (True, 0.0, {}, DAY, False),  # a share of a level that never moves is a fixed amount too
        (True, 0.0005, {"transform": "none"}, DAY, False),  # the user's choice stands
        (True, 0.0005, {}, 3600.0, False),  # sub-daily data keeps its space
    ],
)
def test_daily_shapes_that_scale_with_the_level_are_fitted_in_log_space(
    multiplicative: bool, growth: float, model: dict[str, object], step: float, expected: bool
):
    y, spec = _daily(0.7, growth, multiplicative, **model)
    spec = dataclasses.replace(spec, step=step)
    prepared = prepare(np.arange(len(y)) * step, y, spec)
    assert scales_with_level(prepared, spec) is expected


def test_a_growing_daily_count_keeps_its_weekends_a_share_of_its_level():
    y, spec = _daily(0.7, 0.0005, True)
    days = np.arange(len(y))
    truth = 1e4 * (1 + 0.0005 * days) * np.where((days + 3) % 7 >= 5, 0.7, 1.0)
    times = days * DAY
    history = len(y) - 7
    errors = {}
    for option in ("auto", "none"):
        chosen = dataclasses.replace(spec, model=spec.model.model_copy(update={"transform": option}))
        frame = fit_predict(times[:history], y[:history], times[history - 1], chosen).frame
        ahead = np.searchsorted(times, frame.ds[frame.ds > times[history - 1]])
        errors[option] = np.abs(frame.yhat[frame.ds > times[history - 1]] - truth[ahead]) / truth[ahead]
    assert errors["auto"].max() < 0.01
    # In the series' own space the weekly dip is the history's average one: too shallow at today's level.
    assert errors["none"].max() > 0.03
