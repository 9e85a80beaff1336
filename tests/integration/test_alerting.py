"""Breach prediction, the shipped rules and dashboards, live: Prometheus, the service, Alertmanager, a webhook.

One stack for the module (fitting Prophet is the slow part):

* history of disk series pushed through remote write: one falling linearly to
  0 five days from now, one flat, one hitting 0 in twelve hours; node-exporter
  style filesystem series with their sizes for the compose config's
  ``threshold_query`` forecast; a live pusher keeps them current;
* ``forecaster run`` with those forecasts and one whose query Prometheus
  refuses, so the health alerts have something to say;
* the real sample app, so the compose stack's recording rule has data;
* Prometheus with every shipped rule file (the alert rules as a test copy with
  short ``for:``) and the ``forecast:actual`` rules of this test's forecasts,
  a second forecaster target that is down, and a real Alertmanager that posts
  to a webhook server in this process.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from devtools.local_prometheus import LocalPrometheus, find_binary, free_port
from devtools.remote_write import TimeSeries, push
from devtools.synthetic import DAY
from forecaster import config as config_module
from forecaster.recording_rules import actual_rules
from tests.helpers import REPO, LivePusher, Service, wait_for, write_config
from tests.shipped import (
    FORECASTER,
    PROMETHEUS,
    SHIPPED_ALERTS,
    Query,
    dashboard_expressions,
    dashboards,
    fill,
    resolve_variables,
    rule_expressions,
    rule_files,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEP = 300.0
NOW = time.time()
BREACH_AT = NOW + 5 * DAY  # db-1 reaches 0 here
IMMINENT_AT = NOW + 0.5 * DAY  # db-3 reaches 0 here
FS_SIZE = 1e12
FS_BREACH_AT = NOW + 4 * DAY  # the node filesystem falls under 5% of its size here


def _falling(at: float, slope_per_day: float) -> Any:
    return lambda t: slope_per_day * (at - t) / DAY


@dataclass
class Source:
    labels: dict[str, str]
    value: Any  # t -> clean value
    noise: float


SOURCES = [
    Source(
        {"__name__": "disk_free_bytes", "job": "node", "instance": "db-1", "mountpoint": "/data"},
        _falling(BREACH_AT, 10e9),
        0.02e9,
    ),
    Source(
        {"__name__": "disk_free_bytes", "job": "node", "instance": "db-2", "mountpoint": "/data"},
        lambda t: np.full_like(np.asarray(t, dtype=float), 500e9),
        0.05e9,
    ),
    Source(
        {"__name__": "disk_free_bytes", "job": "node", "instance": "db-3", "mountpoint": "/data"},
        _falling(IMMINENT_AT, 20e9),
        0.02e9,
    ),
    Source(
        {
            "__name__": "node_filesystem_avail_bytes",
            "job": "node",
            "instance": "node-1:9100",
            "device": "/dev/sda1",
            "fstype": "ext4",
            "mountpoint": "/",
        },
        lambda t: 0.05 * FS_SIZE + _falling(FS_BREACH_AT, 30e9)(t),
        0.02e9,
    ),
    Source(
        {
            "__name__": "node_filesystem_size_bytes",
            "job": "node",
            "instance": "node-1:9100",
            "device": "/dev/sda1",
            "fstype": "ext4",
            "mountpoint": "/",
        },
        lambda t: np.full_like(np.asarray(t, dtype=float), FS_SIZE),
        0.0,
    ),
]
OUTLIER = 900e9  # what db-2 jumps to once fitted: far outside its band


class Webhook:
    """Alertmanager's webhook receiver: keeps every posted notification."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's name)
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[dict[str, Any]]:
        return [alert for n in list(self.notifications) for alert in n["alerts"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Alertmanager:
    def __init__(self, directory: Path, webhook_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "route": {"receiver": "test", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s"},
            "receivers": [{"name": "test", "webhook_configs": [{"url": webhook_url}]}],
        }
        (directory / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self.log = (directory / "alertmanager.log").open("wb")
        self.process = subprocess.Popen(
            [
                find_binary("prometheus-alertmanager"),
                f"--config.file={directory / 'alertmanager.yml'}",
                f"--storage.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200, 30, "alertmanager ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)
        self.log.close()


def _live(at: int, outlier: bool) -> list[TimeSeries]:
    """Every source's clean value at ``at``, so only the deliberate outlier (db-2, once set) leaves its band."""
    series = []
    for source in SOURCES:
        value = OUTLIER if outlier and source.labels.get("instance") == "db-2" else float(source.value(at))
        series.append(TimeSeries(source.labels, [at * 1000], [value]))
    return series


def _history(end: float, span: float) -> list[TimeSeries]:
    last = math.floor(end / STEP) * STEP
    t = np.arange(last - span + STEP, last + STEP / 2, STEP)
    rng = np.random.default_rng(3)
    ms = (t * 1000).astype(np.int64).tolist()
    return [TimeSeries(s.labels, ms, (s.value(t) + rng.normal(0, s.noise or 1e-9, len(t))).tolist()) for s in SOURCES]


def _config(prometheus_url: str, state_dir: Path) -> dict[str, Any]:
    compose = yaml.safe_load((REPO / "examples" / "compose-forecaster.yml").read_text())
    filesystem = next(f for f in compose["forecasts"] if f["name"] == "filesystem_free")
    return {
        "prometheus": {"url": prometheus_url, "timeout": "10s", "retries": 0},
        "state_dir": str(state_dir),
        "defaults": {
            "history": "3d",
            "step": "5m",
            "horizon": "7d",
            "horizons": ["1h", "1d"],
            "retrain_every": "1h",
            "prophet": {"uncertainty_samples": 200},
        },
        "forecasts": [
            # Default model settings, as a user who only sets breach would have them.
            {"name": "disk", "query": "disk_free_bytes", "breach": {"below": 0}},
            filesystem,  # as shipped: a threshold from threshold_query, matched by labels
            # Valid PromQL that Prometheus refuses to run (three series, one label set): errors rise, no fit.
            {
                "name": "broken",
                "query": 'label_replace(disk_free_bytes, "instance", "same", "", "")',
                "retrain_every": "10s",
            },
        ],
    }


def _alerting_copy(directory: Path) -> Path:
    """The shipped alert rules with every ``for:`` at 2s, so they fire within a test; nothing else changes."""
    rules = yaml.safe_load((REPO / "rules" / "forecaster-alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    path = directory / "forecaster-alerts.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


@dataclass
class Stack:
    prometheus: LocalPrometheus
    webhook: Webhook
    pusher: LivePusher
    outlier: threading.Event
    log: Path
    service: Service

    def queries(self) -> dict[str, Query]:
        """An instant query in each Grafana data source: Prometheus, and the forecaster's own query API."""
        return {PROMETHEUS: self.prometheus.query, FORECASTER: self.service.query}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("alerting")
    webhook = Webhook()
    alertmanager = Alertmanager(root, webhook.url)
    service_port, dead_port, app_port = free_port(), free_port(), free_port()
    app_log = (root / "sample_app.log").open("wb")
    app = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "sample_app.py"), "--listen", f"127.0.0.1:{app_port}"],
        stdout=app_log,
        stderr=subprocess.STDOUT,
    )
    (root / "prom").mkdir()
    config_data = _config("http://placeholder", root / "state")
    disk_only = config_module.parse({**config_data, "forecasts": config_data["forecasts"][:1]})
    actuals = root / "test-actuals.yml"
    actuals.write_text(yaml.safe_dump(actual_rules(disk_only), sort_keys=False))
    shipped = [str(p) for p in rule_files() if p.name != "forecaster-alerts.yml"]
    prometheus = LocalPrometheus(
        scrape_targets=[f"127.0.0.1:{service_port}", f"127.0.0.1:{dead_port}"],
        scrape_interval="1s",
        rule_files=[*shipped, str(_alerting_copy(root)), str(actuals)],
        alertmanagers=[f"127.0.0.1:{alertmanager.port}"],
        extra_scrape_configs=[{"job_name": "sample-app", "static_configs": [{"targets": [f"127.0.0.1:{app_port}"]}]}],
        data_dir=root / "prom",
    ).start()
    push(prometheus.write_url, _history(time.time() - 60, 3 * DAY))
    outlier = threading.Event()
    pusher = LivePusher(prometheus.write_url, lambda at: _live(at, outlier.is_set()))
    config_data["prometheus"]["url"] = prometheus.url
    service = Service(write_config(root / "forecaster.yml", config_data), service_port, root / "forecaster.log")
    service.start()
    try:
        yield Stack(prometheus, webhook, pusher, outlier, root / "forecaster.log", service)
    finally:
        pusher.stop()
        if service.process is not None:
            service.stop()
        prometheus.cleanup()
        alertmanager.stop()
        webhook.close()
        app.terminate()
        app.wait(10)
        app_log.close()


def _breach(prometheus: LocalPrometheus, instance: str) -> tuple[float, float]:
    """forecast_breach_seconds of one disk series and the time Prometheus scraped it."""
    selector = f'forecast_breach_seconds{{forecast="disk",instance="{instance}"}}'
    (value,) = prometheus.query(selector)
    (stamp,) = prometheus.query(f"timestamp({selector})")
    return float(value["value"][1]), float(stamp["value"][1])


def _wait_fitted(stack: Stack) -> None:
    wait_for(
        lambda: len(stack.prometheus.query("forecast_breach_seconds")) == 4,
        300,
        "forecast_breach_seconds for the 3 disks and the filesystem (see the service log: " + str(stack.log) + ")",
        interval=1,
    )


def test_breach_seconds_matches_the_true_breach_time_and_is_inf_when_flat(stack: Stack) -> None:
    _wait_fitted(stack)
    seconds, scraped_at = _breach(stack.prometheus, "db-1")
    truth = BREACH_AT - scraped_at
    error = abs(seconds - truth) / truth
    print(f"\nbreach: predicted {seconds / DAY:.3f} d, true {truth / DAY:.3f} d, error {error:.2%}")
    assert error < 0.15, (seconds, truth)
    flat, _ = _breach(stack.prometheus, "db-2")
    assert flat == math.inf
    imminent, scraped_at = _breach(stack.prometheus, "db-3")
    assert abs(imminent - (IMMINENT_AT - scraped_at)) < 0.15 * (IMMINENT_AT - scraped_at)
    (filesystem,) = stack.prometheus.query('forecast_breach_seconds{forecast="filesystem_free"}')
    fs_seconds, fs_truth = float(filesystem["value"][1]), FS_BREACH_AT - float(filesystem["value"][0])
    print(f"filesystem (threshold_query): predicted {fs_seconds / DAY:.3f} d, true {fs_truth / DAY:.3f} d")
    assert abs(fs_seconds - fs_truth) < 0.15 * fs_truth
    assert filesystem["metric"]["mountpoint"] == "/" and filesystem["metric"]["device"] == "/dev/sda1"


def test_capacity_alert_reaches_alertmanager_and_the_webhook(stack: Stack) -> None:
    _wait_fitted(stack)

    def delivered() -> dict[str, Any] | None:
        for alert in stack.webhook.alerts():
            labels = alert["labels"]
            if labels["alertname"] == "ForecastBreachSoon" and labels.get("instance") == "db-1":
                return alert
        return None

    alert = wait_for(delivered, 120, "ForecastBreachSoon for db-1 at the webhook", interval=1)
    assert alert["status"] == "firing"
    assert alert["labels"]["severity"] == "warning" and alert["labels"]["forecast"] == "disk"
    summary = alert["annotations"]["summary"]
    print(f"\nwebhook got: {summary}")
    assert 'instance="db-1"' in summary and 'mountpoint="/data"' in summary
    assert re.search(r"in [45]d \d+h \d+m \d+s$", summary), summary
    assert re.search(r"around \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", alert["annotations"]["description"])
    imminent = wait_for(
        lambda: [a for a in stack.webhook.alerts() if a["labels"]["alertname"] == "ForecastBreachImminent"],
        60,
        "ForecastBreachImminent at the webhook",
        interval=1,
    )
    assert {a["labels"]["instance"] for a in imminent} == {"db-3"}
    assert all(a["labels"]["severity"] == "critical" for a in imminent)


def test_every_shipped_dashboard_and_rule_expression_returns_data(stack: Stack) -> None:
    _wait_fitted(stack)
    stack.outlier.set()
    stack.pusher.push_once()
    prometheus = stack.prometheus
    # Every alert must be firing for its own expression to return data: wait until each one is.
    expected = SHIPPED_ALERTS
    wait_for(
        lambda: expected <= {r["metric"]["alertname"] for r in prometheus.query('ALERTS{alertstate="firing"}')},
        120,
        f"all of {sorted(expected)} firing",
        interval=1,
    )
    # Matched one to one: the alert carries exactly the labels of the real series and of its forecast.
    outside = prometheus.query('ALERTS{alertname="ForecastOutsideBand",alertstate="firing",instance="db-2"}')
    assert [set(r["metric"]) for r in outside] == [
        {"__name__", "alertname", "alertstate", "severity", "forecast", "job", "instance", "mountpoint"}
    ]

    queries = stack.queries()
    checked = []
    for path, dashboard in dashboards():
        values = resolve_variables(dashboard, queries)
        for expression in dashboard_expressions():
            if expression.where.startswith(path.name):
                checked.append((expression.where, fill(expression.expr, values), expression.datasource))
    checked.extend((e.where, e.expr, e.datasource) for e in rule_expressions())
    problems = []
    for where, expr, datasource in checked:
        # A rate or a recording rule can be empty for one evaluation on a busy machine; an error is final.
        deadline = time.monotonic() + 30
        try:
            while not queries[datasource](expr):
                if time.monotonic() > deadline:
                    problems.append(f"{where}: {expr!r} returned no data for 30s")
                    break
                time.sleep(1)
        except RuntimeError as exc:
            problems.append(f"{where}: {exc}")
    on_forecaster = sum(datasource == FORECASTER for *_, datasource in checked)
    print(
        f"\nran {len(checked)} shipped expressions ({len(rule_expressions())} from rule files, "
        f"{on_forecaster} on the forecaster's query API), all with data"
    )
    assert not problems, "\n".join(problems)
    assert len(checked) == len(dashboard_expressions()) + len(rule_expressions())


def test_capacity_outlook_forecast_expressions_reach_past_now(stack: Stack) -> None:
    _wait_fitted(stack)
    (dashboard,) = [d for path, d in dashboards() if path.name == "capacity-outlook.json"]
    values = resolve_variables(dashboard, stack.queries())
    expressions = [
        e for e in dashboard_expressions() if e.where.startswith("capacity-outlook.json") and e.datasource == FORECASTER
    ]
    assert expressions
    now = time.time()
    for expression in expressions:
        expr = fill(expression.expr, values)
        result = stack.service.query_range(expr, now - DAY, now + DAY, 300)
        ahead = [float(t) for series in result for t, _ in series["values"] if float(t) > now]
        assert result and ahead, (expression.where, expr, result)
        print(f"\n{expression.where}: {expr}: {len(result)} series, last point {(max(ahead) - now) / 3600:.1f} h ahead")
