"""The package's exceptions.

    ForecasterError            root: catch this to catch everything below
    ├── ConfigError            the config file is invalid; carries every problem found
    ├── QueryError             Prometheus could not answer a forecast's query
    │   ├── BadQueryError      Prometheus refused the query itself (HTTP 400): retrying will not help
    │   └── QueryAbandoned     the service is stopping; the query was given up between attempts
    └── StateError             a state file is unreadable, foreign or corrupt

Each error names what it was doing for whom (forecast, query, file) and, where
there is one, what to do about it.
"""

from __future__ import annotations


class ForecasterError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(ForecasterError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


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


class StateError(ForecasterError):
    pass
