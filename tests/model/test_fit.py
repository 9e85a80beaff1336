"""Whole fits of one series (Prophet included): what the defaults make of realistic histories."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from forecaster.duration import DAY
from forecaster.model.fit import fit_predict
from forecaster.model.options import FitSpec, ModelOptions

STEP = 300.0


def _spec(**model: object) -> FitSpec:
    return FitSpec(step=STEP, horizon=DAY, interval_width=0.8, min_points=20, model=ModelOptions(**model))  # type: ignore[arg-type]


def _daily(t: np.ndarray) -> np.ndarray:
    return np.asarray(100 + 20 * np.sin(2 * np.pi * t / DAY))


@pytest.mark.slow
def test_spikes_bend_neither_trend_nor_seasonality_and_the_band_is_calibrated():
    rng = np.random.default_rng(2)
    t = np.arange(0, 7 * DAY, STEP)
    y = _daily(t) + rng.normal(0, 2, len(t))
    spikes = rng.choice(len(t) - 50, 40, replace=False)
    y[spikes] += rng.uniform(500, 5000, len(spikes))
    result = fit_predict(t, y, t[-1] + STEP, _spec())
    frame = result.frame
    truth = _daily(frame.ds)
    assert np.abs(frame.yhat - truth).max() < 5
    following = truth + rng.normal(0, 2, len(truth))
    inside = np.mean((following >= frame.yhat_lower) & (following <= frame.yhat_upper))
    assert 0.65 <= inside <= 0.95
    assert result.choices["clipped"] >= 35


@pytest.mark.slow
def test_a_series_that_is_never_negative_is_never_forecast_negative():
    t = np.arange(0, 3 * DAY, STEP)
    y = np.maximum(0, 2 - t / DAY) + 0.01 * np.abs(np.sin(t))  # heading for zero
    frame = fit_predict(t, y, t[-1] + STEP, _spec(trend="linear")).frame
    assert frame.yhat_lower.min() >= 0
    assert frame.yhat.min() >= 0


@pytest.mark.slow
def test_a_series_pinned_at_its_ceiling_is_never_forecast_above_it():
    rng = np.random.default_rng(8)
    t = np.arange(0, 14 * DAY, STEP)
    y = np.minimum(_daily(t) - 10 + rng.normal(0, 5, len(t)), 100.0)  # at 100 for hours around each daily peak
    frame = fit_predict(t, y, t[-1] + STEP, _spec()).frame
    assert frame.yhat.max() == 100.0 and frame.yhat_upper.max() == 100.0
    # Ending at 100, near a peak: the forecast stays at 100 as long as the history stayed there, as last_value does.
    peak = t < 13.3 * DAY
    frame = fit_predict(t[peak], y[peak], t[peak][-1] + STEP, _spec()).frame
    assert y[peak][-1] == 100.0
    assert frame.yhat[:12].tolist() == [100.0] * 12


@pytest.mark.slow
def test_a_level_shift_never_seen_before_is_carried_forward():
    rng = np.random.default_rng(5)
    t = np.arange(0, 7 * DAY, STEP)
    y = _daily(t) + rng.normal(0, 1, len(t))
    y[-6:] += 80  # half an hour into a new level, larger than anything before
    frame = fit_predict(t, y, t[-1] + STEP, _spec()).frame
    truth = _daily(frame.ds) + 80
    assert np.abs(frame.yhat - truth).mean() < 10


@pytest.mark.slow
def test_a_mostly_zero_series_forecasts_exact_zeros():
    rng = np.random.default_rng(6)
    t = np.arange(0, 7 * DAY, STEP)
    y = np.where(rng.random(len(t)) < 0.03, rng.lognormal(15, 1, len(t)), 0.0)
    y[-24:] = 0.0
    frame = fit_predict(t, y, t[-1] + STEP, _spec()).frame
    assert frame.yhat[:12].tolist() == [0.0] * 12


@pytest.mark.slow
def test_the_band_is_as_wide_as_a_wandering_level_makes_the_errors():
    t = np.arange(0, 14 * DAY, STEP)
    lead = 72  # six hours: a random walk's change over it has an 80% range of 2 * 1.28 * 0.5 * sqrt(72) = 10.9
    ratios = []
    for seed in (12, 13, 14):
        rng = np.random.default_rng(seed)
        y = 200 + np.cumsum(rng.normal(0, 0.5, len(t))) + 20 * np.sin(2 * np.pi * t / DAY)
        frame = fit_predict(t, y, t[-1] + STEP, _spec()).frame
        ratios.append((frame.yhat_upper[lead - 1] - frame.yhat_lower[lead - 1]) / (2 * 1.28 * 0.5 * np.sqrt(lead)))
    # Measured from Prophet's in-sample trend, which follows the walk, the band came out a quarter too narrow.
    assert np.mean(ratios) > 0.9


def test_a_history_too_gappy_for_the_trailing_line_still_gets_a_band():
    t = np.arange(0, 2 * DAY, STEP)
    keep = (t < 6 * 3600) | (t > t[-1] - 6 * 3600)  # six hours at each end, nothing between
    y = _daily(t[keep]) + np.random.default_rng(13).normal(0, 1, keep.sum())
    frame = fit_predict(t[keep], y, t[-1] + STEP, _spec()).frame
    assert np.isfinite(frame.yhat_lower).all() and np.isfinite(frame.yhat_upper).all()
    assert (frame.yhat_upper - frame.yhat_lower).min() > 0


@pytest.mark.slow
@pytest.mark.parametrize("points", [3, 5, 11, 19])
def test_a_history_of_a_few_points_gets_a_forecast_when_min_points_allows_it(points):
    t = np.arange(points, dtype=np.float64) * STEP
    y = 10 + np.arange(points) % 3
    spec = FitSpec(step=STEP, horizon=3600, interval_width=0.8, min_points=3)
    frame = fit_predict(t, y, t[-1] + STEP, spec).frame
    assert np.isfinite(frame.yhat).all() and (frame.yhat_lower <= frame.yhat_upper).all()


def _disk(t: np.ndarray, seed: int, spread: float = 0.3) -> np.ndarray:
    """Free bytes (in GB) of a disk filling ~10 GB a day at a rate that changes by ``spread`` from day to day."""
    rng = np.random.default_rng(seed)
    day = (t // DAY).astype(np.int64)
    rates = 10 * (1 + spread * rng.normal(size=day.max() + 1))
    used = np.concatenate(([0.0], np.cumsum(rates)))[day] + rates[day] * (t % DAY) / DAY
    return np.asarray(500 - used + 5 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 2, len(t)))


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "spread"), [(0, 0.3), (1, 0.3), (0, 0.0), (1, 0.0)])
def test_a_trends_band_widens_with_the_lead_as_far_as_its_rate_may_drift(seed, spread):
    t = np.arange(0, 21 * DAY, STEP)
    y = _disk(t, seed, spread)
    spec = FitSpec(step=STEP, horizon=7 * DAY, interval_width=0.8, min_points=20)
    inside_day, inside_week, ratios = [], [], []
    for origin in (11 * DAY, 14 * DAY):
        known = t <= origin
        frame = fit_predict(t[known], y[known], origin + STEP, spec).frame
        truth = np.interp(frame.ds, t, y)
        inside = (truth >= frame.yhat_lower) & (truth <= frame.yhat_upper)
        inside_day.append(inside[: int(DAY / STEP)].mean())
        inside_week.append(inside.mean())
        width = frame.yhat_upper - frame.yhat_lower
        ratios.append(width[-1] / width[int(3600 / STEP) - 1])
    # Before the rate's own spread counted, a week ahead covered 10-38% here and the band barely widened. The
    # rate is taken to drift as a random walk, so where days are independent it errs wide. On a steady disk
    # the drift is the noise's, which still widens the band a week out, as Prophet's simulation would. Seed 0's
    # drifting disk is the widest: its week covered 98.0% with the forecast chosen among competitors, 98.1% with
    # the chosen one hedged by their combination.
    assert 0.65 <= np.mean(inside_day) <= 0.95
    assert 0.65 <= np.mean(inside_week) <= (0.95 if spread == 0 else 0.99)
    assert min(ratios) >= 2


@pytest.mark.slow
def test_a_known_event_inside_the_frame_shapes_the_forecast():
    day = np.arange(0, 400.0)
    t = day * DAY
    rng = np.random.default_rng(9)
    y = 100 + 5 * np.sin(2 * np.pi * day / 7) + rng.normal(0, 1, len(t))
    sales = day[(day % 50 == 10)]  # every 50 days, a sale triples the level for the day and the day after
    for d in sales:
        y[(day >= d) & (day <= d + 1)] *= 3
    upcoming = day[-1] + 4  # the next sale falls inside the frame
    dates = [str(np.datetime64(int(d), "D")) for d in (*sales, upcoming)]
    spec = FitSpec(step=DAY, horizon=7 * DAY, interval_width=0.8, min_points=20)
    with_event = dataclasses.replace(spec, events=tuple(("sale", d, 0, 1) for d in dates))
    plain = fit_predict(t, y, t[-1] + DAY, spec).frame
    shaped = fit_predict(t, y, t[-1] + DAY, with_event).frame
    on_sale = np.isin(shaped.ds, [upcoming * DAY, (upcoming + 1) * DAY])
    assert shaped.yhat[on_sale].min() > 250  # three times the level of about 100
    assert plain.yhat[on_sale].max() < 150
    assert np.abs(shaped.yhat[~on_sale] - 100).max() < 15


@pytest.mark.slow
def test_a_warm_fit_within_a_day_keeps_the_band_choices_of_the_fit_before_it():
    rng = np.random.default_rng(21)
    t = np.arange(0, 7 * DAY, STEP)
    y = _daily(t) + np.cumsum(rng.normal(0, 0.3, len(t)))
    first = fit_predict(t, y, t[-1] + STEP, _spec())
    chose = first.params["calibration"]["at"]
    later = np.append(t, t[-1] + np.arange(1, 13) * STEP)  # an hour on
    more = np.append(y, y[-1] + np.cumsum(rng.normal(0, 0.3, 12)))
    second = fit_predict(later, more, later[-1] + STEP, _spec(), warm_start=first.params)
    assert second.params["calibration"]["at"] == chose
    # A day after it chose, the next fit chooses again.
    day_on = np.append(t, t[-1] + np.arange(1, 289) * STEP)
    day_more = np.append(y, y[-1] + np.cumsum(rng.normal(0, 0.3, 288)))
    third = fit_predict(day_on[288:], day_more[288:], day_on[-1] + STEP, _spec(), warm_start=first.params)
    assert third.params["calibration"]["at"] == day_on[-1]


@pytest.mark.slow
def test_a_warm_fit_within_a_day_keeps_the_weekly_order_of_the_fit_before_it(monkeypatch: pytest.MonkeyPatch):
    from forecaster.model import seasonality

    rng = np.random.default_rng(22)
    t = np.arange(0, 15 * DAY, STEP)
    y = _daily(t) + 10 * np.sin(2 * np.pi * t / (7 * DAY)) + rng.normal(0, 2, len(t))
    first = fit_predict(t, y, t[-1] + STEP, _spec())
    assert first.params["weekly"] == {"at": t[-1], "step": STEP, "order": first.choices["weekly"] or 0}

    def never(*args: object) -> int:
        raise AssertionError("the weekly order was tested again within a day")

    monkeypatch.setattr(seasonality, "weekly_order", never)
    later, more = t + 12 * STEP, np.append(y[12:], y[-12:])  # an hour on
    second = fit_predict(later, more, later[-1] + STEP, _spec(), warm_start=first.params)
    assert second.params["weekly"] == first.params["weekly"]
    assert second.choices["weekly"] == first.choices["weekly"]
    monkeypatch.undo()
    # A day after it chose, the next fit tests again.
    day_on = t + DAY
    third = fit_predict(day_on, y, day_on[-1] + STEP, _spec(), warm_start=first.params)
    assert third.params["weekly"]["at"] == day_on[-1]
