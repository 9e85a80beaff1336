"""The band: quantiles of the latest errors, tails moved out where the replay under-covered."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from forecaster.model import band
from forecaster.model.band import quantiles, quantiles_at, tail_share, year_before
from forecaster.model.correction import PastErrors, lead_errors


def test_the_band_is_calibrated_on_the_latest_errors():
    rng = np.random.default_rng(4)
    calm, volatile = rng.normal(0, 1, 3000), rng.normal(0, 10, 1000)
    residuals = np.concatenate((calm, volatile))  # volatility went up in the latest quarter
    plan = lead_errors(PastErrors(residuals, [3], False), np.array([1]), 0.8)
    assert plan.high[0] - plan.low[0] > 20  # the latest quarter's spread (±12.8), not the whole history's


def test_the_band_tails_move_out_only_where_the_spread_of_errors_changed():
    rng = np.random.default_rng(7)
    steady = rng.normal(0, 1, 4000)
    # Any shortfall in the replay counts, so a steady series may move one step out (an 80% band covering ~85%).
    assert tail_share(steady, 0.1, 12, 1000) >= 0.075
    # Calm and stormy spells, each as long as the window: the calm one's errors under-cover the storm that follows.
    spells = np.repeat([1.0, 6.0, 1.0, 6.0], 1000)
    changing = rng.normal(0, 1, 4000) * spells
    assert tail_share(changing, 0.1, 12, 1000) <= 0.03
    assert tail_share(changing[:1500], 0.1, 12, 1000) == 0.1  # too short to replay: the nominal tails


def test_a_band_that_is_not_replayed_keeps_its_nominal_tails():
    rng = np.random.default_rng(7)
    changing = rng.normal(0, 1, 4000) * np.repeat([1.0, 6.0, 1.0, 6.0], 1000)  # the replay would move its tails out
    latest = changing[-1000:]
    assert quantiles(changing, 0.1, 12, replayed=False) == tuple(np.quantile(latest, [0.1, 0.9]))
    low, high = quantiles(changing, 0.1, 12)
    assert low < np.quantile(latest, 0.1) and high > np.quantile(latest, 0.9)


@pytest.mark.parametrize("size", [1, 7, 20, 999, 4032])
def test_the_band_quantiles_are_numpys_to_the_bit(size):
    rng = np.random.default_rng(size)
    errors = rng.standard_t(3, size) * 5
    errors[::5] = np.round(errors[::5])  # ties
    latest = errors[-max(size // 4, 20) :]
    for tail in (0.1, 0.075, 0.05, 0.03, 0.015, 0.0, 0.5):
        assert quantiles_at(errors, tail) == tuple(np.quantile(latest, [tail, 1 - tail]))


def _tail_share_directly(errors: np.ndarray, alpha: float, lead: int, window: int) -> float:
    """``tail_share`` spelled out: one check at a time, each later error tested against its check's band."""
    start = window + lead
    if len(errors) < start + window:
        return alpha
    bounds = np.linspace(start, len(errors), band.CHECKS + 1).astype(np.int64)
    for factor in band.TAIL_FACTORS:
        tail, inside = alpha * factor, 0
        for begin, end in itertools.pairwise(bounds):
            known = errors[begin - lead - window : begin - lead]
            position = np.array([tail, 1 - tail]) * (window - 1)
            ranked = np.sort(known)
            below = np.floor(position).astype(np.int64)
            above = np.minimum(below + 1, window - 1)
            low, high = ranked[below] + (position - below) * (ranked[above] - ranked[below])
            # Errors tied at one edge beyond its share of the tail move the other edge in by what they took.
            beneath, beyond = np.mean(ranked < low), np.mean(ranked > high)
            if tail - beneath > 1 / window:
                high = max(low, np.quantile(ranked, 1 - 2 * tail + beneath))
            if tail - beyond > 1 / window:
                low = min(high, np.quantile(ranked, 2 * tail - beyond))
            inside += int(((errors[begin:end] >= low) & (errors[begin:end] <= high)).sum())
        if inside / (len(errors) - start) >= 1 - 2 * alpha:
            return tail
    return alpha * band.TAIL_FACTORS[-1]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("zeros", [0.0, 0.8])
def test_the_replay_counts_each_later_error_against_the_band_of_its_own_check(seed, zeros):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(600, 5000))
    spells = np.repeat(rng.uniform(0.5, 6, 8), size // 8 + 1)[:size]
    errors = rng.normal(0, 1, size) * spells
    errors[::7] = np.round(errors[::7], 1)  # ties on the band's edges
    if zeros:
        # Bursts from an idle 0, whose share of the errors varies from check to check: tied at the lower edge.
        idle = np.repeat(rng.uniform(zeros - 0.3, zeros + 0.1, 8), size // 8 + 1)[:size]
        errors = np.where(rng.random(size) < idle, 0.0, np.abs(errors))
    for lead in (1, 12, 288):
        window = max(size // 4, 20)
        assert tail_share(errors, 0.1, lead, window) == _tail_share_directly(errors, 0.1, lead, window)


def test_errors_tied_at_one_edge_move_the_other_edge_in():
    # A series at exactly 0 but for bursts, forecast at 0: most errors are exactly 0, at the band's lower edge.
    rng = np.random.default_rng(3)
    bursts = rng.lognormal(8, 2, 4000)
    mostly = np.where(rng.random(4000) < 0.85, 0.0, bursts)
    assert np.quantile(mostly[-1000:], 0.9) > 0  # the equal-tailed band would reach into the bursts and cover 90%
    assert quantiles_at(mostly, 0.1) == (0.0, 0.0)  # the 0s alone are more than 80% of the errors
    often = np.where(rng.random(4000) < 0.6, 0.0, bursts)
    low, high = quantiles_at(often, 0.1)
    latest = often[-1000:]
    assert low == 0.0 and np.mean((latest >= low) & (latest <= high)) == pytest.approx(0.8, abs=0.002)
    # At the upper edge (a ratio pinned at 1, a forecast of 1), the lower edge moves up.
    assert quantiles_at(-often, 0.1) == pytest.approx((-high, 0.0))


def test_a_band_on_a_long_history_also_sees_the_season_ahead_as_it_went_a_year_ago():
    rng = np.random.default_rng(21)
    year, days = 365, 3 * 365
    # Calm but for one wild season each year: the one about to come, which the latest quarter has not seen.
    spread = np.where((np.arange(days) % year) < 60, 10.0, 1.0)
    aligned = rng.normal(0, 1, days) * spread
    aligned[days - year + 5] = np.nan
    known = aligned[np.isfinite(aligned)]
    season = year_before(aligned, known, year)
    window = len(aligned) // 4
    assert len(season) == window // 2 - 1  # the stretch that followed a year ago, its unknown error left out
    assert np.array_equal(season[:5], aligned[days - year : days - year + 5])
    short = aligned[: year + 10]
    assert len(year_before(aligned, known, None)) == 0 and len(year_before(short, short[np.isfinite(short)], year)) == 0
    calm_low, calm_high = quantiles_at(aligned, 0.1)
    low, high = quantiles_at(aligned, 0.1, season)
    assert high - low > 1.2 * (calm_high - calm_low)
    past = PastErrors(aligned, [1], False)
    assert (
        lead_errors(past, np.array([1]), 0.8).high[0]
        < lead_errors(PastErrors(aligned, [1], False, year=year), np.array([1]), 0.8).high[0]
    )
