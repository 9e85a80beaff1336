"""The exposition of per-series families against exact text: what Prometheus reads with honor_labels: true."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from forecaster import config as config_module
from forecaster.exporter import Board, ForecastCollector, SelfMetrics
from forecaster.model.frame import Frame
from forecaster.skill import Skill
from forecaster.state import ForecastState, SeriesState

T0 = 1_700_000_000.0


def _lines(registry: CollectorRegistry, *names: str) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if line.split("{")[0] in names]


def test_a_series_without_job_or_instance_is_exposed_with_both_empty_on_every_per_series_family() -> None:
    config = config_module.parse(
        {
            "prometheus": {"url": "http://127.0.0.1:9090"},
            "defaults": {"horizons": []},
            "forecasts": [{"name": "free", "query": "sum by (mount) (bar_disk_free_bytes)", "breach": {"below": 0}}],
        }
    )
    frame = Frame(np.array([T0, T0 + 300]), np.array([10.0, 10.0]), np.array([8.0, 8.0]), np.array([12.0, 12.0]))
    series = [SeriesState({"mount": "/"}, frame), SeriesState({"job": "node", "mount": "/data"}, frame)]
    board = Board(config.forecasts)
    board.publish(ForecastState("free", config.forecasts[0].query, T0, series))
    registry = CollectorRegistry()
    registry.register(ForecastCollector(board, clock=lambda: T0))
    metrics = SelfMetrics(registry, config.forecasts)
    metrics.skill.publish("free", [({"mount": "/"}, Skill(1.0, 0.5, 0.25, 4))])
    metrics.series.labels("free").set(2)

    assert _lines(registry, "forecast_yhat", "forecast_breach_seconds", "forecaster_model_skill") == [
        'forecast_yhat{forecast="free",horizon="0s",instance="",job="",mount="/"} 10.0',
        'forecast_yhat{forecast="free",horizon="0s",instance="",job="node",mount="/data"} 10.0',
        'forecast_breach_seconds{forecast="free",instance="",job="",mount="/"} +Inf',
        'forecast_breach_seconds{forecast="free",instance="",job="node",mount="/data"} +Inf',
        'forecaster_model_skill{forecast="free",instance="",job="",mount="/"} 0.25',
    ]
    # The service's own metrics describe the forecaster: the scrape target's job and instance stay theirs.
    assert _lines(registry, "forecaster_series") == ['forecaster_series{forecast="free"} 2.0']
