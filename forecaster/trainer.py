"""One retrain of one forecast: query, fit every series, persist, publish.

A plain callable with its dependencies passed in, so it runs the same under
the scheduler, in ``forecaster forecast`` and in tests with a fake clock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from forecaster.config import Forecast
from forecaster.errors import QueryError
from forecaster.exporter import Board, SelfMetrics
from forecaster.model import FIT_FAILED, MAX_SERIES, PREDICT_FAILED, FitSpec, Skip, fit_predict
from forecaster.prometheus import PrometheusSource, Series, series_key
from forecaster.state import ForecastState, SeriesState, StateStore

log = logging.getLogger(__name__)

_STAGE_OF_REASON = {FIT_FAILED: "fit", PREDICT_FAILED: "predict"}


def fit_spec(forecast: Forecast) -> FitSpec:
    return FitSpec(
        step=forecast.step.seconds,
        horizon=forecast.horizon.seconds,
        interval_width=forecast.interval_width,
        min_points=forecast.min_points,
        prophet=dict(forecast.prophet),
    )


def format_labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


class Stopped(Exception):
    """The service is shutting down; the retrain was abandoned and the previous state kept."""


class Trainer:
    def __init__(
        self,
        source: PrometheusSource,
        store: StateStore,
        board: Board,
        metrics: SelfMetrics,
        *,
        clock: Callable[[], float] = time.time,
        stop: threading.Event | None = None,
    ) -> None:
        self._source = source
        self._store = store
        self._board = board
        self._metrics = metrics
        self._clock = clock
        self.stop = stop or threading.Event()
        self._current: dict[str, ForecastState] = {}
        self._reported: set[tuple[str, tuple[tuple[str, str], ...], str]] = set()

    def adopt(self, state: ForecastState) -> None:
        """Serve a state loaded from disk until the next retrain replaces it."""
        self._current[state.forecast] = state
        self._board.publish(state)
        self._metrics.last_success.labels(state.forecast).set(state.fit_time)
        self._metrics.series.labels(state.forecast).set(len(state.series))

    def current(self, name: str) -> ForecastState | None:
        return self._current.get(name)

    def run(self, forecast: Forecast) -> ForecastState | None:
        """Retrain ``forecast``; on failure keep serving the previous state and return None."""
        started = time.monotonic()
        try:
            return self._run(forecast)
        except Stopped:
            log.info("forecast %r: retrain abandoned for shutdown; the previous forecast stays", forecast.name)
            return None
        finally:
            self._metrics.cycle_duration.labels(forecast.name).set(time.monotonic() - started)

    def _run(self, forecast: Forecast) -> ForecastState | None:
        now = self._clock()
        step = forecast.step.seconds
        fit_time = math.floor(now / step) * step
        try:
            series = self._fetch(forecast, fit_time)
        except QueryError as exc:
            self._metrics.errors.labels(forecast.name, "query").inc()
            log.error("%s; keeping the previous forecast", exc)
            return None
        if not series:
            log.warning(
                "forecast %r: query %r returned no series; keeping the previous forecast", forecast.name, forecast.query
            )
            return None
        series = self._guard_cardinality(forecast, series)
        fitted = self._fit_all(forecast, series, fit_time)
        if not fitted:
            log.warning(
                "forecast %r: no series could be fitted this time; keeping the previous forecast", forecast.name
            )
            return None
        state = ForecastState(forecast.name, forecast.query, fit_time, fitted)
        try:
            self._store.save(state)
        except OSError as exc:
            self._metrics.errors.labels(forecast.name, "state").inc()
            log.error(
                "forecast %r: cannot write state to %s: %s; serving the new forecast from memory",
                forecast.name,
                self._store.root,
                exc,
            )
        self._current[forecast.name] = state
        self._board.publish(state)
        self._metrics.last_success.labels(forecast.name).set(fit_time)
        self._metrics.series.labels(forecast.name).set(len(fitted))
        log.info("forecast %r: fitted %d of %d series", forecast.name, len(fitted), len(series))
        return state

    def _fetch(self, forecast: Forecast, fit_time: float) -> list[Series]:
        """The history every series of ``forecast`` is fitted on, up to ``fit_time``."""
        series = self._source.query_range(
            forecast.query,
            fit_time - forecast.history.seconds,
            fit_time,
            forecast.step.seconds,
            forecast=forecast.name,
        )
        self._metrics.points_fetched.labels(forecast.name).inc(sum(len(s.timestamps) for s in series))
        return series

    def _fit_all(self, forecast: Forecast, series: list[Series], fit_time: float) -> list[SeriesState]:
        """Fit every series; a series that fails keeps its previous forecast, if it had one."""
        previous = {series_key(s.labels): s for s in (self._current.get(forecast.name) or _empty(forecast)).series}
        spec = fit_spec(forecast)
        fitted: list[SeriesState] = []
        for item in series:
            if self.stop.is_set():
                raise Stopped
            before = previous.get(series_key(item.labels))
            fit_started = time.monotonic()
            try:
                result = fit_predict(item.timestamps, item.values, fit_time, spec, before.params if before else None)
            except Skip as skip:
                self._skipped(forecast, item, skip)
                if before is not None and skip.reason in _STAGE_OF_REASON:
                    fitted.append(before)
                continue
            finally:
                self._metrics.fit_duration.labels(forecast.name).observe(time.monotonic() - fit_started)
            fitted.append(SeriesState(item.labels, result.frame, result.params, result.points))
        return fitted

    def _guard_cardinality(self, forecast: Forecast, series: list[Series]) -> list[Series]:
        if len(series) <= forecast.max_series:
            return series
        ordered = sorted(series, key=lambda s: series_key(s.labels))
        extra = len(ordered) - forecast.max_series
        self._metrics.skipped.labels(forecast.name, MAX_SERIES).inc(extra)
        log.warning(
            "forecast %r: query %r returned %d series, over max_series=%d; skipping %d. "
            "Narrow the query (aggregate with sum by (...), or add label matchers) or raise max_series.",
            forecast.name,
            forecast.query,
            len(ordered),
            forecast.max_series,
            extra,
        )
        return ordered[: forecast.max_series]

    def _skipped(self, forecast: Forecast, item: Series, skip: Skip) -> None:
        self._metrics.skipped.labels(forecast.name, skip.reason).inc()
        stage = _STAGE_OF_REASON.get(skip.reason)
        if stage:
            self._metrics.errors.labels(forecast.name, stage).inc()
        key = (forecast.name, series_key(item.labels), skip.reason)
        level = logging.DEBUG if key in self._reported else logging.WARNING
        self._reported.add(key)
        log.log(
            level,
            "forecast %r: series %s skipped (%s): %s",
            forecast.name,
            format_labels(item.labels),
            skip.reason,
            skip,
        )


def _empty(forecast: Forecast) -> ForecastState:
    return ForecastState(forecast.name, forecast.query, 0.0, [])
