"""Where the series is now: the carried residual, a new level, the recent level as a competitor."""

from __future__ import annotations

import dataclasses

import numpy as np
import orjson
import pytest

from forecaster.duration import DAY
from forecaster.model.band import quantiles_at
from forecaster.model.competitors import Competitor
from forecaster.model.correction import Calibration, PastErrors, anchor_windows, lead_errors, new_level


def test_only_a_shift_beyond_every_earlier_one_is_a_new_level():
    residuals = np.zeros(500)
    residuals[100:110] = 4.0  # a burst the history already showed
    assert new_level(residuals, 3) is None
    residuals[-3:] = 9.0
    assert new_level(residuals, 3) == 9.0


def test_daily_data_may_carry_a_week_of_residuals_where_sub_daily_data_carries_up_to_a_day():
    assert anchor_windows(300.0, 8064) == [3, 12, 72, 288]
    assert anchor_windows(DAY, 1095) == [1, 3, 7]
    rng = np.random.default_rng(5)
    # Page views a year long: a level that moves over weeks, under daily noise that hides it from one or three days.
    level = np.repeat(rng.normal(0, 1, 365 // 15 + 1), 15)[:365]
    residuals = level + rng.normal(0, 1, 365)
    plan = lead_errors(PastErrors(residuals, anchor_windows(DAY, 365), True), np.arange(1, 8), 0.8)
    assert 7 in plan.calibration.anchors


def test_the_recent_level_takes_over_where_it_would_have_erred_less():
    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.normal(0, 1, 2000))  # a random walk: the last level is its best forecast
    residuals = rng.normal(0, 5, 2000)  # a "model" whose residuals are pure noise around the walk
    leads = np.arange(1, 13)
    plan = lead_errors(PastErrors(residuals, [3], True, competitors=[Competitor(walk, walk)]), leads, 0.8)
    assert plan.shares.shape == (1, 12)
    assert set(plan.calibration.chosen) == {0}
    # Chosen, it carries at least half the forecast; the combination gives the model's independent errors a part.
    assert (plan.shares[0] >= 0.8).all() and (plan.shares[0] < 1.0).all()
    noise = 1e3 * rng.normal(size=2000)  # a level that says nothing about what follows
    none = lead_errors(PastErrors(residuals, [3], True, competitors=[Competitor(noise, noise)]), leads, 0.8)
    assert set(none.calibration.chosen) == {-1}
    assert (none.shares < 0.01).all()


def test_the_recent_residual_is_carried_whole_or_not_at_all():
    rng = np.random.default_rng(9)
    wander = np.cumsum(rng.normal(0, 1, 3000))  # residuals that persist: where they are now is where they stay
    correction = lead_errors(PastErrors(wander, [3], True), np.array([1, 2]), 0.8).correction
    assert correction[0] == pytest.approx(float(np.median(wander[-3:])))
    noise = rng.normal(0, 1, 3000)  # residuals that say nothing about the next one
    correction = lead_errors(PastErrors(noise, [3], True), np.array([1, 2]), 0.8).correction
    assert correction.tolist() == [0.0, 0.0]


def test_a_competitor_must_err_less_by_its_margin_to_take_over():
    rng = np.random.default_rng(11)
    walk = np.cumsum(rng.normal(0, 1, 2000))
    residuals = np.concatenate(([0.0], 1.05 * np.diff(walk)))  # errs 5% more than the walk's last value at lead 1
    leads = np.array([1])
    for margin, chosen in ((0.0, 0), (0.1, -1)):
        past = PastErrors(residuals, [3], False, competitors=[Competitor(walk, walk, margin=margin)], level_steps=1)
        assert lead_errors(past, leads, 0.8).calibration.chosen == [chosen]


def test_the_trailing_median_is_pandas_rolling_median_of_the_finite_values():
    import pandas as pd

    from forecaster.model.correction import trailing_median

    rng = np.random.default_rng(11)
    for size, window in ((4000, 288), (50, 12), (5, 12), (1, 3)):
        values = np.round(rng.normal(size=size), 1)  # ties, as rounded metrics have
        values[rng.random(size) < 0.2] = np.nan
        values[:2] = np.nan  # nothing finite yet: NaN
        expected = pd.Series(values).rolling(window, min_periods=1).median().to_numpy()
        np.testing.assert_array_equal(trailing_median(values, window), expected)
    assert len(trailing_median(np.array([]), 3)) == 0


def _walk_past(seed: int) -> PastErrors:
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 1, 2000))
    return PastErrors(rng.normal(0, 2, 2000), [3, 12], True, competitors=[Competitor(walk, walk)])


