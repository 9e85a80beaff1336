"""The foundation end to end: real Prometheus, real ``forecaster run``, assertions through PromQL."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from devtools.local_prometheus import LocalPrometheus
from devtools.remote_write import push
from devtools.synthetic import Signal
from tests.helpers import history, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIGNALS = {
    (("job", "api"), ("zone", "a")): Signal(base=100, daily=20, phase=0.0, noise=0.5),
    (("job", "api"), ("zone", "b")): Signal(base=50, daily=10, phase=2.0, noise=0.5),
    # No zone label at all, and a label that clashes with the exporter's own "forecast".
    (("forecast", "legacy"), ("job", "web")): Signal(base=300, daily=40, phase=4.0, noise=0.5),
}


def _load(prom: LocalPrometheus) -> None:
    series = [
        history({"__name__": "demo_requests", **dict(key)}, sig, span=3 * 86400, step=300, seed=i)
        for i, (key, sig) in enumerate(SIGNALS.items())
    ]
    push(prom.write_url, series)


def _config(prom: LocalPrometheus, state_dir: Path) -> dict[str, object]:
    return {
        "prometheus": {"url": prom.url, "timeout": "10s"},
        "state_dir": str(state_dir),
        "defaults": {"history": "3d", "step": "5m", "horizon": "6h", "horizons": ["1h"], "retrain_every": "1h"},
        "forecasts": [{"name": "requests", "query": "demo_requests", "prophet": {"uncertainty_samples": 200}}],
    }


def _own_labels(metric: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The source series' labels, undoing the exporter's rename of a clashing ``forecast`` label."""
    own = {k: v for k, v in metric.items() if k in ("job", "zone")}
    if "exported_forecast" in metric:
        own["forecast"] = metric["exported_forecast"]
    return tuple(sorted(own.items()))


def test_forecasts_reach_prometheus_with_labels_bands_and_horizons(prometheus, run_service, tmp_path):
    _load(prometheus)
    service = run_service(_config(prometheus, tmp_path / "state"))
    wait_for(
        lambda: len(prometheus.query('forecast_yhat{forecast="requests"}')) == 2 * len(SIGNALS),
        90,
        "forecast_yhat for every series and horizon in Prometheus",
    )

    now_series = prometheus.query('forecast_yhat{forecast="requests",horizon="0s"}')
    assert {_own_labels(r["metric"]) for r in now_series} == set(SIGNALS)
    # honor_labels keeps each series' own job; the clashing label is renamed, not lost.
    web = next(r["metric"] for r in now_series if r["metric"]["job"] == "web")
    assert web["exported_forecast"] == "legacy" and web["forecast"] == "requests"
    assert "zone" not in web

    assert prometheus.query("forecast_yhat_lower > forecast_yhat") == []
    assert prometheus.query("forecast_yhat > forecast_yhat_upper") == []
    assert len(prometheus.query("forecast_yhat_lower <= forecast_yhat <= forecast_yhat_upper")) == 2 * len(SIGNALS)

    at = time.time()
    ahead = prometheus.query('forecast_yhat{forecast="requests",horizon="1h"}', at=at)
    assert len(ahead) == len(SIGNALS)
    moving = 0
    for row in ahead:
        sig = SIGNALS[_own_labels(row["metric"])]
        predicted = float(row["value"][1])
        target = float(sig.clean(at + 3600))
        assert abs(predicted - target) < 0.1 * sig.daily, (row["metric"], predicted, target)
        if abs(float(sig.clean(at)) - target) > 0.12 * sig.daily:
            moving += 1
            assert abs(predicted - target) < abs(predicted - float(sig.clean(at)))
    assert moving >= 1, "no series moves enough in an hour to tell the horizons apart"

    assert float(prometheus.query('up{job="forecaster"}')[0]["value"][1]) == 1
    # Prometheus' scrape of itself may not have happened yet on a busy machine.
    out_of_bounds = wait_for(
        lambda: prometheus.query("prometheus_target_scrapes_sample_out_of_bounds_total"),
        30,
        "Prometheus' own out-of-bounds counter",
    )
    assert all(float(r["value"][1]) == 0 for r in out_of_bounds)
    assert float(prometheus.query('forecaster_series{forecast="requests"}')[0]["value"][1]) == len(SIGNALS)

    started = time.monotonic()
    assert service.stop(signal.SIGTERM, timeout=20) == 0
    assert time.monotonic() - started < 20
