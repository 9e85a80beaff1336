"""Series without ``job`` or ``instance`` pair with their forecasts, and the anomaly score finds a live spike.

One stack for the module: disk series pushed through remote write with no
``job`` and no ``instance`` (one with a ``job`` only), kept current by a live
pusher; ``forecaster run`` forecasting them as they are and summed; and
Prometheus scraping it with ``honor_labels: true``, with the output of
``forecaster rules`` and the shipped rules/forecast-anomaly.yml loaded.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.local_prometheus import LocalPrometheus, free_port
from devtools.remote_write import TimeSeries, push
from devtools.synthetic import DAY, Signal
from tests.helpers import REPO, LivePusher, Service, history, wait_for, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIGNALS = {
    (("mount", "/"),): Signal(base=400e9, daily=20e9, noise=1e9, phase=0.0),
    (("mount", "/data"),): Signal(base=800e9, daily=40e9, noise=2e9, phase=1.5),
    (("mount", "/var"),): Signal(base=100e9, daily=5e9, noise=0.5e9, phase=3.0),
    (("job", "node"), ("mount", "/home")): Signal(base=200e9, daily=10e9, noise=0.5e9, phase=4.5),
}
SPIKED = "/data"
SPIKE_FACTOR = 2.0  # /data doubles: hundreds of GB over a band a few GB wide


def _live(at: int, spike: bool) -> list[TimeSeries]:
    """Every series' clean value at ``at`` (inside its band), /data's doubled once spiked."""
    series = []
    for key, signal_ in SIGNALS.items():
        value = float(signal_.clean(at)) * (SPIKE_FACTOR if spike and dict(key)["mount"] == SPIKED else 1.0)
        series.append(TimeSeries({"__name__": "bar_disk_free_bytes", **dict(key)}, [at * 1000], [value]))
    return series


def _config(prometheus_url: str, state_dir: Path) -> dict[str, object]:
    return {
        "prometheus": {"url": prometheus_url, "timeout": "10s", "retries": 0},
        "state_dir": str(state_dir),
        "defaults": {
            "history": "3d",
            "step": "5m",
            "horizon": "1d",
            "horizons": ["1h"],
            "retrain_every": "1h",
            "prophet": {"uncertainty_samples": 200},
        },
        "forecasts": [
            {"name": "free", "query": "bar_disk_free_bytes", "breach": {"below": 0}},
            # Aggregated to no labels at all; without the mount the spike test spikes, so its score stays low.
            {"name": "total", "query": f'sum(bar_disk_free_bytes{{mount!="{SPIKED}"}})'},
        ],
    }


def _generated_rules(config_path: Path, directory: Path) -> Path:
    """What `forecaster rules` prints for the config, as the rule file Prometheus loads."""
    result = subprocess.run(
        [sys.executable, "-m", "forecaster", "rules", "-c", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    path = directory / "forecast-actuals.yml"
    path.write_text(result.stdout)
    return path


@dataclass
class Stack:
    prometheus: LocalPrometheus
    pusher: LivePusher
    spike: threading.Event
    target: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("pairing")
    port = free_port()
    target = f"127.0.0.1:{port}"
    (root / "prom").mkdir()
    config_path = write_config(root / "forecaster.yml", _config("http://placeholder", root / "state"))
    prometheus = LocalPrometheus(
        scrape_targets=[target],
        scrape_interval="1s",
        rule_files=[str(_generated_rules(config_path, root)), str(REPO / "rules" / "forecast-anomaly.yml")],
        data_dir=root / "prom",
    ).start()
    push(
        prometheus.write_url,
        [
            history({"__name__": "bar_disk_free_bytes", **dict(key)}, signal_, span=3 * DAY, step=300, seed=i)
            for i, (key, signal_) in enumerate(SIGNALS.items())
        ],
    )
    spike = threading.Event()
    pusher = LivePusher(prometheus.write_url, lambda at: _live(at, spike.is_set()), every=2)
    write_config(config_path, _config(prometheus.url, root / "state"))
    service = Service(config_path, port, root / "forecaster.log").start()
    try:
        wait_for(
            lambda: len(prometheus.query('forecast_yhat{horizon="0s"}')) == len(SIGNALS) + 1,
            300,
            f"a forecast for every series (see the service log: {root / 'forecaster.log'})",
            interval=1,
        )
        yield Stack(prometheus, pusher, spike, target)
    finally:
        pusher.stop()
        if service.process is not None:
            service.stop()
        prometheus.cleanup()


def _labels(result: list[dict[str, Any]]) -> list[dict[str, str]]:
    return sorted(({k: v for k, v in r["metric"].items() if k != "__name__"} for r in result), key=str)


def _scores(prometheus: LocalPrometheus) -> dict[str, float]:
    """forecast:anomaly_score by mount ("sum" for the aggregate)."""
    return {r["metric"].get("mount", "sum"): float(r["value"][1]) for r in prometheus.query("forecast:anomaly_score")}


@pytest.mark.parametrize("forecast", ["free", "total"])
def test_series_without_job_or_instance_pair_one_to_one_with_their_forecast(stack: Stack, forecast: str) -> None:
    prometheus = stack.prometheus
    actual = f'forecast:actual{{forecast="{forecast}"}}'
    now = f'forecast_yhat{{forecast="{forecast}", horizon="0s"}}'
    paired = prometheus.query(f"{actual} and ignoring(horizon) {now}")
    counts = prometheus.query(f"count({actual}) == count({now})")
    # One-to-one matching refuses to run when two series of either side share a label set.
    differences = prometheus.query(f"{actual} - ignoring(horizon) {now}")
    series = len(SIGNALS) if forecast == "free" else 1
    equal = [r["value"][1] for r in counts]
    print(f"\n{forecast}: {len(paired)} of {series} series paired; count(actual) == count(yhat) returns {equal}")
    assert len(paired) == len(differences) == series
    assert equal == [str(series)]
    # Stored with exactly the real series' labels: the forecaster's job and instance kept out.
    assert _labels(prometheus.query(actual)) == [
        {**labels, "forecast": forecast} for labels in _labels(prometheus.query(f"max without (horizon) ({now})"))
    ]
    for name in ("forecast_yhat", "forecast_yhat_lower", "forecast_yhat_upper", "forecast_breach_seconds"):
        for labels in _labels(prometheus.query(f'{name}{{forecast="{forecast}"}}')):
            assert "instance" not in labels and labels.get("job") in (None, "node"), (name, labels)
    # The service's own metrics keep the target's labels.
    (own,) = prometheus.query(f'forecaster_series{{forecast="{forecast}"}}')
    assert own["metric"]["job"] == "forecaster" and own["metric"]["instance"] == stack.target


def test_a_live_spike_drives_the_anomaly_score_above_1_for_that_series_only(stack: Stack) -> None:
    prometheus = stack.prometheus
    before = wait_for(
        lambda: (scores := _scores(prometheus)) and len(scores) == len(SIGNALS) + 1 and scores,
        30,
        "an anomaly score for every series",
        interval=1,
    )
    print(f"\nanomaly scores before the spike: {before}")
    assert all(score <= 1 for score in before.values()), before
    stack.spike.set()
    stack.pusher.push_once()
    above = wait_for(
        lambda: prometheus.query("forecast:anomaly_score > 1"), 60, "forecast:anomaly_score > 1", interval=1
    )
    scores = _scores(prometheus)
    print(f"anomaly scores during the spike: {scores}")
    assert _labels(above) == [{"forecast": "free", "mount": SPIKED}]
    assert all(score <= 1 for mount, score in scores.items() if mount != SPIKED), scores
