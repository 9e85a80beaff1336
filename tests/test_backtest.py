"""The backtest report: origins, MASE's scale and the summary over (series, horizon) pairs."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.backtest import MODEL, Score, SeriesReport, choose_origins, naive_scale, summarize
from forecaster.model.seasonality import DAY
from forecaster.skill import BASELINES

STEP = 300.0


def test_mase_scales_by_the_one_step_naive_error():
    assert naive_scale(np.array([1.0, 3.0, 2.0])) == pytest.approx(1.5)


def test_origins_are_step_aligned_spaced_and_leave_room_for_the_horizon():
    origins = choose_origins(10 * DAY + 17.0, 4, DAY, DAY, STEP)
    assert origins == [6 * DAY, 7 * DAY, 8 * DAY, 9 * DAY]


def _score(model: float, **baseline: float) -> Score:
    errors = {MODEL: model, **{b: baseline.get(b, 10.0) for b in BASELINES}}
    return Score("s", 3600.0, errors, dict(errors), 0.8, 10)


def test_summary_counts_wins_per_baseline_and_against_the_best_in_hindsight():
    reports = [
        SeriesReport("a", [], [_score(1.0), _score(5.0, last_value=2.0)], 0.8),
        SeriesReport("b", [], [_score(3.0, offset_1d=4.0, offset_1w=2.0)], 0.5),
    ]
    summary = summarize(reports, 0.8)
    assert summary.pairs == 3
    assert summary.wins == {"last_value": 2, "offset_1d": 3, "offset_1w": 2, "predict_linear_6h": 3}
    assert summary.wins_best == 1
    assert summary.median_ratio == pytest.approx(1.5)
    assert (summary.calibrated, summary.series) == (1, 2)
