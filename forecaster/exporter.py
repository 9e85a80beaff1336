"""Exposition: the forecasts as gauges, and the service's own metrics.

A scrape reads an immutable snapshot and interpolates; it never queries
Prometheus or touches a model. Lines it emits, per series and horizon::

    forecast_yhat{forecast="http_requests",horizon="0s",instance="",job="api"} 412.7
    forecast_yhat_lower{forecast="http_requests",horizon="0s",instance="",job="api"} 380.1
    forecast_yhat_upper{forecast="http_requests",horizon="1h",instance="",job="api"} 455.0

Every per-series line carries ``job`` and ``instance``, empty when the series
has none (here a ``sum by (job)``): scraped with ``honor_labels: true``, an
empty label keeps the target's own out, so the stored forecast has exactly the
real series' labels instead of ``job="forecaster"``.

The ``horizon="0s"`` sample scraped at time t is the forecast for t; ``horizon="1h"``
is the forecast for t+1h. A target outside the fitted frame is not exposed.

A forecast with ``breach`` set also emits, per series, the seconds from the
scrape until its band first crosses the threshold (``+Inf``: not within the frame)::

    forecast_breach_seconds{device="sda1",forecast="disk_free",instance="db-1",job="node"} 412380.5
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from forecaster.breach import seconds_until_breach
from forecaster.errors import SkipReason, Stage
from forecaster.series import Labels
from forecaster.settings import BreachRule, Forecast
from forecaster.skill import Skill
from forecaster.state import ForecastState, SeriesState

RESERVED_LABELS = ("forecast", "horizon")
# Labels Prometheus copies from the scrape target onto every sample that lacks them; with honor_labels: true
# a sample that has one, even empty, keeps it, and Prometheus then drops the empty label.
TARGET_LABELS = ("job", "instance")


def exposed_labels(series_labels: Labels) -> Labels:
    """A series' own labels as exposed on a scrape with ``honor_labels: true``.

    ``forecast`` and ``horizon`` become ``exported_*``; a missing ``job`` or
    ``instance`` is exposed empty, which keeps the target's own out of the stored series.
    """
    out = dict.fromkeys(TARGET_LABELS, "")
    for name, value in series_labels.items():
        if name == "__name__":
            continue
        out[f"exported_{name}" if name in RESERVED_LABELS else name] = value
    return out


@dataclass(frozen=True)
class PublishedForecast:
    """One forecast as scraped: its series with their labels as exposed (``labels[i]`` is ``series[i]``'s)."""

    name: str
    fit_time: float
    horizons: tuple[tuple[str, float], ...]
    series: tuple[SeriesState, ...]
    labels: tuple[Labels, ...]
    breach: BreachRule | None = None
    # Per horizon, each series' full label set as written on a scrape (``label_text``), and without the horizon.
    label_texts: tuple[tuple[str, ...], ...] = ()
    breach_label_texts: tuple[str, ...] = ()


class Board:
    """The latest forecast of every forecast name; replaced whole, read without locks."""

    def __init__(self, forecasts: Sequence[Forecast]) -> None:
        self._horizons = {f.name: (("0s", 0.0), *((h.text, h.seconds) for h in f.horizons)) for f in forecasts}
        self._order = [f.name for f in forecasts]
        self._breach = {f.name: f.breach for f in forecasts}
        self._snapshot: dict[str, PublishedForecast] = {}
        self._lock = threading.Lock()

    def publish(self, state: ForecastState) -> None:
        horizons = self._horizons[state.forecast]
        labels = tuple(exposed_labels(s.labels) for s in state.series)
        published = PublishedForecast(
            name=state.forecast,
            fit_time=state.fit_time,
            horizons=horizons,
            series=tuple(state.series),
            labels=labels,
            breach=self._breach[state.forecast],
            label_texts=tuple(
                tuple(label_text({"forecast": state.forecast, "horizon": text, **own}) for own in labels)
                for text, _ in horizons
            ),
            breach_label_texts=tuple(label_text({"forecast": state.forecast, **own}) for own in labels),
        )
        with self._lock:
            snapshot = dict(self._snapshot)
            snapshot[state.forecast] = published
            self._snapshot = snapshot

    def snapshot(self) -> list[PublishedForecast]:
        current = self._snapshot
        return [current[name] for name in self._order if name in current]


class ForecastCollector:
    """Renders the board as forecast_yhat, forecast_yhat_lower, forecast_yhat_upper and forecast_breach_seconds.

    The text is written here rather than by ``prometheus_client``, whose
    per-sample label checks and escaping took 265 ms a scrape for 2,000
    series (12,000 lines), on a service whose fits want both cores. Each
    series' labels are escaped and sorted once, when its forecast is
    published; a scrape only interpolates and formats numbers. The lines are
    those ``prometheus_client`` writes, in the text format and OpenMetrics
    alike (``tests/test_exporter.py`` compares them).
    """

    def __init__(self, board: Board, clock: Callable[[], float] = time.time) -> None:
        self._board = board
        self._clock = clock

    def render(self) -> str:
        now = self._clock()
        # One snapshot for the whole scrape, so a retrain landing mid-scrape cannot mix two fits.
        snapshot = self._board.snapshot()
        names = ("forecast_yhat", "forecast_yhat_lower", "forecast_yhat_upper")
        lines: list[list[str]] = [[_header(name, help_text)] for name, help_text in zip(names, _HELP, strict=True)]
        for forecast in snapshot:
            for (_, horizon_seconds), label_texts in zip(forecast.horizons, forecast.label_texts, strict=True):
                target = now + horizon_seconds
                for series, labels in zip(forecast.series, label_texts, strict=True):
                    point = series.frame.at(target)
                    if point is None:
                        continue
                    for out, name, value in zip(lines, names, point, strict=True):
                        out.append(f"{name}{labels} {_number(value)}\n")
        breaches = [_header("forecast_breach_seconds", _BREACH_HELP)]
        for forecast in snapshot:
            rule = forecast.breach
            if rule is None:
                continue
            for series, labels in zip(forecast.series, forecast.breach_label_texts, strict=True):
                threshold = rule.threshold_of(series.threshold)
                if threshold is None:
                    continue
                seconds = seconds_until_breach(series.frame, rule.band, threshold, rule.direction, now)
                if seconds is not None:
                    breaches.append(f"forecast_breach_seconds{labels} {_number(seconds)}\n")
        return "".join(itertools.chain(*lines, breaches))


_HELP = (
    "Predicted value of the series at scrape time plus horizon.",
    "Lower edge of the prediction band (interval_width).",
    "Upper edge of the prediction band (interval_width).",
)
_BREACH_HELP = (
    "Seconds from now until the forecast band first crosses the breach threshold; +Inf: not within the horizon."
)


# prometheus_client's own number format (Go's: 1e+06, +Inf, NaN), so the lines match its to the character.
_number: Callable[[float], str] = floatToGoString


def _header(name: str, help_text: str) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} gauge\n"


