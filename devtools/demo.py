"""``make demo``: a local Prometheus with weeks of realistic history, and the forecaster on it.

Starts the distribution's Prometheus on 127.0.0.1:9090 (or a free port) with
the shipped alert and anomaly-score rules and the demo's ``forecast:actual``
recording rules (checked to be loaded), back-fills three weeks of synthetic
traffic and disk series through remote write, keeps appending live samples
(never future-dated), runs ``forecaster run`` on 127.0.0.1:9095, and prints
where to look. Every convention the README claims shows: each series pairs
with its forecast, the one pushed without ``job`` and ``instance`` too; the
disk fills within a week, so ``ForecastBreachSoon`` goes pending minutes
after the start; a few minutes in, one series' traffic jumps, its
``forecast:anomaly_score`` goes above 1 and ``ForecastOutsideBand`` catches
it. Alerts are printed as they change, with every series' anomaly score.
Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import math
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import cast

import httpx
import numpy as np
import yaml

from devtools.local_prometheus import LocalPrometheus, free_port
from devtools.remote_write import TimeSeries, push
from devtools.synthetic import DAY, Signal, grid

HISTORY_DAYS = 21
STEP = 60.0
LIVE_EVERY = 15.0
# The anomaly: web-1's traffic jumps this many times over, this long after start-up, for this long.
ANOMALY_FACTOR = 3.0
ANOMALY_AFTER = 180.0
ANOMALY_FOR = 600.0
ANOMALY_INSTANCE = "web-1"
RULES = Path(__file__).resolve().parent.parent / "rules"
# The shipped rule files the demo loads; the third, forecast-actuals.yml, is for the compose stack's forecasts.
SHIPPED_RULES = (RULES / "forecaster-alerts.yml", RULES / "forecast-anomaly.yml")

Key = tuple[tuple[str, str], ...]


def _series(now: float) -> dict[Key, Signal]:
    """The demo's series, their trends passing through ``base`` at ``now``.

    All but one carry ``job`` and ``instance``, which their forecasts keep under honor_labels; ``zone="ap"``
    has neither, like an aggregate or a pushed series, and its forecast is stored without them too.
    """
    return {
        (
            ("__name__", "demo_http_requests_per_second"),
            ("instance", "api-eu-1"),
            ("job", "api"),
            ("zone", "eu"),
        ): Signal(base=120, daily=60, weekly=25, trend_per_day=0.8, noise=6, phase=0.0, origin=now),
        (
            ("__name__", "demo_http_requests_per_second"),
            ("instance", "api-us-1"),
            ("job", "api"),
            ("zone", "us"),
        ): Signal(base=200, daily=90, weekly=30, trend_per_day=1.5, noise=9, phase=2.2, origin=now),
        (("__name__", "demo_http_requests_per_second"), ("instance", "web-1"), ("job", "web")): Signal(
            base=45, daily=20, weekly=8, noise=3, phase=1.0, origin=now
        ),
        (("__name__", "demo_http_requests_per_second"), ("zone", "ap")): Signal(
            base=80, daily=35, weekly=10, trend_per_day=0.5, noise=4, phase=3.5, origin=now
        ),
        # 60 GB free today, shrinking 12 GB a day: full in five days, inside ForecastBreachSoon's week.
        (
            ("__name__", "demo_disk_free_bytes"),
            ("device", "sda1"),
            ("instance", "db-1"),
            ("job", "node"),
            ("mountpoint", "/data"),
        ): Signal(base=60e9, daily=0.6e9, trend_per_day=-12e9, noise=0.15e9, phase=0.5, origin=now),
    }


def _config(prometheus_url: str, state_dir: Path) -> dict[str, object]:
    return {
        "prometheus": {"url": prometheus_url, "timeout": "30s"},
        "server": {"listen": "127.0.0.1:9095"},
        "state_dir": str(state_dir),
        "defaults": {
            "history": f"{HISTORY_DAYS}d",
            "step": "5m",
            "horizon": "2d",
            "horizons": ["1h", "1d"],
            "retrain_every": "15m",
        },
        "forecasts": [
            {"name": "http_requests", "query": "demo_http_requests_per_second", "breach": {"above": 1400}},
            {
                "name": "disk_free",
                "query": "demo_disk_free_bytes",
                "history": "7d",
                "horizon": "14d",
                "breach": {"below": 0},
                "model": {"trend": "linear"},
            },
        ],
    }


def _history(series: dict[Key, Signal], end: float) -> list[TimeSeries]:
    t = grid(end, HISTORY_DAYS * DAY, STEP)
    ms = (t * 1000).astype(np.int64).tolist()
    return [TimeSeries(dict(key), ms, sig.sample(t, seed=i).tolist()) for i, (key, sig) in enumerate(series.items())]


def _live(series: dict[Key, Signal], now: float, rng: np.random.Generator, anomaly: bool) -> list[TimeSeries]:
    at = math.floor(now)
    out = []
    for key, sig in series.items():
        value = float(sig.clean(at)) + float(rng.normal(0, sig.noise))
        if anomaly and ("instance", ANOMALY_INSTANCE) in key:
            value *= ANOMALY_FACTOR
        out.append(TimeSeries(dict(key), [at * 1000], [value]))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", default="demo-state", type=Path)
    parser.add_argument("--prometheus-port", type=int, default=9090)
    args = parser.parse_args(argv)

    port = args.prometheus_port if _port_free(args.prometheus_port) else free_port()
    if not _port_free(9095):
        print("demo: port 9095 is taken (another forecaster?); stop it and run make demo again", file=sys.stderr)
        return 1
    args.state_dir.mkdir(parents=True, exist_ok=True)
    prometheus = LocalPrometheus(
        port=port, scrape_targets=["127.0.0.1:9095"], scrape_interval="15s", rule_files=_rule_files(args.state_dir)
    )
    print(f"demo: starting Prometheus on {prometheus.url} (data in {prometheus.dir})", flush=True)
    prometheus.start()
    forecaster: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        missing = _rule_groups_missing(prometheus)
        if missing:
            print(f"demo: Prometheus did not load the rule groups {', '.join(missing)}; see {prometheus.log_path}")
            return 1
        started = time.monotonic()
        series = _series(time.time())
        sent = push(prometheus.write_url, _history(series, time.time() - 1))
        print(f"demo: loaded {sent:,} samples of {HISTORY_DAYS}-day history in {time.monotonic() - started:.1f}s")
        config_path = args.state_dir / "forecaster.yml"
        config_path.write_text(yaml.safe_dump(_config(prometheus.url, args.state_dir / "state"), sort_keys=False))
        forecaster = subprocess.Popen([sys.executable, "-m", "forecaster", "run", "-c", str(config_path)])
        _announce(prometheus.url, config_path)
        rng = np.random.default_rng()
        ready = time.monotonic()
        alerts: dict[tuple[str, str], str] = {}
        shown: set[tuple[str, str]] = set()
        above: set[str] = set()
        anomaly = False
        while not stopping:
            since = time.monotonic() - ready
            if anomaly != (ANOMALY_AFTER <= since < ANOMALY_AFTER + ANOMALY_FOR):
                anomaly = not anomaly
                change = f"jumps {ANOMALY_FACTOR:g}x for {ANOMALY_FOR / 60:.0f} minutes" if anomaly else "is back"
                print(f"demo: {ANOMALY_INSTANCE}'s traffic {change}", flush=True)
            push(prometheus.write_url, _live(series, time.time() - 1, rng, anomaly))
            alerts, printed = _print_alert_changes(prometheus, alerts, shown)
            scores = _anomaly_scores(prometheus)
            if scores and (printed or {name for name, score in scores.items() if score > 1} != above):
                above = _print_scores(scores)
            if forecaster.poll() is not None:
                print(f"demo: the forecaster exited with {forecaster.returncode}", file=sys.stderr)
                return 1
            deadline = time.monotonic() + LIVE_EVERY
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.2)
        return 0
    finally:
        if forecaster is not None and forecaster.poll() is None:
            forecaster.terminate()
            forecaster.wait(30)
        prometheus.cleanup()
        print("demo: stopped")


def _rule_files(state_dir: Path) -> list[str]:
    """The shipped alert and anomaly-score rules and the demo's forecast:actual recording rules."""
    from forecaster.config import parse
    from forecaster.recording_rules import render

    # Absolute: Prometheus resolves a relative rule file against its own config's folder, not this one.
    actuals = (state_dir / "forecast-actuals.yml").resolve()
    actuals.write_text(render(parse(_config("http://127.0.0.1:9090", state_dir / "state")), "the demo config"))
    return [str(actuals), *(str(path) for path in SHIPPED_RULES)]


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        # As the servers themselves bind: connections of a demo just stopped (TIME_WAIT) do not block the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _announce(prometheus_url: str, config_path: Path) -> None:
    query = (
        'demo_http_requests_per_second{job="api",zone="eu"} '
        'or forecast_yhat{forecast="http_requests",horizon="0s",job="api",zone="eu"}'
    )
    graph = f"{prometheus_url}/graph?g0.expr={_quote(query)}&g0.tab=0&g0.range_input=2d"
    print(
        f"""
demo: ready. The first fits take a few seconds.
  Prometheus        {prometheus_url}
  forecaster        http://127.0.0.1:9095/metrics   (config: {config_path})
  actual vs forecast, in Prometheus' graph page:
    {query}
  {graph}
  the band:  forecast_yhat_lower{{forecast="http_requests"}}  and  forecast_yhat_upper{{forecast="http_requests"}}
  an hour ahead:  forecast_yhat{{forecast="http_requests",horizon="1h"}}
Ctrl-C stops the demo.
""",
        flush=True,
    )


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _rule_groups_missing(prometheus: LocalPrometheus) -> list[str]:
    """The rule groups the demo gave Prometheus that it does not report as loaded."""
    shipped = [yaml.safe_load(path.read_text()) for path in SHIPPED_RULES]
    expected = {"forecast-actuals", *(group["name"] for rules in shipped for group in rules["groups"])}
    body = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()
    loaded = {group["name"] for group in body["data"]["groups"]}
    return sorted(expected - loaded)


