"""The query API over HTTP: Prometheus' envelope and parameters, every endpoint, and no 5xx for any input."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from forecaster.exporter import Board
from forecaster.query_api import QueryAPI, format_value
from forecaster.server import MetricsServer
from tests.curve_board import POINTS, STEP, T0, board

NOW = T0 + 2 * STEP
FORM = "application/x-www-form-urlencoded"


def get(path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    return call(QueryAPI(board(), lambda: NOW), path, params)


def call(api: QueryAPI, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    status, body = api.handle(f"{path}?{urlencode(params, doseq=True)}", "", b"")
    return status, orjson.loads(body)


def _status_page(query: str) -> tuple[int, bytes]:
    return 200, b"the status page"


@pytest.fixture
def server() -> Iterator[str]:
    http = MetricsServer(
        CollectorRegistry(), "127.0.0.1", 0, threading.Event(), _status_page, QueryAPI(board(), lambda: NOW)
    )
    http.start()
    yield "http://{}:{}".format(*http.address)
    http.stop()


# --- over a real listener ---------------------------------------------------------------------


def test_grafana_health_check_posts_one_plus_one_form_encoded(server: str) -> None:
    reply = httpx.post(f"{server}/api/v1/query", content="query=1%2B1", headers={"Content-Type": FORM})
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "application/json"
    assert reply.json() == {"status": "success", "data": {"resultType": "scalar", "result": [NOW, "2"]}}
    assert httpx.get(f"{server}/api/v1/status/buildinfo").status_code == 200


def test_get_and_post_agree_and_the_body_wins_over_the_url(server: str) -> None:
    query = {"query": 'forecast_yhat{job="web"}', "time": str(NOW)}
    by_get = httpx.get(f"{server}/api/v1/query", params=query).json()
    by_post = httpx.post(f"{server}/api/v1/query?query=nonsense(", data=query).json()
    assert by_get == by_post and by_get["data"]["result"][0]["value"] == [NOW, "102"]


def test_post_elsewhere_is_refused_and_other_paths_are_unchanged(server: str) -> None:
    assert httpx.post(f"{server}/metrics", data={"a": "b"}).status_code == 405
    assert httpx.get(f"{server}/healthz").status_code == 200
    assert httpx.head(f"{server}/api/v1/labels").status_code == 200
    missing = httpx.get(f"{server}/api/v1/rules")
    assert missing.status_code == 404 and missing.json()["errorType"] == "not_found"


def test_an_oversized_body_is_refused_before_it_is_read(server: str) -> None:
    reply = httpx.post(f"{server}/api/v1/query", content=b"query=" + b"1" * (2 << 20), headers={"Content-Type": FORM})
    assert reply.status_code == 413


# --- endpoints --------------------------------------------------------------------------------


def test_query_range_returns_a_matrix_only_where_the_frame_has_values() -> None:
    status, reply = get(
        "/api/v1/query_range", query='forecast_yhat{job="api"}', start=T0 - 600, end=T0 + 2 * STEP, step="5m"
    )
    assert status == 200 and reply["data"]["resultType"] == "matrix"
    (series,) = reply["data"]["result"]
    assert series["metric"] == {"__name__": "forecast_yhat", "forecast": "http", "job": "api", "instance": "a-1"}
    assert series["values"] == [[T0, "10"], [T0 + STEP, "11"], [T0 + 2 * STEP, "12"]]


def test_query_range_of_a_scalar_is_one_series_without_labels() -> None:
    status, reply = get("/api/v1/query_range", query="1+1", start="2023-11-14T22:13:20Z", end=T0 + 60, step=30)
    assert status == 200
    assert reply["data"]["result"] == [{"metric": {}, "values": [[T0, "2"], [T0 + 30, "2"], [T0 + 60, "2"]]}]


def test_instant_query_outside_every_frame_is_an_empty_vector() -> None:
    status, reply = get("/api/v1/query", query="forecast_yhat", time=T0 + POINTS * STEP)
    assert status == 200 and reply["data"] == {"resultType": "vector", "result": []}


def test_labels_label_values_and_series_list_what_is_served() -> None:
    assert get("/api/v1/labels")[1]["data"] == ["__name__", "forecast", "instance", "job"]
    assert get("/api/v1/labels", **{"match[]": 'forecast_yhat{forecast="disk"}'})[1]["data"] == [
        "__name__",
        "forecast",
        "instance",
    ]
    assert get("/api/v1/label/forecast/values")[1]["data"] == ["disk", "http"]
    assert get("/api/v1/label/job/values")[1]["data"] == ["api", "web"]  # no "" for the disk series
    assert get("/api/v1/label/__name__/values")[1]["data"] == [
        "forecast_yhat",
        "forecast_yhat_lower",
        "forecast_yhat_upper",
    ]
    series = get("/api/v1/series", **{"match[]": ["forecast_yhat", 'forecast_yhat_upper{job="web"}']})[1]["data"]
    assert len(series) == 4 and {"__name__": "forecast_yhat_upper", "forecast": "http", "job": "web"} in series
    # A range that no frame reaches lists nothing.
    assert get("/api/v1/series", **{"match[]": "forecast_yhat", "end": T0 - 1})[1]["data"] == []
    assert get("/api/v1/labels", start=T0 + POINTS * STEP)[1]["data"] == []


def test_metadata_and_buildinfo() -> None:
    metadata = get("/api/v1/metadata")[1]["data"]
    assert set(metadata) == {"forecast_yhat", "forecast_yhat_lower", "forecast_yhat_upper"}
    assert metadata["forecast_yhat"][0]["type"] == "gauge"
    assert set(get("/api/v1/metadata", metric="forecast_yhat")[1]["data"]) == {"forecast_yhat"}
    assert get("/api/v1/status/buildinfo")[1]["data"]["version"]


def test_an_empty_board_answers_with_empty_results() -> None:
    api = QueryAPI(Board([]), lambda: NOW)
    assert call(api, "/api/v1/query", {"query": "forecast_yhat"})[1]["data"]["result"] == []
    assert call(api, "/api/v1/labels", {})[1]["data"] == []


# --- parameters and errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"query": "1", "start": "x", "end": T0, "step": 60}, "invalid parameter 'start'"),
        ({"query": "1", "start": T0, "end": "nan", "step": 60}, "invalid parameter 'end'"),
        ({"query": "1", "start": T0, "end": "2024-01-01T00:00:00", "step": 60}, "invalid parameter 'end'"),
        ({"query": "1", "start": T0, "end": T0 - 1, "step": 60}, "end timestamp must not be before start time"),
        ({"query": "1", "start": T0, "end": T0 + 60, "step": "0"}, "zero or negative"),
        ({"query": "1", "start": T0, "end": T0 + 60, "step": "-5m"}, "invalid parameter 'step'"),
        ({"query": "1", "start": T0, "end": T0 + 60, "step": "1e400"}, "invalid parameter 'step'"),
        ({"query": "1", "start": T0, "end": T0 + 11_001, "step": 1}, "exceeded maximum resolution of 11,000 points"),
        ({"query": "rate(x[5m])", "start": T0, "end": T0 + 60, "step": 1}, "rate()"),
        ({"start": T0, "end": T0 + 60, "step": 1}, "parse error"),
    ],
)
def test_bad_parameters_are_bad_data(params: dict[str, Any], message: str) -> None:
    status, reply = get("/api/v1/query_range", **params)
    assert status == 400 and reply["status"] == "error" and reply["errorType"] == "bad_data"
    assert message in reply["error"]


def test_eleven_thousand_points_are_allowed_and_steps_take_durations() -> None:
    status, reply = get("/api/v1/query_range", query="1", start=T0, end=T0 + 11_000, step=1)
    assert status == 200 and len(reply["data"]["result"][0]["values"]) == 11_001
    status, reply = get("/api/v1/query_range", query="1", start=T0, end=T0 + 3600, step="1h")
    assert status == 200 and len(reply["data"]["result"][0]["values"]) == 2


def test_bad_label_names_and_missing_match_are_bad_data() -> None:
    assert get("/api/v1/label/1x/values") == (
        400,
        {"status": "error", "errorType": "bad_data", "error": "invalid label name: '1x'"},
    )
    assert get("/api/v1/series")[1]["error"] == "no match[] parameter provided"
    assert "not a series selector" in get("/api/v1/series", **{"match[]": "1+1"})[1]["error"]


def test_execution_errors_are_422() -> None:
    status, reply = get("/api/v1/query", query='{__name__=~"forecast_yhat.*"} * 2')
    assert status == 422 and reply["errorType"] == "execution"


ODD_QUERIES = [
    "",
    " ",
    "(",
    ")",
    "{}",
    '{a=""}',
    "foo{",
    "1 +",
    "+",
    "-",
    "--1",
    "1/0",
    "0/0",
    "-0",
    "1e308*10",
    "nan",
    "Inf",
    "0x1F",
    "\x00",
    "\uffff",
    "😀",
    'forecast_yhat{job=~"("}',
    'forecast_yhat{job=~"a{99999999999}"}',
    'forecast_yhat{job=~"\\\\"}',
    'forecast_yhat{job=~"[[:alpha:]]"}',
    'forecast_yhat{job=~"\\\\pL"}',
    'forecast_yhat{job=~"(?P<x>a)(?P<x>b)"}',
    'label_replace(forecast_yhat, "a", "$999999999999999999999", "job", "(.*)")',
    'label_replace(forecast_yhat, "a", "${", "job", "(.*)")',
    'label_replace(forecast_yhat, "__name__", "", "job", ".*")',
    'label_replace(forecast_yhat, "job", "same", "job", ".*")',
    "sum(forecast_yhat) by (",
    "sum without () (forecast_yhat)",
    "count(1)",
    'sum("x")',
    "forecast_yhat ^ forecast_yhat",
    "forecast_yhat % 0",
    "-forecast_yhat * -1",
    "(((((((((((forecast_yhat)))))))))))",
    "(" * 150 + "1" + ")" * 150,
    "(" * 5000 + "1" + ")" * 5000,
    "-" * 10_000 + "1",
    "1" + "+1" * 20_000,
    "x" * 100_000,
    "forecast_yhat{" + ",".join(f'l{i}="v"' for i in range(500)) + "}",
    "forecast_yhat == bool on() forecast_yhat_lower",
    "forecast_yhat + on(job) forecast_yhat",
    "forecast_yhat unless forecast_yhat",
    "absent(forecast_yhat)",
    "time()",
    "scalar(forecast_yhat)",
    "forecast_yhat @ start()",
    "forecast_yhat offset -1h",
    "quantile(0.5, forecast_yhat)",
    "sort(forecast_yhat)",
]


@pytest.mark.parametrize("query", ODD_QUERIES, ids=range(len(ODD_QUERIES)))
def test_no_query_gets_a_5xx(query: str) -> None:
    for path, extra in (("/api/v1/query", {}), ("/api/v1/query_range", {"start": T0, "end": T0 + 600, "step": 60})):
        status, reply = get(path, query=query, **extra)
        assert status in (200, 400, 422), (query, reply)
        assert (status == 200) == (reply["status"] == "success")
    status, reply = get("/api/v1/series", **{"match[]": query})
    assert status in (200, 400, 422), (query, reply)


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/query?query=%ff%fe",
        "/api/v1/query?query=1&time=1e309",
        "/api/v1/query?query=1&time=-1e20",
        "/api/v1/query_range?query=1&start=0&end=1e11&step=1e-9",
        "/api/v1/query_range?query=1&start=0&end=1&step=1e-300",
        "/api/v1/label/%2F/values",
        "/api/v1/label/" + quote("ü") + "/values",
        "/api/v1/labels?start=tomorrow",
        "/api/v1/series?match[]=&match[]=forecast_yhat",
        "/api/v1/query?query=1&query=2&time=&time=x",
    ],
)
def test_no_parameter_gets_a_5xx(target: str) -> None:
    status, body = QueryAPI(board(), lambda: NOW).handle(target, "", b"")
    assert status in (200, 400, 422), (target, body)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2.0, "2"),
        (412.7, "412.7"),
        (-0.5, "-0.5"),
        (1e21, "1000000000000000000000"),
        (1.5e-7, "0.00000015"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
    ],
)
def test_values_are_written_as_prometheus_writes_them(value: float, text: str) -> None:
    assert format_value(value) == text
