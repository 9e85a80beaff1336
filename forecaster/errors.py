"""The package's exceptions, and the two vocabularies failures are counted in.

    ForecasterError            root: catch this to catch everything below
    ├── ConfigError            the config file (or a command-line value) is invalid; carries every problem found
    ├── MissingExtra           an optional feature's packages are not installed; names the extra to install
    ├── StateDirInUse          another forecaster holds the state_dir; names it and the holder's PID
    ├── QueryError             Prometheus could not answer a forecast's query
    │   ├── BadQueryError      Prometheus refused the query itself (HTTP 400): retrying will not help
    │   └── QueryAbandoned     the service is stopping; the query was given up between attempts
    ├── TransientError         one request failed in a way worth retrying; the source retries it and,
    │                          when the retries run out, raises a QueryError naming forecast and query
    ├── SeriesSkipped          one series cannot be forecast; carries its SkipReason
    ├── RefusedQuery           a query to the forecaster's own /api/v1 it will not answer; carries Prometheus'
    │                          errorType (bad_data: the query or a parameter; execution: cannot be evaluated)
    └── Stopped                shutdown was requested while fits were running; their results are dropped

Each error names what it was doing for whom (forecast, query, file) and, where
there is one, what to do about it.

``SkipReason`` is the label value of ``forecaster_series_skipped_total{reason}``
and ``Stage`` that of ``forecaster_errors_total{stage}``; a skip reason that is
a failure says which stage failed (``SkipReason.stage``), so the model, the
executor, the trainer and the exporter all count in the same words.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Where a retrain failed: ``forecaster_errors_total{stage}``."""

    QUERY = "query"
    FIT = "fit"
    PREDICT = "predict"
    STATE = "state"


class SkipReason(StrEnum):
    """Why a series was left out of a retrain: ``forecaster_series_skipped_total{reason}``."""

    TOO_FEW_POINTS = "too_few_points"
    FIT_FAILED = "fit_failed"
    FIT_TIMEOUT = "fit_timeout"
    PREDICT_FAILED = "predict_failed"
    MAX_SERIES = "max_series"
    LABEL_CLASH = "label_clash"

    @property
    def stage(self) -> Stage | None:
        """The failed stage, for reasons that are failures; None for data that is simply unusable."""
        return _STAGE_OF_REASON.get(self)


_STAGE_OF_REASON = {
    SkipReason.FIT_FAILED: Stage.FIT,
    SkipReason.FIT_TIMEOUT: Stage.FIT,
    SkipReason.PREDICT_FAILED: Stage.PREDICT,
}


class ForecasterError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(ForecasterError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


class MissingExtra(ForecasterError):
    """An optional feature was asked for, but the packages of its extra are not installed."""

    def __init__(self, feature: str, extra: str, missing: str) -> None:
        self.extra = extra
        super().__init__(f"{feature} needs {missing}, which is not installed: pip install 'forecaster[{extra}]'")


class StateDirInUse(ForecasterError):
    """Another process holds the lock on a state_dir: two services writing one directory overwrite each other."""


class QueryError(ForecasterError):
    def __init__(self, message: str, *, forecast: str, query: str) -> None:
        self.forecast = forecast
        self.query = query
        self.reason = message
        super().__init__(f"forecast {forecast!r}: query {query!r}: {message}")


class BadQueryError(QueryError):
    """Prometheus rejected the query (bad_data); fix the query in the config."""


class QueryAbandoned(QueryError):
    """The service is stopping, so a query was not retried; not a failure of Prometheus."""


class TransientError(ForecasterError):
    """A request that may succeed when repeated (connection refused, timeout, 5xx, 429, a garbled body)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SeriesSkipped(ForecasterError):
    """A series that cannot be forecast; ``reason`` is its skip-reason label value."""

    def __init__(self, reason: SkipReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Stopped(ForecasterError):
    """Shutdown was requested while fits were running; their results are dropped."""

    def __init__(self) -> None:
        super().__init__("stopped: the service is shutting down")


class RefusedQuery(ForecasterError):
    """A request to the forecaster's Prometheus-compatible API that it will not answer, as Prometheus words it.

    ``error_type`` is Prometheus' ``errorType``: ``bad_data`` (HTTP 400) for a
    query or parameter that is wrong or asks for something not supported here,
    ``execution`` (HTTP 422) for one that is valid but cannot be evaluated
    over the served series (clashing label sets, too many samples).
    """

    def __init__(self, message: str, error_type: str = "bad_data") -> None:
        super().__init__(message)
        self.error_type = error_type