def _print_alert_changes(
    prometheus: LocalPrometheus, before: dict[tuple[str, str], str], shown: set[tuple[str, str]]
) -> tuple[dict[tuple[str, str], str], bool]:
    """Print alerts going pending (the first time each does), firing, or resolved after firing.

    Returns the alerts now, and whether anything was printed.

    An 80% band misses one sample in five, so ForecastOutsideBand goes pending and clears again all the
    time; only its first pending and any firing are news.
    """
    try:
        body = httpx.get(f"{prometheus.url}/api/v1/alerts", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return before, False
    now: dict[tuple[str, str], str] = {}
    summaries: dict[tuple[str, str], str] = {}
    for alert in body.get("data", {}).get("alerts", []):
        labels = {k: v for k, v in alert["labels"].items() if k not in ("alertname", "severity")}
        key = (alert["labels"]["alertname"], ", ".join(f"{k}={v}" for k, v in sorted(labels.items())))
        now[key] = alert["state"]
        summaries[key] = alert.get("annotations", {}).get("summary", "")
    printed = False
    for key, state in now.items():
        if (state == "firing" and before.get(key) != "firing") or (state == "pending" and key not in shown):
            print(f"demo: alert {key[0]} {state}: {summaries[key] or key[1]}", flush=True)
            shown.add(key)
            printed = True
    for key in before.keys() - now.keys():
        if before[key] == "firing":
            print(f"demo: alert {key[0]} resolved: {key[1]}", flush=True)
            printed = True
    return now, printed


def _anomaly_scores(prometheus: LocalPrometheus) -> dict[str, float]:
    """forecast:anomaly_score of every series, by its forecast and labels as printed; empty when unreachable."""
    try:
        result = prometheus.query("forecast:anomaly_score")
    except (httpx.HTTPError, ValueError, RuntimeError):
        return {}
    scores = {}
    for item in result:
        labels = cast(dict[str, str], item["metric"])
        own = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k not in ("__name__", "forecast"))
        scores[f"{labels['forecast']}{{{own}}}"] = float(cast(list[str], item["value"])[1])
    return scores


def _print_scores(scores: dict[str, float]) -> set[str]:
    """Print every series' score, those above 1 marked; returns the series above 1."""
    print("demo: forecast:anomaly_score (0 inside the band, 1 half a band outside, > marks above 1):", flush=True)
    for name, score in sorted(scores.items()):
        print(f"demo: {'>' if score > 1 else ' '} {score:8.2f}  {name}", flush=True)
    return {name for name, score in scores.items() if score > 1}


if __name__ == "__main__":
    sys.exit(main())
