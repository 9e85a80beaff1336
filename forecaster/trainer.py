"""One retrain of one forecast: query, fit every series, persist, publish.

A plain callable with its dependencies passed in, so it runs the same under
the scheduler, in ``forecaster forecast`` and in tests with a fake clock and a
fake source (anything with the ``SeriesSource`` methods).

A series goes through one retrain as a ``Series`` (pulled, merged with the
cached history), a ``FitTask`` (sent to a worker) and a ``SeriesState``
(stored and published as it is).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from forecaster.breach import match_threshold
from forecaster.errors import QueryAbandoned, QueryError, SkipReason, Stage, Stopped
from forecaster.executor import Executor, FitTask, InlineExecutor
from forecaster.exporter import Board, SelfMetrics, exposed_labels
from forecaster.history import HistoryCache, merge, plan
from forecaster.series import Labels, Series, SeriesSource, format_labels, recent, series_key
from forecaster.settings import Forecast
from forecaster.shard import WHOLE, Shard
from forecaster.skill import Skill, score_previous
from forecaster.state import ForecastState, SeriesState, StateStore

log = logging.getLogger(__name__)

Previous = dict[tuple[tuple[str, str], ...], SeriesState]

# How much of each series' history the status page draws before its forecast, and in how many points at most.
RECENT_SPAN = 2 * 86400.0
RECENT_POINTS = 200


class Trainer:
    def __init__(
        self,
        source: SeriesSource,
        store: StateStore,
        board: Board,
        metrics: SelfMetrics,
        *,
        clock: Callable[[], float] = time.time,
        stop: threading.Event | None = None,
        history: HistoryCache | None = None,
        executor: Executor | None = None,
        shard: Shard = WHOLE,
    ) -> None:
        self._source = source
        self._shard = shard
        self._executor = executor or InlineExecutor()
        self._history = history
        self._store = store
        self._board = board
        self._metrics = metrics
        self._clock = clock
        self.stop = stop or threading.Event()
        self._current: dict[str, ForecastState] = {}
        self._reported: set[tuple[str, tuple[tuple[str, str], ...], str]] = set()
        self._running = 0
        self._done = threading.Condition()

    def adopt(self, state: ForecastState) -> None:
        """Serve a state loaded from disk until the next retrain replaces it."""
        # A state written under another shard holds series that another replica now serves.
        state.series = [s for s in state.series if self._shard.owns(s.labels)]
        self._current[state.forecast] = state
        self._board.publish(state)
        self._metrics.last_success.labels(state.forecast).set(state.fit_time)
        self._metrics.series.labels(state.forecast).set(len(state.series))

    def current(self, name: str) -> ForecastState | None:
        return self._current.get(name)

    def run(self, forecast: Forecast) -> ForecastState | None:
        """Retrain ``forecast``; on failure keep serving the previous state and return None."""
        started = time.monotonic()
        with self._done:
            self._running += 1
        try:
            return self._run(forecast)
        except Stopped:
            log.info("forecast %r: retrain abandoned for shutdown; the previous forecast stays", forecast.name)
            return None
        finally:
            self._metrics.cycle_duration.labels(forecast.name).set(time.monotonic() - started)
            with self._done:
                self._running -= 1
                self._done.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once no retrain is running, False if one still is after ``timeout`` seconds."""
        with self._done:
            return self._done.wait_for(lambda: self._running == 0, timeout)

    def _run(self, forecast: Forecast) -> ForecastState | None:
        now = self._clock()
        step = forecast.step.seconds
        fit_time = math.floor(now / step) * step
        try:
            series = self._fetch(forecast, fit_time)
        except QueryError as exc:
            self._metrics.errors.labels(forecast.name, Stage.QUERY).inc()
            log.error("%s; keeping the previous forecast", exc)
            return None
        if series is None:
            log.warning(
                "forecast %r: query %r returned no series; keeping the previous forecast", forecast.name, forecast.query
            )
            return None
        if not series:
            return self._publish_empty_shard(forecast, fit_time)
        series = self._refuse_clashes(forecast, self._guard_cardinality(forecast, series))
        served = self._current.get(forecast.name)
        previous: Previous = {series_key(s.labels): s for s in served.series} if served else {}
        fitted, unchanged = self._fit_all(forecast, series, fit_time, previous)
        # Within the served forecast's own step nothing has arrived since it was made: the scores published stay.
        if served is not None and served.fit_time < fit_time:
            self._record_skill(forecast, series, served.fit_time, fit_time, previous)
        if not fitted:
            log.warning(
                "forecast %r: no series could be fitted this time; keeping the previous forecast", forecast.name
            )
            return None
        fitted = self._attach_thresholds(forecast, fitted, fit_time, previous)
        state = ForecastState(forecast.name, forecast.query, fit_time, fitted)
        try:
            self._store.save(state)
        except OSError as exc:
            self._metrics.errors.labels(forecast.name, Stage.STATE).inc()
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
        kept = f", kept {unchanged} unchanged since their last fit" if unchanged else ""
        log.info("forecast %r: fitted %d of %d series%s", forecast.name, len(fitted) - unchanged, len(series), kept)
        return state

    def _publish_empty_shard(self, forecast: Forecast, fit_time: float) -> ForecastState:
        """The query returned series, none of them this replica's: a successful retrain with nothing to serve."""
        log.info(
            "forecast %r: none of the series of query %r falls in shard %s; serving none",
            forecast.name,
            forecast.query,
            self._shard,
        )
        state = ForecastState(forecast.name, forecast.query, fit_time, [])
        self._current[forecast.name] = state
        self._board.publish(state)
        self._metrics.last_success.labels(forecast.name).set(fit_time)
        self._metrics.series.labels(forecast.name).set(0)
        return state

    def _fetch(self, forecast: Forecast, fit_time: float) -> list[Series] | None:
        """The history of this shard's series of ``forecast``, up to ``fit_time``; None when the query matched none.

        With a history cache only the range after the cached end (plus an overlap) is pulled.
        """
        step = forecast.step.seconds
        window_start = fit_time - forecast.history.seconds
        cached = self._history.load(forecast.name, forecast.query, step) if self._history else None
        fetch = plan(cached, window_start, fit_time, step, self._history.overlap_steps if self._history else 0)
        try:
            pulled = self._source.query_range(forecast.query, fetch.start, fetch.end, step, forecast=forecast.name)
        except QueryAbandoned:
            raise Stopped from None
        self._metrics.points_fetched.labels(forecast.name).inc(sum(len(s.timestamps) for s in pulled))
        merged = merge(pulled, fetch, forecast.query, step, window_start)
        if not merged.series:
            return None
        merged.series = [s for s in merged.series if self._shard.owns(s.labels)]
        if self._history is not None:
            try:
                self._history.save(forecast.name, merged)
            except OSError as exc:
                self._metrics.errors.labels(forecast.name, Stage.STATE).inc()
                log.error(
                    "forecast %r: cannot write the history cache %s: %s; "
                    "it stays in memory, and a restart pulls what the file lacks",
                    forecast.name,
                    self._history.path(forecast.name),
                    exc,
                )
        return merged.series

    def _fit_all(
        self, forecast: Forecast, series: list[Series], fit_time: float, previous: Previous
    ) -> tuple[list[SeriesState], int]:
        """Fit every series on the executor; a series that fails keeps its previous forecast, if it had one.

        A series whose history and fit time are those its previous forecast
        was fitted on (a second retrain within one step, or a restart) keeps
        that forecast unfitted: a refit would be a fit of the same inputs.
        Returns the series' states and how many of them were kept so.
        """
        before = [previous.get(series_key(item.labels)) for item in series]
        spec = forecast.fit_spec()
        results: list[SeriesState | None] = [None] * len(series)
        tasks, inputs = [], []
        for i, (item, old) in enumerate(zip(series, before, strict=True)):
            task = FitTask(i, item.timestamps, item.values, fit_time, spec, old.params if old else None)
            inputs.append(task.inputs())
            if old is not None and old.inputs == inputs[i]:
                results[i] = replace(old, recent=recent(item, fit_time - RECENT_SPAN, RECENT_POINTS))
            else:
                tasks.append(task)
        self._metrics.unchanged.labels(forecast.name).inc(len(series) - len(tasks))
        for outcome in self._executor.run(tasks, self.stop):
            item, old = series[outcome.index], before[outcome.index]
            self._metrics.fit_duration.labels(forecast.name).observe(outcome.seconds)
            tail = recent(item, fit_time - RECENT_SPAN, RECENT_POINTS)
            if outcome.result is not None:
                result = outcome.result
                results[outcome.index] = SeriesState(
                    item.labels, result.frame, result.params, result.points, inputs=inputs[outcome.index], recent=tail
                )
                continue
            assert outcome.reason is not None
            self._skipped(forecast, item.labels, outcome.reason, outcome.detail)
            if old is not None and outcome.reason.stage is not None:
                # The old forecast, drawn against the values that just arrived, shows how far it has drifted.
                results[outcome.index] = replace(old, recent=tail)
        return [r for r in results if r is not None], len(series) - len(tasks)

    def _record_skill(
        self, forecast: Forecast, series: list[Series], made_at: float, fit_time: float, previous: Previous
    ) -> None:
        """Score the forecast being replaced (made at ``made_at``) on the samples that arrived since.

        Reuses the history just fetched, so it costs no query and no fit. A series
        without a previous forecast or without new samples keeps no score.
        """
        scores: list[tuple[Labels, Skill]] = []
        for item in series:
            old = previous.get(series_key(item.labels))
            if old is None:
                continue
            skill = score_previous(old.frame, made_at, item.timestamps, item.values, fit_time)
            if skill is not None:
                scores.append((item.labels, skill))
        self._metrics.skill.publish(forecast.name, scores)

    def _attach_thresholds(
        self, forecast: Forecast, fitted: list[SeriesState], fit_time: float, previous: Previous
    ) -> list[SeriesState]:
        """Each series' breach threshold from ``breach.threshold_query``, read once per retrain.

        Scrapes never query Prometheus, so the threshold is stored with the
        state. When the query fails, each series keeps its previous threshold.
        """
        rule = forecast.breach
        if rule is None or rule.threshold_query is None:
            return fitted
        query = rule.threshold_query
        try:
            thresholds = self._source.query(query, fit_time, forecast=forecast.name)
        except QueryAbandoned:
            raise Stopped from None
        except QueryError as exc:
            self._metrics.errors.labels(forecast.name, Stage.QUERY).inc()
            log.error("%s (breach.threshold_query); keeping each series' previous threshold", exc)
            out = []
            for state in fitted:
                old = previous.get(series_key(state.labels))
                out.append(replace(state, threshold=old.threshold if old is not None else None))
            return out
        out = []
        for state in fitted:
            threshold = match_threshold(state.labels, thresholds)
            if threshold is None:
                log.warning(
                    "forecast %r: series %s: breach.threshold_query %r has no single finite value for it "
                    "(threshold series must agree with the forecast series on the labels they share); "
                    "forecast_breach_seconds is not exposed for it",
                    forecast.name,
                    format_labels(state.labels),
                    query,
                )
            out.append(replace(state, threshold=threshold))
        return out

    def _refuse_clashes(self, forecast: Forecast, series: list[Series]) -> list[Series]:
        """Leave out every series whose exposed labels another one has too; Prometheus would keep only one.

        ``{forecast="a"}`` and ``{exported_forecast="a"}`` are two series of the
        query but one label set once ``forecast`` is renamed on the way out.
        Keeping one would be a guess; both are refused, counted and logged.
        """
        groups: dict[tuple[tuple[str, str], ...], list[Series]] = {}
        for item in series:
            groups.setdefault(series_key(exposed_labels(item.labels)), []).append(item)
        kept = []
        for clashing in groups.values():
            if len(clashing) == 1:
                kept.append(clashing[0])
                continue
            names = ", ".join(format_labels(item.labels) for item in clashing)
            for item in clashing:
                self._skipped(
                    forecast,
                    item.labels,
                    SkipReason.LABEL_CLASH,
                    f"its labels as exposed are those of another series too ({names}); "
                    "rename or drop the clashing label in the query (label_replace, or sum by (...))",
                )
        return kept

    def _guard_cardinality(self, forecast: Forecast, series: list[Series]) -> list[Series]:
        if len(series) <= forecast.max_series:
            return series
        ordered = sorted(series, key=lambda s: series_key(s.labels))
        extra = len(ordered) - forecast.max_series
        self._metrics.skipped.labels(forecast.name, SkipReason.MAX_SERIES).inc(extra)
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

    def _skipped(self, forecast: Forecast, labels: Labels, reason: SkipReason, detail: str) -> None:
        self._metrics.skipped.labels(forecast.name, reason).inc()
        if reason.stage is not None:
            self._metrics.errors.labels(forecast.name, reason.stage).inc()
        key = (forecast.name, series_key(labels), str(reason))
        level = logging.DEBUG if key in self._reported else logging.WARNING
        self._reported.add(key)
        log.log(level, "forecast %r: series %s skipped (%s): %s", forecast.name, format_labels(labels), reason, detail)
