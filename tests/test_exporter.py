"""The exposition of per-series families against exact text: what Prometheus reads with honor_labels: true."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from forecaster import config as config_module
from forecaster.exporter import Board, ForecastCollector, SelfMetrics, exposed_labels
from forecaster.model.frame import Frame
from forecaster.skill import Skill
from forecaster.state import ForecastState, SeriesState

T0 = 1_700_000_000.0


def _lines(registry: CollectorRegistry, forecasts: ForecastCollector, *names: str) -> list[str]:
    text = forecasts.render() + generate_latest(registry).decode()
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
    forecasts = ForecastCollector(board, clock=lambda: T0)
    metrics = SelfMetrics(registry, config.forecasts)
    metrics.skill.publish("free", [({"mount": "/"}, Skill(1.0, 0.5, 0.25, 4))])
    metrics.series.labels("free").set(2)

    assert _lines(registry, forecasts, "forecast_yhat", "forecast_breach_seconds", "forecaster_model_skill") == [
        'forecast_yhat{forecast="free",horizon="0s",instance="",job="",mount="/"} 10.0',
        'forecast_yhat{forecast="free",horizon="0s",instance="",job="node",mount="/data"} 10.0',
        'forecast_breach_seconds{forecast="free",instance="",job="",mount="/"} +Inf',
        'forecast_breach_seconds{forecast="free",instance="",job="node",mount="/data"} +Inf',
        'forecaster_model_skill{forecast="free",instance="",job="",mount="/"} 0.25',
    ]
    # The service's own metrics describe the forecaster: the scrape target's job and instance stay theirs.
    assert _lines(registry, forecasts, "forecaster_series") == ['forecaster_series{forecast="free"} 2.0']


def test_the_forecast_lines_are_written_as_prometheus_client_writes_them_in_both_formats() -> None:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    config = config_module.parse(
        {
            "prometheus": {"url": "http://127.0.0.1:9090"},
            "defaults": {"horizons": ["1h"]},
            "forecasts": [{"name": "odd", "query": "x", "breach": {"below": 0}}],
        }
    )
    ds = T0 + 300 * np.arange(13.0)
    odd = {"a_first": 'say "hi"', "forecast": "clash", "path": "C:\\dir\nnext", "zone": "é"}
    series = [
        SeriesState(odd, Frame(ds, 1e6 + ds - T0, np.full(13, 1.5e-7), np.full(13, 3e21))),
        SeriesState({"job": "j"}, Frame(ds, 100 - ds / 300 + T0 / 300, np.full(13, -1.0), np.full(13, 123456789.0))),
    ]
    board = Board(config.forecasts)
    board.publish(ForecastState("odd", "x", T0, series))
    rendered = ForecastCollector(board, clock=lambda: T0 + 100).render()

    class Reference:
        """The same samples through prometheus_client's own Metric families."""

        def collect(self) -> Iterator[Metric]:
            for line_name, help_text in (
                ("forecast_yhat", "Predicted value of the series at scrape time plus horizon."),
                ("forecast_yhat_lower", "Lower edge of the prediction band (interval_width)."),
                ("forecast_yhat_upper", "Upper edge of the prediction band (interval_width)."),
            ):
                family = Metric(line_name, help_text, "gauge")
                column = {"forecast_yhat": 0, "forecast_yhat_lower": 1, "forecast_yhat_upper": 2}[line_name]
                for horizon, seconds in (("0s", 0.0), ("1h", 3600.0)):
                    for s in series:
                        point = s.frame.at(T0 + 100 + seconds)
                        if point is not None:
                            labels = {"forecast": "odd", "horizon": horizon, **exposed_labels(s.labels)}
                            family.add_sample(line_name, labels, point[column])
                yield family

    registry = CollectorRegistry()
    registry.register(Reference())
    breach_lines = [line for line in rendered.splitlines() if "breach" in line]
    assert rendered.splitlines()[: -len(breach_lines)] == generate_latest(registry).decode().splitlines()
    assert rendered.splitlines()[: -len(breach_lines)] == generate_openmetrics(registry).decode().splitlines()[:-1]
    assert 'exported_forecast="clash"' in rendered and 'path="C:\\\\dir\\nnext"' in rendered
