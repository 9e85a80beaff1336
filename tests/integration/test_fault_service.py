"""The whole service against a Prometheus that answers nonsense or hangs, and against bad state files."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from devtools.local_prometheus import free_port
from forecaster.model.frame import Frame
from forecaster.state import ForecastState, SeriesState, StateStore
from tests.helpers import Service, wait_for, write_config
from tests.integration.fault_server import HANG, FaultServer

pytestmark = pytest.mark.integration

QUERY = "fake"


def _config(url: str, state_dir: Path, **forecast: object) -> dict[str, object]:
    return {
        "prometheus": {"url": url, "retries": 0, "timeout": "30s"},
        "state_dir": str(state_dir),
        "workers": 0,
        "defaults": {"history": "1d", "step": "5m", "horizon": "2h", "horizons": [], "retrain_every": "10s"},
        "forecasts": [{"name": "f", "query": QUERY, **forecast}],
    }


def _query_errors(service: Service) -> float:
    for line in service.get("/metrics").text.splitlines():
        if line.startswith('forecaster_errors_total{forecast="f",stage="query"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _served(service: Service) -> bool:
    return 'forecast_yhat{forecast="f"' in service.get("/metrics").text


def test_run_counts_malformed_range_answers_as_query_errors_without_a_traceback(tmp_path):
    fake = FaultServer(answers={"/api/v1/query_range": {"status": "success", "data": []}})
    with fake.running():
        config = write_config(tmp_path / "c.yml", _config(fake.url, tmp_path / "state"))
        service = Service(config, free_port(), tmp_path / "service.log").start()
        try:
            wait_for(lambda: _query_errors(service) >= 2, 60, "two query errors to be counted")
        finally:
            assert service.stop() == 0
    log = service.log()
    assert "malformed answer to a range query: data is a list" in log and "Traceback" not in log


def test_run_counts_a_non_numeric_threshold_as_a_query_error_and_still_serves(tmp_path):
    bad = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "abc"]}]}}
    fake = FaultServer(answers={"/api/v1/query": bad})
    breach = {"threshold_query": "size", "direction": "above"}
    with fake.running():
        config = write_config(tmp_path / "c.yml", _config(fake.url, tmp_path / "state", breach=breach))
        service = Service(config, free_port(), tmp_path / "service.log").start()
        try:
            wait_for(lambda: _served(service) and _query_errors(service) >= 1, 60, "a fit served and an error counted")
        finally:
            assert service.stop() == 0
    log = service.log()
    assert "result[0].value[1] is 'abc', not a number" in log and "Traceback" not in log


def test_forecast_on_a_malformed_answer_exits_1_with_a_message_and_no_traceback(tmp_path):
    fake = FaultServer(answers={"/api/v1/query_range": {"status": "success", "data": None}})
    with fake.running():
        config = write_config(tmp_path / "c.yml", _config(fake.url, tmp_path / "state"))
        result = subprocess.run(
            [sys.executable, "-m", "forecaster", "forecast", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert "forecast 'f': query 'fake': malformed answer to a range query: data is null" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_sigterm_while_prometheus_hangs_exits_0_within_5_seconds(tmp_path):
    fake = FaultServer(default=HANG, hang_seconds=120)
    with fake.running():
        config = write_config(tmp_path / "c.yml", _config(fake.url, tmp_path / "state"))
        service = Service(config, free_port(), tmp_path / "service.log").start()
        wait_for(lambda: fake.requests, 30, "the first query to reach the hanging server")
        time.sleep(1)
        started = time.monotonic()
        assert service.stop(signal.SIGTERM, timeout=10) == 0
        took = time.monotonic() - started
        print(f"\nSIGTERM while Prometheus hangs: exit 0 after {took:.1f}s")
        assert took < 5


def _stored(state_dir: Path, fit_time: float) -> Path:
    store = StateStore(state_dir)
    ds = time.time() + 300 * np.arange(5, dtype=np.float64)
    frame = Frame(ds, np.ones(5), np.zeros(5), np.full(5, 2.0))
    store.save(ForecastState("f", QUERY, 1_700_000_000.0, [SeriesState({"job": "api"}, frame)]))
    data = json.loads(store.path("f").read_bytes())
    data["fit_time"] = fit_time
    store.path("f").write_text(json.dumps(data))
    return store.path("f")


@pytest.mark.parametrize("fit_time", [math.inf, 1e12, "30 days ahead"], ids=["Infinity", "1e12", "30_days_ahead"])
def test_a_state_file_with_an_impossible_fit_time_is_set_aside_and_refitted(tmp_path, fit_time):
    when = time.time() + 30 * 86400 if fit_time == "30 days ahead" else fit_time
    path = _stored(tmp_path / "state", float(when))  # type: ignore[arg-type]
    fake = FaultServer()
    with fake.running():
        config = write_config(tmp_path / "c.yml", _config(fake.url, tmp_path / "state"))
        started = time.monotonic()
        service = Service(config, free_port(), tmp_path / "service.log").start()
        try:
            wait_for(lambda: _served(service), 90, "a fresh fit to be served")
            took = time.monotonic() - started
            print(f"\nfit_time {fit_time}: set aside, a fresh fit served {took:.1f}s after the start")
            assert took < 90
            assert list(path.parent.glob("f.json.bad-*"))
            served = json.loads(path.read_bytes())["fit_time"]
            assert math.isfinite(served) and served <= time.time()
        finally:
            assert service.stop() == 0


def test_a_query_matching_two_metrics_with_equal_labels_gives_two_series(tmp_path):
    from devtools.local_prometheus import LocalPrometheus
    from devtools.remote_write import push
    from devtools.synthetic import Signal
    from forecaster.config import PrometheusConfig
    from forecaster.prometheus import PrometheusSource, build_http_client
    from tests.helpers import history

    with LocalPrometheus(data_dir=tmp_path) as prom:
        push(
            prom.write_url,
            [
                history({"__name__": name, "job": "same"}, Signal(base=base), span=3600, step=60)
                for name, base in (("alpha_total", 10.0), ("beta_total", 500.0))
            ],
        )
        source = PrometheusSource(build_http_client(PrometheusConfig(url=prom.url)))
        end = time.time()
        pulled = source.query_range('{__name__=~"alpha_total|beta_total"}', end - 3000, end, 60, forecast="f")
        source.close()
    assert sorted((s.labels["metric_name"], s.labels["job"]) for s in pulled) == [
        ("alpha_total", "same"),
        ("beta_total", "same"),
    ]
    by_name = {s.labels["metric_name"]: float(np.nanmedian(s.values)) for s in pulled}
    assert by_name["alpha_total"] < 100 < by_name["beta_total"]