def test_a_later_fit_within_a_day_keeps_the_choices_and_tails_and_takes_the_latest_quantiles():
    leads = np.arange(1, 289)
    first = lead_errors(_walk_past(1), leads, 0.8, at=0.0)
    again = lead_errors(_walk_past(1), leads, 0.8, at=3600.0, reuse=first.calibration)
    # The same data: keeping the choices gives exactly what choosing afresh would.
    assert again.calibration is first.calibration
    assert np.array_equal(again.low, first.low) and np.array_equal(again.shares, first.shares)
    # New data: the kept choices, the new errors' quantiles.
    moved = lead_errors(_walk_past(2), leads, 0.8, at=3600.0, reuse=first.calibration)
    assert np.array_equal(moved.shares, first.shares)
    assert not np.array_equal(moved.low, first.low)


@pytest.mark.parametrize(
    ("at", "change"),
    [
        (86400.0, {}),  # a day after it chose
        (-1.0, {}),  # before it (a clock set back)
        (3600.0, {"signature": [0.5]}),  # among other options
        (3600.0, {"chosen": [7] * 41}),  # a competitor this fit does not have
    ],
)
def test_choices_that_are_stale_or_not_this_fits_are_made_afresh(at, change):
    leads = np.arange(1, 289)
    first = lead_errors(_walk_past(1), leads, 0.8, at=0.0).calibration
    kept = dataclasses.replace(first, **{k: v[: len(first.probe)] if k == "chosen" else v for k, v in change.items()})
    plan = lead_errors(_walk_past(1), leads, 0.8, at=at, reuse=kept)
    assert plan.calibration is not kept and plan.calibration.at == at


def test_a_calibration_read_back_from_a_state_file_is_the_one_written_and_garbage_is_none():
    first = lead_errors(_walk_past(1), np.arange(1, 289), 0.8, at=5.0).calibration
    assert Calibration.from_json(orjson.loads(orjson.dumps(first.to_json()))) == first
    # Earlier versions', without the competitors' shares or the band's scales, are chosen afresh rather than read
    # as all-Prophet or unscaled.
    earlier = [{key: value for key, value in first.to_json().items() if key != drop} for drop in ("mixes", "scales")]
    for garbage in (None, {}, {"at": "x"}, {**first.to_json(), "tails": [0.1]}, *earlier):
        assert Calibration.from_json(garbage) is None


def test_the_band_shrinks_to_the_size_of_the_mixed_forecasts_past_errors():
    rng = np.random.default_rng(12)
    n = 4000
    residuals = rng.normal(0, 1, n)  # the model's errors at every lead
    # A level whose next value errs as much as the model, independently: the combination is about half each.
    level = rng.normal(0, np.sqrt(0.5), n)
    past = PastErrors(residuals, [3], False, competitors=[Competitor(level, level, level_steps=1)])
    plan = lead_errors(past, np.array([1]), 0.8)
    chosen = plan.calibration.chosen[0]
    errors = residuals[1:] if chosen == -1 else level[1:] - level[:-1]
    low, high = quantiles_at(errors, plan.calibration.tails[0])
    scale = plan.calibration.scales[0]
    # Half the chosen one, half an even mix: 0.75 and 0.25 of two independent errors, sqrt(0.625) as large.
    assert scale == pytest.approx(np.sqrt(0.625), abs=0.03)
    assert plan.low[0] == pytest.approx(scale * low) and plan.high[0] == pytest.approx(scale * high)


def test_where_the_combination_errs_no_less_than_the_chosen_candidate_the_choice_stands():
    rng = np.random.default_rng(8)
    level = np.where(rng.random(3000) < 0.03, 1e6, 0.0)  # 0 but for rare spikes: the recent level is exactly 0
    residuals = rng.normal(0, 1e5, 3000)
    plan = lead_errors(PastErrors(residuals, [3], False, competitors=[Competitor(level, level)]), np.arange(1, 13), 0.8)
    assert set(plan.calibration.chosen) == {0}
    assert (plan.shares == 1.0).all()
