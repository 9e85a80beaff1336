"""Prophet forecasts of Prometheus series, exposed for Prometheus to scrape."""

from forecaster.errors import BadQueryError, ConfigError, ForecasterError, QueryError, StateError

__version__ = "0.1.0"
__all__ = ["BadQueryError", "ConfigError", "ForecasterError", "QueryError", "StateError", "__version__"]