def label_text(labels: Labels) -> str:
    """``{a="1",b="2"}`` as ``prometheus_client`` writes it: names sorted, values escaped."""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in sorted(labels.items())) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class SkillCollector:
    """How each series' previous forecast did on the samples that arrived since, against the PromQL baselines::

        forecaster_model_mae{forecast="http_requests",instance="",job="api"} 3.2
        forecaster_model_coverage{forecast="http_requests",instance="",job="api"} 0.83
        forecaster_model_skill{forecast="http_requests",instance="",job="api"} 0.41

    Replaced whole per forecast after each retrain; a series without a score is not exposed.
    """

    def __init__(self) -> None:
        self._scores: dict[str, tuple[tuple[Labels, float, float, float], ...]] = {}
        self._lock = threading.Lock()

    def publish(self, forecast: str, scores: Sequence[tuple[Labels, Skill]]) -> None:
        """``scores`` holds each scored series' own labels and its score."""
        rows = tuple((exposed_labels(labels), s.mae, s.coverage, s.skill) for labels, s in scores)
        with self._lock:
            current = dict(self._scores)
            current[forecast] = rows
            self._scores = current

    def scores(self, forecast: str) -> tuple[tuple[Labels, float, float, float], ...]:
        """Each scored series of ``forecast``: its labels as exposed, MAE, coverage and skill."""
        return self._scores.get(forecast, ())

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        for forecast, rows in self._scores.items():
            for labels, *values in rows:
                for family, value in zip(families, values, strict=True):
                    family.add_sample(family.name, {"forecast": forecast, **labels}, value)
        yield from families

    @staticmethod
    def _families() -> tuple[Metric, Metric, Metric]:
        return (
            Metric("forecaster_model_mae", "Mean absolute error of the previous forecast since it was made.", "gauge"),
            Metric(
                "forecaster_model_coverage",
                "Share of the samples since the previous forecast that fell inside its band.",
                "gauge",
            ),
            Metric(
                "forecaster_model_skill",
                "1 - model MAE / best PromQL baseline MAE over the same samples; below 0 a baseline did better.",
                "gauge",
            ),
        )


class SelfMetrics:
    """The service's own metrics, created up front so every forecast shows zeros from the start."""

    def __init__(self, registry: CollectorRegistry, forecasts: Sequence[Forecast]) -> None:
        self.skill = SkillCollector()
        registry.register(self.skill)
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
        self.unchanged = Counter(
            "forecaster_fits_unchanged_total",
            "Series not refitted: their history and fit time were those of their last fit, whose forecast they keep.",
            ["forecast"],
            registry=registry,
        )
        self.points_fetched = Counter(
            "forecaster_query_points_total",
            "Samples read from Prometheus for a forecast.",
            ["forecast"],
            registry=registry,
        )
        for forecast in forecasts:
            for stage in Stage:
                self.errors.labels(forecast.name, stage)
            for reason in SkipReason:
                self.skipped.labels(forecast.name, reason)
            self.series.labels(forecast.name)
            self.cycle_duration.labels(forecast.name)
            self.fit_duration.labels(forecast.name)
            self.unchanged.labels(forecast.name)
            self.points_fetched.labels(forecast.name)
