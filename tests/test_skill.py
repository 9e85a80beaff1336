"""The PromQL baselines, the error metrics and the live score of each replaced forecast."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from forecaster.config import parse
from forecaster.duration import DAY, WEEK
from forecaster.exporter import Board, SelfMetrics, SkillCollector
from forecaster.model.frame import Frame
from forecaster.series import Series
from forecaster.skill import Skill, baselines, coverage, mae, score_previous
from forecaster.state import StateStore
from forecaster.trainer import Trainer

STEP = 300.0
T = np.arange(0, 15 * DAY, STEP)


def test_last_value_and_seasonal_offsets_only_look_before_the_origin():
    ys = T.copy()  # the value is its own timestamp, so each baseline says which sample it used
    origin = 14 * DAY
    targets = origin + np.array([STEP, 3600.0, DAY, DAY + STEP])
    out = baselines(T, ys, origin, targets)
    assert out["last_value"].tolist() == [origin - STEP] * 4
    # A day ahead, "a day earlier" is the origin itself, which the history stops just short of.
    assert out["offset_1d"].tolist() == [targets[0] - DAY, targets[1] - DAY, origin - STEP, targets[3] - 2 * DAY]
    assert out["offset_1w"].tolist() == (targets - WEEK).tolist()


def test_predict_linear_extrapolates_the_least_squares_line_over_six_hours():
    ys = np.where(T < 14 * DAY - 6 * 3600, 1000.0, 2.0 * T / 3600)  # only the last six hours are a clean line
    origin = 14 * DAY
    target = np.array([origin + 3 * 3600])
    assert baselines(T, ys, origin, target)["predict_linear_6h"][0] == pytest.approx(2.0 * target[0] / 3600)


def test_metrics():
    actual = np.array([1.0, 2.0, 3.0, np.nan])
    assert mae(actual, np.array([2.0, 2.0, 1.0, 5.0])) == pytest.approx(1.0)
    assert coverage(actual, np.array([0.0, 2.5, 2.0, 0.0]), np.array([2.0, 3.0, 4.0, 0.0])) == pytest.approx(2 / 3)
    assert math.isnan(mae(np.array([np.nan]), np.array([1.0])))


def test_skill_scores_the_previous_frame_on_what_arrived_since():
    ts = np.arange(0, 2 * DAY, STEP)
    ys = 100 + 10 * np.sin(2 * np.pi * ts / DAY)
    made_at = DAY
    ds = made_at + STEP * np.arange(13)
    truth = 100 + 10 * np.sin(2 * np.pi * ds / DAY)
    exact = score_previous(Frame(ds, truth, truth - 1, truth + 1), made_at, ts, ys, made_at + 3600)
    assert exact is not None and exact.mae == pytest.approx(0) and exact.skill == pytest.approx(1)
    assert exact.coverage == 1.0 and exact.points == 12
    off = truth + 50
    worse = score_previous(Frame(ds, off, off - 1, off + 1), made_at, ts, ys, made_at + 3600)
    assert worse is not None and worse.skill < 0 and worse.coverage == 0.0
    assert score_previous(Frame(ds, truth, truth, truth), made_at, ts, ys, made_at) is None


def test_skill_collector_exposes_each_series_under_its_forecast():
    registry = CollectorRegistry()
    skill = SkillCollector()
    registry.register(skill)
    skill.publish("cpu", [({"instance": "a", "forecast": "x"}, Skill(2.0, 0.75, -0.5, 4))])
    labels = {"forecast": "cpu", "instance": "a", "job": "", "exported_forecast": "x"}
    assert registry.get_sample_value("forecaster_model_mae", labels) == 2.0
    assert registry.get_sample_value("forecaster_model_coverage", labels) == 0.75
    assert registry.get_sample_value("forecaster_model_skill", labels) == -0.5
    skill.publish("cpu", [])
    assert registry.get_sample_value("forecaster_model_skill", labels) is None


class _ConstantSource:
    """query_range of one series that has been 3.0 since forever; a constant series needs no Prophet fit."""

    def query_range(self, query: str, start: float, end: float, step: float, *, forecast: str) -> list[Series]:
        t = np.arange(math.ceil(start / step) * step, end + step / 2, step)
        return [Series({"instance": "a"}, t, np.full(len(t), 3.0))]


def test_each_retrain_exports_how_the_previous_forecast_did(tmp_path):
    cfg = parse(
        {
            "prometheus": {"url": "http://127.0.0.1:1"},
            "state_dir": str(tmp_path),
            "workers": 0,
            "defaults": {"history": "1d", "step": "1m", "horizon": "2h", "horizons": [], "min_points": 3},
            "forecasts": [{"name": "flat", "query": "q"}],
        }
    )
    registry = CollectorRegistry()
    clock = [1_700_000_040.0]
    trainer = Trainer(
        _ConstantSource(),  # type: ignore[arg-type]
        StateStore(tmp_path),
        Board(cfg.forecasts),
        SelfMetrics(registry, cfg.forecasts),
        clock=lambda: clock[0],
    )
    labels = {"forecast": "flat", "instance": "a", "job": ""}
    assert trainer.run(cfg.forecasts[0]) is not None
    assert registry.get_sample_value("forecaster_model_skill", labels) is None  # nothing to score yet
    clock[0] += 3600
    assert trainer.run(cfg.forecasts[0]) is not None
    assert registry.get_sample_value("forecaster_model_mae", labels) == 0.0
    assert registry.get_sample_value("forecaster_model_coverage", labels) == 1.0
    assert registry.get_sample_value("forecaster_model_skill", labels) == 0.0  # exact, and so was last value
    # Another retrain within that step: nothing arrived since the served forecast was made, and the scores stay.
    clock[0] += 30
    assert trainer.run(cfg.forecasts[0]) is not None
    assert registry.get_sample_value("forecaster_model_mae", labels) == 0.0
