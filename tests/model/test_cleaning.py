"""Preparing a history: the step grid, the transform, clipped spikes, bounds."""

from __future__ import annotations

import bottleneck as bn
import numpy as np
import pytest

from forecaster.duration import DAY
from forecaster.model.cleaning import bounds, centred, choose_transform, clip_outliers, held_at_edge, to_grid
from forecaster.model.options import FitSpec, ModelOptions

STEP = 300.0


def _spec(**model: object) -> FitSpec:
    return FitSpec(step=STEP, horizon=DAY, interval_width=0.8, min_points=20, model=ModelOptions(**model))  # type: ignore[arg-type]


def test_spikes_are_clipped_but_a_new_level_at_the_end_is_kept():
    rng = np.random.default_rng(0)
    y = 10 + rng.normal(0, 1, 600)
    y[[100, 300, 301]] = 5000.0
    y[-5:] = 60.0  # the start of a new level, or a burst: the past alone cannot tell
    out, clipped = clip_outliers(y, STEP, 5.0)
    assert clipped == 3
    assert out[[100, 300, 301]].max() < 20
    assert out[-5:].tolist() == [60.0] * 5


def test_a_daily_series_keeps_its_weekends_but_not_its_spikes():
    rng = np.random.default_rng(1)
    days = np.arange(1092)
    weekend = days % 7 >= 5
    y = 1e4 * np.where(weekend, 0.7, 1.0) * rng.lognormal(0, 0.03, len(days))
    y[[200, 640]] *= 3  # a weekday and a weekend spike
    y[641] = np.nan
    out, clipped = clip_outliers(y, DAY, 5.0)
    assert clipped == 2
    assert out[200] < 1.3e4 and out[640] < 1.2e4  # from 3e4 and 2.1e4
    # Every weekend dip, 30% below the weekdays' median, is what the fit must learn, not an outlier.
    changed = np.flatnonzero(np.isfinite(y) & (out != y))
    assert changed.tolist() == [200, 640]


@pytest.mark.parametrize(
    ("size", "window", "min_count"),
    [(4033, 73, 3), (30, 73, 3), (5, 11, 3), (2, 11, 3), (4033, 2016, 1008), (900, 2016, 1008)],
)
def test_centred_windows_are_pandas_centred_rolling_windows(size: int, window: int, min_count: int):
    import pandas as pd

    rng = np.random.default_rng(size + window)
    values = np.round(rng.normal(0, 100, size), 1)  # ties, as rounded metrics have
    values[rng.random(size) < 0.2] = np.nan
    rolling = pd.Series(values).rolling(window, center=True, min_periods=min_count)
    np.testing.assert_array_equal(centred(bn.move_median, values, window, min_count), rolling.median().to_numpy())
    # pandas sums with compensation, bottleneck without: the same means but for the last bits.
    np.testing.assert_allclose(
        centred(bn.move_mean, values, window, min_count), rolling.mean().to_numpy(), rtol=1e-9, atol=1e-9
    )


def test_samples_go_on_the_step_grid_with_gaps_left_empty():
    grid, y = to_grid(np.array([0.0, 300.0, 1200.0, 1490.0]), np.array([1.0, 2.0, 3.0, 4.0]), STEP)
    assert grid.tolist() == [-10.0, 290.0, 590.0, 890.0, 1190.0, 1490.0]
    assert np.isnan(y[2]) and np.isnan(y[3])
    assert y[[0, 1, 4, 5]].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_log_only_for_positive_heavy_tailed_series():
    rng = np.random.default_rng(1)
    assert choose_transform(rng.lognormal(0, 1.5, 2000), "auto")[0] == "log"
    assert choose_transform(100 + rng.normal(0, 1, 2000), "auto")[0] == "none"
    assert choose_transform(rng.normal(0, 1, 2000), "log")[0] == "none"  # negative values cannot be logged
    transform, offset = choose_transform(np.concatenate(([0.0], rng.lognormal(0, 1.5, 2000))), "auto")
    assert transform == "log" and offset > 0


