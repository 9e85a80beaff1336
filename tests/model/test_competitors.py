"""The simple competitors: the recent level over an hour or six, the series a day or a week earlier."""

from __future__ import annotations

import dataclasses

import numpy as np

from forecaster.duration import DAY
from forecaster.model.competitors import Competitor, latest_points, seasonal_copies, slower_levels
from forecaster.model.correction import PastErrors, lead_errors


def test_a_copy_of_the_day_before_takes_over_up_to_a_day_ahead_where_the_shape_repeats():
    rng = np.random.default_rng(5)
    step, day = 3600.0, 24
    shape = rng.uniform(0, 50, day)  # a daily shape sharper than any few Fourier terms
    y = np.tile(shape, 12) + rng.normal(0, 1, 12 * day)
    residuals = rng.normal(0, 10, len(y))  # a model that misses the shape
    leads = np.arange(1, 2 * day + 1)
    copies = seasonal_copies(y, y, leads, step)
    assert [copy.reach for copy in copies] == [day]  # twelve days hold no two weeks
    assert not copies[0].replayed
    # The forecast is the day before at every lead; beyond a day it is that same day again.
    assert np.array_equal(copies[0].ahead, y[len(y) - day + (leads - 1) % day])
    shares = lead_errors(PastErrors(residuals, [3], True, competitors=copies), leads, 0.8).shares[0]
    assert (shares[:day] > 0.9).all()
    # Beyond a day the copy would need values not known at the origin: it is never scored there, so never chosen.
    assert (shares[day:] == 0.0).all()


def test_the_day_copys_move_from_yesterday_fades_to_nothing_a_day_ahead():
    rng = np.random.default_rng(8)
    step, day, days = 3600.0, 24, 28
    y = np.tile(rng.uniform(0, 50, day), days) + rng.normal(0, 1, days * day)
    for start in rng.integers(0, day - 3, days) + np.arange(days) * day:
        y[start : start + 3] += 60  # a spell of load each day that is over within three hours
    leads = np.arange(1, day + 1)
    daily, weekly = seasonal_copies(y, y, leads, step)
    assert (daily.fade, weekly.fade) == (day, None)
    assert np.allclose(daily.gain(np.array([1, 12, 24, 30])), [23 / 24, 0.5, 0.0, 0.0])
    assert np.array_equal(weekly.gain(leads), np.ones(day))
    # Carried whole, a spell at the origin would be forecast again a day later, where it is long over: listed first,
    # the whole move wins any tie, so the faded one is chosen only where it erred less.
    whole = dataclasses.replace(daily, fade=None)
    residuals = rng.normal(0, 80, len(y))  # a model that misses the shape
    plan = lead_errors(PastErrors(residuals, [3], False, competitors=[whole, daily]), leads, 0.8)
    chosen = dict(zip(plan.calibration.probe, plan.calibration.chosen, strict=True))
    assert chosen[day] == 1
    assert plan.shares[1][-1] > 0.5


def test_a_level_over_six_hours_takes_over_where_an_hour_is_noise():
    rng = np.random.default_rng(2)
    y = rng.normal(0, 1, 3000)  # a steady level under noise: the longer the median, the better the forecast
    residuals = rng.normal(0, 1.5, 3000)
    hourly = [Competitor(y, y)]
    slower = slower_levels(hourly, 300.0, len(y))
    assert [competitor.level_steps for competitor in slower] == [72]
    assert slower_levels(hourly, 3 * 3600.0, len(y)) == []  # six hours of 3h samples is no longer than an hour's 3
    assert [competitor.level_steps for competitor in slower_levels(hourly, DAY, len(y))] == [7]  # daily: a week
    plan = lead_errors(
        PastErrors(residuals, [3], False, competitors=hourly + slower, level_steps=12), np.array([1, 12]), 0.8
    )
    assert plan.calibration.chosen == [1, 1]
    assert (plan.shares[1] > 0.5).all() and (plan.shares[1] > plan.shares[0]).all()


def test_a_gap_in_a_copied_period_is_bridged_as_pandas_ffill_then_bfill_would():
    import pandas as pd

    rng = np.random.default_rng(13)
    step, day = 3600.0, 24
    y = rng.normal(0, 1, 3 * day)
    y[:3] = np.nan  # nothing before these: the first sample after them bridges them
    y[rng.random(len(y)) < 0.3] = np.nan
    leads = np.arange(1, day + 1)
    (copy,) = seasonal_copies(y, y, leads, step)
    filled = pd.Series(y).ffill().bfill().to_numpy()
    assert np.array_equal(copy.ahead, filled[len(y) - day + (leads - 1) % day])


def test_the_latest_sample_takes_over_the_first_hour_of_a_series_that_wanders():
    rng = np.random.default_rng(6)
    walk = np.cumsum(rng.normal(0, 1, 3000))  # an hour's median lags it: its middle is half an hour old
    residuals = rng.normal(0, 8, 3000)  # a model that does worse than either level
    hourly = [Competitor(walk, walk)]
    latest = latest_points(hourly, 300.0, len(walk))
    assert [(competitor.level_steps, competitor.reach) for competitor in latest] == [(1, 12)]
    assert latest_points(hourly, 300.0, 7) == []  # so short a history's level is its latest sample already
    leads = np.arange(1, 25)
    plan = lead_errors(PastErrors(residuals, [3], False, competitors=hourly + latest, level_steps=12), leads, 0.8)
    chosen = dict(zip(plan.calibration.probe, plan.calibration.chosen, strict=True))
    assert chosen[1] == chosen[12] == 1
    assert chosen[13] == 0 and chosen[24] == 0  # beyond its reach the hour's median takes over again
    assert (plan.shares[1][:12] > 0.5).all() and (plan.shares[1][12:] == 0.0).all()
