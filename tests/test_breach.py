"""Predicted breaches: crossing times, threshold matching, config, exposition, state, the trainer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from forecaster import config as config_module
from forecaster.breach import first_crossing, match_threshold, seconds_until_breach
from forecaster.errors import ConfigError, QueryError
from forecaster.exporter import Board, ForecastCollector, SelfMetrics
from forecaster.model.frame import Frame
from forecaster.series import series_key
from forecaster.settings import BreachRule
from forecaster.state import ForecastState, SeriesState, StateStore
from forecaster.trainer import Trainer
from tests.helpers import Rendered

STEP = 300.0
T0 = 1_700_000_000.0


def _frame(yhat: list[float] | np.ndarray, spread: float = 0.0) -> Frame:
    y = np.asarray(yhat, dtype=np.float64)
    ds = T0 + STEP * np.arange(len(y), dtype=np.float64)
    return Frame(ds, y, y - spread, y + spread)


def _config(**breach: object) -> config_module.Config:
    return config_module.parse(
        {
            "prometheus": {"url": "http://127.0.0.1:9090"},
            "defaults": {"breach": {"below": 0}},
            "forecasts": [
                {"name": "disk", "query": "disk_free_bytes", "step": "5m", "horizon": "1d"},
                {"name": "sized", "query": "disk_free_bytes", "breach": breach or {"above": 90}},
            ],
        }
    )


# --- crossing times ---------------------------------------------------------------------------


def test_first_crossing_interpolates_between_frame_points() -> None:
    ds = np.array([0.0, 100.0, 200.0])
    assert first_crossing(ds, np.array([10.0, 6.0, 2.0]), 4.0, "below") == pytest.approx(150.0)
    assert first_crossing(ds, np.array([1.0, 2.0, 5.0]), 3.5, "above") == pytest.approx(150.0)


def test_first_crossing_counts_touching_and_reports_no_crossing_as_none() -> None:
    ds = np.array([0.0, 100.0, 200.0])
    assert first_crossing(ds, np.array([10.0, 0.0, -5.0]), 0.0, "below") == pytest.approx(100.0)
    assert first_crossing(ds, np.array([10.0, 8.0, 6.0]), 0.0, "below") is None
    assert first_crossing(ds, np.array([10.0, 8.0, 6.0]), 0.0, "above") == 0.0


def test_seconds_until_breach_is_relative_to_now_and_uses_the_chosen_band() -> None:
    # 100 falling by 1 a step: yhat reaches 0 at step 100, the lower band (spread 10) at step 90.
    frame = _frame(100.0 - np.arange(200.0), spread=10.0)
    now = T0 + 10 * STEP + 30
    assert seconds_until_breach(frame, "yhat", 0.0, "below", now) == pytest.approx(100 * STEP - 10 * STEP - 30)
    assert seconds_until_breach(frame, "yhat_lower", 0.0, "below", now) == pytest.approx(80 * STEP - 30)
    assert seconds_until_breach(frame, "yhat_upper", 0.0, "below", now) == pytest.approx(100 * STEP - 30)


def test_seconds_until_breach_zero_when_already_across_inf_when_never_none_past_frame() -> None:
    falling = _frame(100.0 - np.arange(200.0))
    assert seconds_until_breach(falling, "yhat", 0.0, "below", T0 + 150 * STEP) == 0.0
    # Crossed at frame start but back above by now: the past no longer counts.
    dip = _frame([-1.0, 5.0, 5.0, -5.0])
    assert seconds_until_breach(dip, "yhat", 0.0, "below", T0 + STEP) == pytest.approx(STEP + STEP * 5 / 10)
    flat = _frame(np.full(100, 42.0))
    assert seconds_until_breach(flat, "yhat", 0.0, "below", T0 + STEP) == math.inf
    assert seconds_until_breach(flat, "yhat", 0.0, "below", T0 + 100 * STEP) is None


def test_seconds_until_breach_before_the_frame_counts_from_now() -> None:
    frame = _frame([10.0, 0.0])
    assert seconds_until_breach(frame, "yhat", 0.0, "below", T0 - 60) == pytest.approx(STEP + 60)


def test_unknown_direction_or_band_is_refused() -> None:
    with pytest.raises(ValueError, match="direction"):
        first_crossing(np.array([0.0]), np.array([1.0]), 0.0, "sideways")
    with pytest.raises(ValueError, match="band"):
        seconds_until_breach(_frame([1.0, 2.0]), "yhat_middle", 0.0, "below", T0)


# --- threshold matching -----------------------------------------------------------------------


def test_match_threshold_uses_the_labels_both_sides_share() -> None:
    sizes = [
        ({"instance": "a", "mountpoint": "/", "fstype": "ext4"}, 100.0),
        ({"instance": "a", "mountpoint": "/data", "fstype": "xfs"}, 500.0),
        ({"instance": "b", "mountpoint": "/", "fstype": "ext4"}, 200.0),
    ]
    assert match_threshold({"instance": "a", "mountpoint": "/data"}, sizes) == 500.0
    assert match_threshold({"instance": "b", "mountpoint": "/", "job": "node"}, sizes) == 200.0
    assert match_threshold({"instance": "c", "mountpoint": "/"}, sizes) is None


def test_match_threshold_refuses_ambiguity_and_nan_but_takes_a_label_free_threshold() -> None:
    sizes = [({"instance": "a", "mountpoint": "/"}, 100.0), ({"instance": "a", "mountpoint": "/data"}, 500.0)]
    assert match_threshold({"instance": "a"}, sizes) is None
    assert match_threshold({"instance": "a"}, [({}, 7.0)]) == 7.0
    assert match_threshold({"instance": "a"}, [({}, math.nan)]) is None


# --- configuration ----------------------------------------------------------------------------


def test_breach_defaults_apply_and_bands_default_by_direction() -> None:
    config = _config()
    disk, sized = config.forecasts
    assert disk.breach == BreachRule(direction="below", band="yhat_lower", threshold=0)
    assert sized.breach is not None and (sized.breach.direction, sized.breach.band) == ("above", "yhat_upper")
    query = _config(threshold_query="size_bytes * 0.9", direction="above", band="yhat").forecasts[1].breach
    assert query == BreachRule(direction="above", band="yhat", threshold=None, threshold_query="size_bytes * 0.9")
    assert query.threshold_of(42.0) == 42.0 and disk.breach.threshold_of(42.0) == 0


@pytest.mark.parametrize(
    ("breach", "message"),
    [
        ({"above": 1, "below": 0}, "forecasts[1].breach: set exactly one of above: N, below: N or threshold_query"),
        ({"band": "yhat"}, "forecasts[1].breach: set exactly one of"),
        ({"threshold_query": "size"}, "forecasts[1].breach: threshold_query needs direction: above or below"),
        ({"below": 0, "direction": "below"}, "forecasts[1].breach: direction goes with threshold_query"),
        ({"below": 0, "band": "median"}, "forecasts[1].breach.band:"),
        ({"below": math.inf}, "forecasts[1].breach.below:"),
        ({"below": 0, "when": "soon"}, "forecasts[1].breach.when: unknown key"),
    ],
)
def test_bad_breach_config_is_reported_with_its_path(breach: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(**breach)
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


# --- exposition and state ---------------------------------------------------------------------


def _registry(config: config_module.Config, states: list[ForecastState], now: float) -> CollectorRegistry:
    board = Board(config.forecasts)
    for state in states:
        board.publish(state)
    registry = CollectorRegistry()
    registry.register(Rendered(ForecastCollector(board, clock=lambda: now)))
    return registry


def test_forecast_breach_seconds_is_exposed_per_series_at_scrape_time() -> None:
    config = _config()
    falling = SeriesState({"instance": "db-1", "forecast": "legacy"}, _frame(100.0 - np.arange(200.0), spread=10))
    flat = SeriesState({"instance": "db-2"}, _frame(np.full(200, 50.0)))
    state = ForecastState("disk", "disk_free_bytes", T0, [falling, flat])
    registry = _registry(config, [state], T0 + 30)
    labels = {"forecast": "disk", "instance": "db-1", "job": "", "exported_forecast": "legacy"}
    assert registry.get_sample_value("forecast_breach_seconds", labels) == pytest.approx(90 * STEP - 30)
    assert (
        registry.get_sample_value("forecast_breach_seconds", {"forecast": "disk", "instance": "db-2", "job": ""})
        == math.inf
    )
    later = _registry(config, [state], T0 + 60 * STEP)
    assert later.get_sample_value("forecast_breach_seconds", labels) == pytest.approx(30 * STEP)


def test_no_breach_metric_without_breach_config_or_threshold() -> None:
    config = config_module.parse(
        {"prometheus": {"url": "http://127.0.0.1:9090"}, "forecasts": [{"name": "plain", "query": "q"}]}
    )
    state = ForecastState("plain", "q", T0, [SeriesState({"job": "a"}, _frame([1.0, 0.0]))])
    registry = _registry(config, [state], T0)
    assert (
        registry.get_sample_value("forecast_yhat", {"forecast": "plain", "horizon": "0s", "instance": "", "job": "a"})
        == 1.0
    )
    assert (
        registry.get_sample_value("forecast_breach_seconds", {"forecast": "plain", "instance": "", "job": "a"}) is None
    )
    query_config = _config(threshold_query="size", direction="above")
    unmatched = ForecastState("sized", "disk_free_bytes", T0, [SeriesState({"job": "a"}, _frame([1.0, 0.0]))])
    assert (
        _registry(query_config, [unmatched], T0).get_sample_value(
            "forecast_breach_seconds", {"forecast": "sized", "instance": "", "job": "a"}
        )
        is None
    )


def test_query_thresholds_survive_a_restart_through_the_state_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    series = [SeriesState({"job": "a"}, _frame([1.0, 3.0]), threshold=2.0), SeriesState({"job": "b"}, _frame([1.0]))]
    store.save(ForecastState("sized", "disk_free_bytes", T0, series))
    stored = json.loads(store.path("sized").read_text())
    assert [s.get("threshold") for s in stored["series"]] == [2.0, None]
    loaded = store.load("sized", "disk_free_bytes")
    assert loaded is not None and [s.threshold for s in loaded.series] == [2.0, None]
    registry = _registry(_config(threshold_query="size", direction="above"), [loaded], T0)
    assert registry.get_sample_value(
        "forecast_breach_seconds", {"forecast": "sized", "instance": "", "job": "a"}
    ) == pytest.approx(STEP / 2)


# --- the trainer's threshold step -------------------------------------------------------------


class _ThresholdSource:
    def __init__(self, answers: list[list[tuple[dict[str, str], float]] | QueryError]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, float, str]] = []

    def query(self, query: str, at: float, *, forecast: str) -> list[tuple[dict[str, str], float]]:
        self.calls.append((query, at, forecast))
        answer = self.answers.pop(0)
        if isinstance(answer, QueryError):
            raise answer
        return answer


def test_trainer_reads_thresholds_at_fit_time_and_keeps_them_when_the_query_fails(tmp_path: Path) -> None:
    config = _config(threshold_query="size_bytes", direction="above")
    forecast = config.forecasts[1]
    failure = QueryError("Prometheus answered HTTP 503", forecast="sized", query="size_bytes")
    source = _ThresholdSource([[({"instance": "a"}, 10.0), ({"instance": "b"}, 20.0)], failure])
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry, config.forecasts)
    trainer = Trainer(source, StateStore(tmp_path), Board(config.forecasts), metrics)  # type: ignore[arg-type]
    fitted = [SeriesState({"instance": "a"}, _frame([1.0])), SeriesState({"instance": "c"}, _frame([1.0]))]

    first = trainer._attach_thresholds(forecast, fitted, T0, previous={})
    assert source.calls == [("size_bytes", T0, "sized")]
    assert [s.threshold for s in first] == [10.0, None]

    served = {series_key(s.labels): s for s in first}
    kept = trainer._attach_thresholds(forecast, fitted, T0 + STEP, previous=served)
    assert [s.threshold for s in kept] == [10.0, None]
    assert registry.get_sample_value("forecaster_errors_total", {"forecast": "sized", "stage": "query"}) == 1.0
