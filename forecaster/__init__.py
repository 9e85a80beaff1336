"""Prophet forecasts of Prometheus series, exposed for Prometheus to scrape.

Where things live. Each module imports only modules listed above it, and
none does work at import time (tests/test_layout.py holds both to that):

    errors.py          every exception, and the SkipReason and Stage vocabularies
    duration.py        Prometheus-style durations
    series.py          one series' labels and samples, put in order once; the SeriesSource protocol
    shard.py           which series a replica serves: a stable hash of the labels modulo the replica count
    model/             one Prophet model per series (its own map is in model/__init__.py)
    settings.py        one forecast's keys through defaults, resolved into a Forecast and its BreachRule
    config.py          the config file: its sections, every error with its path, duplicate keys refused
    answers.py         Prometheus' answers checked against the documented shapes; series identity
    prometheus.py      the HTTP source: chunked query_range, retries, errors naming forecast and query
    state.py           per-forecast state files, written atomically
    history.py         the history cache in state_dir: pull only what is new, read each file once
    executor.py        where fits run: worker processes, a Dask cluster, or inline
    skill.py           the PromQL baselines and the live score of a replaced forecast
    breach.py          when a band first crosses a threshold; matching query thresholds to series
    exporter.py        the scrape board and collectors (forecasts, skill) and the self-metrics
    status_page.py     the status page at /: each forecast's health and a chart per series, from the board
    curve.py           PromQL over the forecast curves: the subset a forecast panel needs, with numpy
    query_api.py       the curves over Prometheus' HTTP API (/api/v1/), for Grafana's Prometheus data source
    trainer.py         one retrain of one forecast: fetch, fit, score, persist, publish
    scheduler.py       APScheduler 3.x jobs: one per forecast, never overlapping
    server.py          /metrics, /healthz, /readyz, the status page at / and query_api's /api/v1/
    service.py         the composition root: builds all of the above from a config and runs it
    backtest.py        the backtest report: rolling origins, MAE/MASE/coverage tables
    plot.py            backtest plots (the ``plot`` extra)
    asof.py            forecasts as of a past time (--at) and the backtest's data
    recording_rules.py the forecast:actual recording rules generated from a config
    cli.py             the command line: parses arguments and dispatches

Starting a local Prometheus, loading history by remote write and ``make demo``
are development tools: they live in ``devtools/`` beside the package, not in it.
"""

from forecaster.errors import BadQueryError, ConfigError, ForecasterError, QueryError

__version__ = "0.1.0"
__all__ = ["BadQueryError", "ConfigError", "ForecasterError", "QueryError", "__version__"]