def test_bounds_are_detected_conservatively_and_can_be_set():
    percent = np.array([3.0, 50.0, 99.0])
    assert bounds(percent, FitSpec(STEP, DAY, 0.8, 20, hint="node_cpu_utilization")) == (0.0, 100.0)
    assert bounds(percent, FitSpec(STEP, DAY, 0.8, 20, hint="requests")) == (0.0, None)
    assert bounds(np.array([-1.0, 1.0]), FitSpec(STEP, DAY, 0.8, 20, hint="ratio")) == (None, None)
    assert bounds(percent, _spec(bounds="none")) == (None, None)
    assert bounds(percent, _spec(lower=5.0)) == (5.0, None)


def test_a_series_pinned_at_its_maximum_or_minimum_is_bounded_there():
    rng = np.random.default_rng(5)
    busy = np.minimum(rng.normal(90, 10, 2000), 100.0)  # a CPU at 100 for a sixth of the time, under no telling name
    assert bounds(busy, FitSpec(STEP, DAY, 0.8, 20, hint="node_busy")) == (0.0, 100.0)
    assert bounds(-busy, FitSpec(STEP, DAY, 0.8, 20, hint="node_busy")) == (-100.0, None)
    # A count stepping between neighbouring values, or at its maximum only now and then, keeps its room to grow.
    replicas = rng.choice([4.0, 5.0], 2000, p=[0.4, 0.6])
    assert bounds(replicas, FitSpec(STEP, DAY, 0.8, 20, hint="replicas")) == (0.0, None)
    counts = rng.poisson(3, 2000).astype(float)
    assert bounds(counts, FitSpec(STEP, DAY, 0.8, 20, hint="requests")) == (0.0, None)


def test_what_followed_a_pinned_edge_is_the_share_still_there_and_the_band_of_the_rest():
    # At 100, it stays there with probability 0.9 a step; away from it, back at 100 with 0.3, else around 80.
    rng = np.random.default_rng(9)
    values, at_edge = np.empty(6000), True
    for i in range(len(values)):
        at_edge = rng.random() < (0.9 if at_edge else 0.3)
        values[i] = 100.0 if at_edge else rng.normal(80, 5)
    values[-1] = 100.0
    share, low, high = held_at_edge(values, 100.0, np.array([1, 2, 288]), 0.8, 3600.0)
    assert share[0] == pytest.approx(0.9, abs=0.02) and share[1] == pytest.approx(0.9**2 + 0.1 * 0.3, abs=0.03)
    assert share[2] == pytest.approx(0.75, abs=0.03)  # the chain's long-run share at the edge: 0.3 / 0.4
    assert high.tolist() == [100.0] * 3 and low[0] == 100.0  # the edge alone covers 90% a step ahead
    # A day ahead a quarter of what follows is around 80; the band takes only the share of it that 80% needs.
    assert 80 < low[2] < 90
    values[-1] = 99.0
    assert held_at_edge(values, 100.0, np.array([1]), 0.8, 3600.0) is None


def test_what_followed_a_pinned_edge_is_read_at_the_same_time_of_day_where_the_edge_keeps_hours():
    # An office's traffic: 0 from 19:00 to 7:00, busy in between; 28 days of 5-minute samples.
    rng = np.random.default_rng(10)
    t = np.arange(0, 28 * DAY, STEP)
    hour = (t % DAY) / 3600
    traffic = np.where((hour >= 7) & (hour < 19), 100 + rng.normal(0, 10, len(t)), 0.0)
    leads = np.array([12, 72])  # an hour and six hours ahead
    at_ten_at_night = traffic[: np.flatnonzero(hour == 22.0)[-1] + 1]
    share, _, _ = held_at_edge(at_ten_at_night, 0.0, leads, 0.8, STEP)
    assert share.tolist() == [1.0, 1.0]  # still at 0 at 23:00 and 4:00
    at_six_in_the_morning = traffic[: np.flatnonzero(hour == 6.0)[-1] + 1]
    share, _, _ = held_at_edge(at_six_in_the_morning, 0.0, leads, 0.8, STEP)
    assert share[1] < 0.05  # busy by noon; pooled over the night, half of the 0s were followed by 0s six hours on
