"""The band: quantiles of the latest errors, tails moved out where the replay under-covered."""

from __future__ import annotations

import numpy as np

from forecaster.model.band import quantiles, tail_share
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
