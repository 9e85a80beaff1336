"""Exposition: the forecasts as gauges, and the service's own metrics.

A scrape reads an immutable snapshot and interpolates; it never queries
Prometheus or touches a model. Lines it emits, per series and horizon::

    forecast_yhat{forecast="http_requests",horizon="0s",job="api"} 412.7
    forecast_yhat_lower{forecast="http_requests",horizon="0s",job="api"} 380.1
    forecast_yhat_upper{forecast="http_requests",horizon="1h",job="api"} 455.0

The ``horizon="0s"`` sample scraped at time t is the forecast for t; ``horizon="1h"``
is the forecast for t+1h. A target outside the fitted frame is not exposed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

from forecaster.config import Forecast
from forecaster.model import FIT_FAILED, MAX_SERIES, PREDICT_FAILED, TOO_FEW_POINTS, Frame
from forecaster.prometheus import Labels
from forecaster.state import ForecastState

RESERVED_LABELS = ("forecast", "horizon")
STAGES = ("query", "fit", "predict", "state")
SKIP_REASONS = (TOO_FEW_POINTS, FIT_FAILED, PREDICT_FAILED, MAX_SERIES)


def exposed_labels(series_labels: Labels) -> Labels:
    """A series' own labels as exposed: ``forecast`` and ``horizon`` become ``exported_*``."""
    out = {}
    for name, value in series_labels.items():
        if name == "__name__":
            continue
        out[f"exported_{name}" if name in RESERVED_LABELS else name] = value
    return out


@dataclass(frozen=True)
class PublishedSeries:
    labels: Labels
    frame: Frame


@dataclass(frozen=True)
class PublishedForecast:
    name: str
    fit_time: float
    horizons: tuple[tuple[str, float], ...]
    series: tuple[PublishedSeries, ...]


class Board:
    """The latest forecast of every forecast name; replaced whole, read without locks."""

    def __init__(self, forecasts: Sequence[Forecast]) -> None:
        self._horizons = {f.name: (("0s", 0.0), *((h.text, h.seconds) for h in f.horizons)) for f in forecasts}
        self._order = [f.name for f in forecasts]
        self._snapshot: dict[str, PublishedForecast] = {}
        self._lock = threading.Lock()

    def publish(self, state: ForecastState) -> None:
        published = PublishedForecast(
            name=state.forecast,
            fit_time=state.fit_time,
            horizons=self._horizons[state.forecast],
            series=tuple(PublishedSeries(exposed_labels(s.labels), s.frame) for s in state.series),
        )
        with self._lock:
            snapshot = dict(self._snapshot)
            snapshot[state.forecast] = published
            self._snapshot = snapshot

    def snapshot(self) -> list[PublishedForecast]:
        current = self._snapshot
        return [current[name] for name in self._order if name in current]


class ForecastCollector:
    """Renders the board as forecast_yhat, forecast_yhat_lower and forecast_yhat_upper."""

    def __init__(self, board: Board, clock: Callable[[], float] = time.time) -> None:
        self._board = board
        self._clock = clock

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        yhat, lower, upper = self._families()
        for forecast in self._board.snapshot():
            for horizon_text, horizon_seconds in forecast.horizons:
                target = now + horizon_seconds
                for series in forecast.series:
                    point = series.frame.at(target)
                    if point is None:
                        continue
                    labels = {"forecast": forecast.name, "horizon": horizon_text, **series.labels}
                    yhat.add_sample("forecast_yhat", labels, point[0])
                    lower.add_sample("forecast_yhat_lower", labels, point[1])
                    upper.add_sample("forecast_yhat_upper", labels, point[2])
        yield from (yhat, lower, upper)

    @staticmethod
    def _families() -> tuple[Metric, Metric, Metric]:
        return (
            Metric("forecast_yhat", "Predicted value of the series at scrape time plus horizon.", "gauge"),
            Metric("forecast_yhat_lower", "Lower edge of the prediction band (interval_width).", "gauge"),
            Metric("forecast_yhat_upper", "Upper edge of the prediction band (interval_width).", "gauge"),
        )


class SelfMetrics:
    """The service's own metrics, created up front so every forecast shows zeros from the start."""

    def __init__(self, registry: CollectorRegistry, forecasts: Sequence[Forecast]) -> None:
        self.last_success = Gauge(
            "forecaster_last_success_timestamp_seconds",
            "Fit time of the forecast being served (unix seconds).",
            ["forecast"],
            registry=registry,
        )
        self.cycle_duration = Gauge(
            "forecaster_cycle_duration_seconds",
            "Wall time of the latest retrain of a forecast: query, fits, predictions and state write.",
            ["forecast"],
            registry=registry,
        )
        self.fit_duration = Histogram(
            "forecaster_fit_duration_seconds",
            "Time to fit one series and predict its frame.",
            ["forecast"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.errors = Counter(
            "forecaster_errors_total",
            "Failures by forecast and stage (query, fit, predict, state).",
            ["forecast", "stage"],
            registry=registry,
        )
        self.series = Gauge(
            "forecaster_series", "Series whose forecast is being served.", ["forecast"], registry=registry
        )
        self.skipped = Counter(
            "forecaster_series_skipped_total",
            "Series left out of a retrain, by reason.",
            ["forecast", "reason"],
            registry=registry,
        )
        self.points_fetched = Counter(
            "forecaster_query_points_total",
            "Samples read from Prometheus for a forecast.",
            ["forecast"],
            registry=registry,
        )
        for forecast in forecasts:
            for stage in STAGES:
                self.errors.labels(forecast.name, stage)
            for reason in SKIP_REASONS:
                self.skipped.labels(forecast.name, reason)
            self.series.labels(forecast.name)
            self.cycle_duration.labels(forecast.name)
            self.fit_duration.labels(forecast.name)
            self.points_fetched.labels(forecast.name)
