"""The query API on a running service: the forecast curve as Grafana would ask for it, checked against /metrics.

Two synthetic series of one forecast, two days of history at 5m, a day's
horizon and a 1h look-ahead: enough for one quick fit, and for the curve to
reach well past now.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from devtools.local_prometheus import LocalPrometheus
from devtools.remote_write import push
from devtools.synthetic import Signal
from tests.helpers import Service, history, wait_for
from tests.integration.scrape import scrape

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEP = 300
HOUR = 3600
SIGNALS = {
    "api": Signal(base=100, daily=20, phase=0.0, noise=0.5),
    "web": Signal(base=50, daily=10, phase=2.0, noise=0.5),
}
QUERY = 'forecast_yhat{forecast="F"}'


def _start(prometheus: LocalPrometheus, run_service: Any, tmp_path: Path) -> Service:
    push(
        prometheus.write_url,
        [
            history({"__name__": "api_requests", "job": job, "instance": f"{job}-1"}, signal, span=2 * 86400, step=STEP)
            for job, signal in SIGNALS.items()
        ],
    )
    service: Service = run_service(
        {
            "prometheus": {"url": prometheus.url, "timeout": "10s"},
            "state_dir": str(tmp_path / "state"),
            "defaults": {"history": "2d", "step": "5m", "horizon": "1d", "horizons": ["1h"], "retrain_every": "1h"},
            "forecasts": [{"name": "F", "query": "api_requests"}],
        }
    )
    wait_for(lambda: len(service.query(QUERY)) == len(SIGNALS), 120, "the forecast on the query API", interval=1)
    return service


def _by_job(result: list[dict[str, Any]]) -> dict[str, dict[float, float]]:
    return {s["metric"].get("job", ""): {float(t): float(v) for t, v in s["values"]} for s in result}


def test_the_query_api_serves_the_forecast_curve_as_prometheus_would(
    prometheus: LocalPrometheus, run_service: Any, tmp_path: Path
) -> None:
    service = _start(prometheus, run_service, tmp_path)

    # Grafana's health check: POST query=1+1, form-encoded; and the build info it reads.
    reply = httpx.post(f"{service.url}/api/v1/query", data={"query": "1+1"}, timeout=10)
    assert reply.status_code == 200
    assert reply.json()["status"] == "success" and reply.json()["data"]["resultType"] == "scalar"
    assert reply.json()["data"]["result"][1] == "2"
    assert httpx.get(f"{service.url}/api/v1/status/buildinfo", timeout=10).status_code == 200

    # The curve from an hour back to 20 hours ahead, against the 1h look-ahead /metrics exposes at the same moment.
    samples = scrape(service)
    scraped_at = time.time()
    now = scraped_at
    start, end = now - HOUR, now + 20 * HOUR
    curve = _by_job(service.query_range(QUERY, start, end, STEP))
    assert set(curve) == set(SIGNALS)
    for job, points in curve.items():
        assert max(points) > now + HOUR, job
        exposed = next(
            v
            for name, labels, v in samples
            if name == "forecast_yhat" and labels.get("job") == job and labels.get("horizon") == "1h"
        )
        (exact,) = service.query(f'forecast_yhat{{forecast="F",job="{job}"}}', at=scraped_at + HOUR)
        nearest = min(points, key=lambda t: abs(t - (scraped_at + HOUR)))
        exact_error = abs(float(exact["value"][1]) - exposed) / abs(exposed)
        range_error = abs(points[nearest] - exposed) / abs(exposed)
        print(
            f"\n{job}: /metrics horizon=1h {exposed:.4f}; query at +1h {float(exact['value'][1]):.4f} "
            f"({exact_error:.4%} off); query_range point {nearest - scraped_at:+.0f}s from +1h "
            f"{points[nearest]:.4f} ({range_error:.3%} off); {len(points)} points, last "
            f"{(max(points) - now) / HOUR:.1f} h ahead"
        )
        assert exact_error < 0.01 and range_error < 0.01

    # The band holds the curve at every point.
    lower = _by_job(service.query_range('forecast_yhat_lower{forecast="F"}', start, end, STEP))
    upper = _by_job(service.query_range('forecast_yhat_upper{forecast="F"}', start, end, STEP))
    for job, points in curve.items():
        assert points.keys() == lower[job].keys() == upper[job].keys()
        assert all(lower[job][t] <= y <= upper[job][t] for t, y in points.items()), job

    # Aggregations return the aggregated curve.
    (total,) = service.query_range(f"sum by (forecast) ({QUERY})", start, end, STEP)
    assert total["metric"] == {"forecast": "F"}
    expected = {t: sum(curve[job][t] for job in SIGNALS) for t in curve["api"]}
    assert {float(t): float(v) for t, v in total["values"]} == pytest.approx(expected)
    (highest,) = service.query_range(f"max without (job, instance) ({QUERY})", start, end, STEP)
    assert highest["metric"] == {"forecast": "F"}
    assert {float(t): float(v) for t, v in highest["values"]} == pytest.approx(
        {t: max(curve[job][t] for job in SIGNALS) for t in curve["api"]}
    )
    print(f"sum by (forecast) and max without (job, instance): {len(total['values'])} points each, as computed here")

    # What is served is listed.
    assert {"__name__", "forecast", "job", "instance"} <= set(service.api("/api/v1/labels", {}))
    assert service.api("/api/v1/label/forecast/values", {}) == ["F"]
    series = service.api("/api/v1/series", {"match[]": "forecast_yhat"})
    assert sorted(s["job"] for s in series) == sorted(SIGNALS)
    assert all(set(s) == {"__name__", "forecast", "job", "instance"} for s in series)


ODD = [
    "forecast_yhat{",
    "sum(",
    "rate(forecast_yhat[5m])",
    "forecast_yhat offset 1h",
    "forecast_yhat @ 0",
    "topk(1, forecast_yhat)",
    "forecast_yhat and forecast_yhat",
    "forecast_yhat * on (job) group_left forecast_yhat_lower",
    "forecast_yhat[5m:1m]",
    '"text"',
    'forecast_yhat{job=~"("}',
    'forecast_yhat{job=~"[[:alpha:]]"}',
    'label_replace(forecast_yhat, "1", "", "job", "")',
    '{__name__=~"forecast_yhat.*"} / 2',
    "forecast_yhat / on (forecast) forecast_yhat",
    "(" * 3000 + "1" + ")" * 3000,
    "1" + "+1" * 5000,
    "-" * 5000 + "1",
    "\x00",
    "😀",
    "",
    "x" * 50_000 + "{",
]
BAD_PARAMS = [
    {"start": "yesterday", "end": "0", "step": "60"},
    {"start": "0", "end": "-1", "step": "60"},
    {"start": "0", "end": "100000", "step": "1"},
    {"start": "0", "end": "60", "step": "0"},
    {"start": "0", "end": "60", "step": "5x"},
    {"start": "nan", "end": "inf", "step": "-inf"},
    {"start": "1e300", "end": "1e301", "step": "1e-300"},
]


def test_bad_queries_are_bad_data_and_nothing_is_a_5xx(
    prometheus: LocalPrometheus, run_service: Any, tmp_path: Path
) -> None:
    service = _start(prometheus, run_service, tmp_path)
    now = time.time()
    statuses: dict[int, int] = {}

    def ask(path: str, params: dict[str, str], method: str = "POST") -> httpx.Response:
        if method == "POST":
            reply = httpx.post(service.url + path, data=params, timeout=30)
        else:
            reply = httpx.get(service.url + path, params=params, timeout=30)
        statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
        assert reply.status_code < 500, (path, params, reply.text)
        return reply

    malformed = ask("/api/v1/query", {"query": "sum(forecast_yhat"})
    assert malformed.status_code == 400
    assert malformed.json()["status"] == "error" and malformed.json()["errorType"] == "bad_data"
    print(f"\nmalformed: {malformed.status_code} {malformed.json()['error']}")

    window = {"start": str(now - HOUR), "end": str(now + HOUR), "step": "60"}
    for query in ODD:
        for method in ("POST", "GET"):
            reply = ask("/api/v1/query", {"query": query}, method)
            assert reply.json()["status"] == "error", query
            ask("/api/v1/query_range", {"query": query, **window}, method)
        ask("/api/v1/series", {"match[]": query})
        ask("/api/v1/labels", {"match[]": query})
    for params in BAD_PARAMS:
        reply = ask("/api/v1/query_range", {"query": QUERY, **params})
        assert reply.status_code == 400 and reply.json()["errorType"] == "bad_data", params
    for path in ("/api/v1/label/1x/values", "/api/v1/label/%FF/values", "/api/v1/series", "/api/v1/nothing"):
        ask(path, {}, "GET")
    ask("/api/v1/query", {"query": QUERY, "time": "1e400"}, "GET")
    total = sum(statuses.values())
    print(f"{total} odd requests: status counts {dict(sorted(statuses.items()))}; none 5xx")
    assert total >= 100
    # The service is still serving, and still right.
    assert len(service.query(QUERY)) == len(SIGNALS)
    assert not math.isnan(float(service.query(f"sum({QUERY})")[0]["value"][1]))
    assert np.isfinite([float(r["value"][1]) for r in service.query(QUERY)]).all()
