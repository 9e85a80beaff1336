"""The backtest report: origins, MASE's scale and the summary over (series, horizon) pairs."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.backtest import MODEL, Score, SeriesReport, choose_origins, naive_scale, summarize, write_table
from forecaster.duration import DAY
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
    assert summary.losing == [("s", 3600.0, 2.5), ("s", 3600.0, 1.5)]  # worst first; 1.0 is not listed
    assert (summary.calibrated, summary.series) == (1, 2)


def test_origins_move_closer_on_a_history_too_short_for_their_spacing():
    # 21 days of data, a 14-day reach: six origins a reach apart would start 84 days before the data.
    origins = choose_origins(21 * DAY, 6, 14 * DAY, 14 * DAY, STEP, earliest=2 * DAY)
    assert len(origins) == 6 and origins[0] >= 2 * DAY and origins[-1] == 7 * DAY
    assert len(set(origins)) == 6 and all(o % STEP == 0 for o in origins)
    # With room enough, nothing changes.
    assert choose_origins(10 * DAY + 17.0, 4, DAY, DAY, STEP, earliest=0.0) == [6 * DAY, 7 * DAY, 8 * DAY, 9 * DAY]


def test_the_table_names_whole_series_and_judges_the_band_by_interval_width():
    import dataclasses
    import io

    name = 'disk_free{device="sda1", instance="db-1", job="node", mountpoint="/data"}'
    out = io.StringIO()
    score = dataclasses.replace(_score(1.0), series=name)
    summary = write_table([SeriesReport(name, [], [score], 0.83)], 0.8, out)
    assert name in out.getvalue()
    assert "0.10x" in out.getvalue()  # the model's MAE over the best baseline's, per pair
    assert "pairs at 1.25x the best baseline or worse: 0" in out.getvalue()
    assert "80% band covers 70%–90% of what followed: 1 of 1" in out.getvalue()
    assert (summary.calibrated, summary.series) == (1, 1)
