from __future__ import annotations

import logging
import ssl
import threading
from urllib.parse import parse_qs

import httpx
import numpy as np
import pytest

from forecaster.config import PrometheusConfig
from forecaster.errors import BadQueryError, QueryAbandoned, QueryError
from forecaster.prometheus import (
    MAX_POINTS_PER_QUERY,
    MAX_SAMPLES_PER_REQUEST,
    PrometheusSource,
    build_http_client,
    plan_chunks,
)

QUERY = 'sum by (job) (rate(http_requests_total{job=~"api|web"}[5m]))'


def _vector(jobs: list[str]) -> httpx.Response:
    """The instant answer the source reads to size the chunks of a long pull."""
    result = [{"metric": {"job": job}, "value": [0, "1"]} for job in jobs]
    return _ok({"status": "success", "data": {"resultType": "vector", "result": result}})


def _matrix(start: float, end: float, step: float, series: dict[str, float]) -> dict[str, object]:
    times = np.arange(start, end + step / 2, step)
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": {"__name__": "x", "job": job}, "values": [[t, str(base + t / step)] for t in times]}
                for job, base in series.items()
            ],
        },
    }


class Recorder:
    """A MockTransport handler that answers from a list of canned responses, then from ``default``."""

    def __init__(self, *responses: httpx.Response | Exception, default: httpx.Response | None = None) -> None:
        self.responses = list(responses)
        self.default = default
        self.requests: list[httpx.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            item = self.responses.pop(0) if self.responses else self.default
        if isinstance(item, Exception):
            raise item
        assert item is not None, f"unexpected request {request.url}"
        return item


def _source(handler, *, retries: int = 3, sleeps: list[float] | None = None, **kwargs) -> PrometheusSource:
    client = httpx.Client(base_url="http://prom.test", transport=httpx.MockTransport(handler))
    recorded = sleeps if sleeps is not None else []
    return PrometheusSource(client, retries=retries, sleep=recorded.append, **kwargs)


def _ok(body: object) -> httpx.Response:
    return httpx.Response(200, json=body)


@pytest.mark.parametrize(
    ("start", "end", "step"),
    [(0, 100_000 * 60, 60), (17, 45 * 86400 + 3, 60), (1_700_000_013.5, 1_700_000_013.5 + 90 * 86400, 300), (5, 9, 1)],
)
def test_chunks_cover_the_step_grid_exactly_once(start, end, step):
    chunks = plan_chunks(start, end, step)
    points = np.concatenate([np.arange(c.start, c.end + step / 2, step) for c in chunks])
    expected = np.arange(np.ceil(start / step) * step, np.floor(end / step) * step + step / 2, step)
    assert np.array_equal(points, expected)
    assert all(round((c.end - c.start) / step) + 1 <= MAX_POINTS_PER_QUERY for c in chunks)
    assert all(c.start % step == 0 for c in chunks)


def test_a_range_shorter_than_a_step_between_grid_points_has_no_chunk():
    assert plan_chunks(61, 119, 60) == []


def test_a_long_range_is_fetched_in_chunks_and_stitched_without_gaps_or_duplicates():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/query":
            return _vector(["a", "b"])
        params = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        return _ok(_matrix(float(params["start"]), float(params["end"]), float(params["step"]), {"a": 0, "b": 1000}))

    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/query_range":
            seen.append(request)
        return handler(request)

    start, end = 1_700_000_000.0, 1_700_000_000.0 + 45 * 86400
    series = _source(recording, max_concurrency=3).query_range(QUERY, start, end, 60, forecast="reqs")
    assert len(seen) == 7
    expected = np.arange(np.ceil(start / 60) * 60, end + 1, 60)
    by_job = {s.labels["job"]: s for s in series}
    assert set(by_job) == {"a", "b"}
    assert by_job["a"].labels == {"job": "a"}
    for base, s in ((0, by_job["a"]), (1000, by_job["b"])):
        assert np.array_equal(s.timestamps, expected)
        assert np.array_equal(s.values, base + expected / 60)


def test_a_pull_of_many_series_is_split_so_each_answer_stays_small():
    jobs = [f"j{i}" for i in range(500)]
    ranges: list[tuple[float, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/query":
            return _vector(jobs)
        params = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        start, end = float(params["start"]), float(params["end"])
        ranges.append((start, end))
        return _ok(_matrix(start, end, 300, dict.fromkeys(jobs[:2], 0)))

    start, end = 1_700_000_100.0, 1_700_000_100.0 + 14 * 86400
    series = _source(handler).query_range(QUERY, start, end, 300, forecast="reqs")
    steps_per_answer = [round((b - a) / 300) + 1 for a, b in ranges]
    assert max(steps_per_answer) * len(jobs) <= MAX_SAMPLES_PER_REQUEST
    assert sum(steps_per_answer) == 4033
    assert all(len(s.timestamps) == 4033 for s in series)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_transient_status_is_retried_with_backoff(status):
    body = _matrix(0, 600, 60, {"a": 0})
    recorder = Recorder(httpx.Response(status, text="busy"), httpx.Response(status, text="busy"), _ok(body))
    sleeps: list[float] = []
    series = _source(recorder, sleeps=sleeps).query_range(QUERY, 0, 600, 60, forecast="reqs")
    assert len(recorder.requests) == 3 and len(series) == 1
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_retry_after_is_honoured_and_capped():
    recorder = Recorder(
        httpx.Response(429, headers={"Retry-After": "3"}),
        httpx.Response(503, headers={"Retry-After": "3600"}),
        _ok(_matrix(0, 60, 60, {"a": 0})),
    )
    sleeps: list[float] = []
    _source(recorder, sleeps=sleeps).query_range(QUERY, 0, 60, 60, forecast="reqs")
    assert sleeps == [3.0, 10.0]


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("x"),
    ],
    ids=["refused", "timeout", "protocol"],
)
def test_transport_errors_are_retried_then_fail_naming_forecast_and_query(error):
    recorder = Recorder(default=None)
    recorder.responses = [error] * 3
    sleeps: list[float] = []
    with pytest.raises(QueryError) as caught:
        _source(recorder, retries=2, sleeps=sleeps).query_range(QUERY, 0, 60, 60, forecast="reqs")
    assert len(recorder.requests) == 3 and len(sleeps) == 2
    message = str(caught.value)
    assert "'reqs'" in message and QUERY in message and "gave up after 3 attempts" in message


def test_bad_data_fails_at_once_naming_forecast_and_quoting_the_query():
    body = {"status": "error", "errorType": "bad_data", "error": 'invalid parameter "query": 1:5: parse error'}
    recorder = Recorder(httpx.Response(400, json=body))
    sleeps: list[float] = []
    with pytest.raises(BadQueryError) as caught:
        _source(recorder, sleeps=sleeps).query_range(QUERY, 0, 60, 60, forecast="reqs")
    assert len(recorder.requests) == 1 and sleeps == []
    message = str(caught.value)
    assert message.startswith(f"forecast 'reqs': query {QUERY!r}: ")
    assert "bad_data" in message and "parse error" in message


def test_execution_error_is_not_retried():
    body = {"status": "error", "errorType": "execution", "error": "query processing would load too many samples"}
    recorder = Recorder(httpx.Response(422, json=body))
    with pytest.raises(QueryError, match="too many samples"):
        _source(recorder).query_range(QUERY, 0, 60, 60, forecast="reqs")
    assert len(recorder.requests) == 1


def test_warnings_are_logged_with_forecast_and_query(caplog):
    body = _matrix(0, 60, 60, {"a": 0})
    body["warnings"] = ["partial response: store 3 unreachable"]
    with caplog.at_level(logging.WARNING, logger="forecaster.prometheus"):
        _source(Recorder(_ok(body))).query_range(QUERY, 0, 60, 60, forecast="reqs")
    assert "store 3 unreachable" in caplog.text and "'reqs'" in caplog.text and QUERY in caplog.text


def test_a_body_that_is_not_json_is_retried_then_reported():
    recorder = Recorder(default=httpx.Response(200, text="<html>proxy error</html>"))
    with pytest.raises(QueryError, match="not JSON"):
        _source(recorder, retries=1).query_range(QUERY, 0, 60, 60, forecast="reqs")
    assert len(recorder.requests) == 2


@pytest.mark.parametrize(
    "data",
    [
        {"resultType": "matrix", "result": [{"values": [[0, "1"]]}]},
        {"resultType": "matrix", "result": [{"metric": {}, "values": [[0]]}]},
        {"resultType": "matrix", "result": [{"metric": {}, "values": [[0, "one"]]}]},
        {"resultType": "vector", "result": []},
    ],
    ids=["no-metric", "short-pair", "not-a-number", "vector"],
)
def test_a_malformed_result_is_a_query_error(data):
    with pytest.raises(QueryError, match="reqs"):
        _source(Recorder(_ok({"status": "success", "data": data}))).query_range(QUERY, 0, 60, 60, forecast="reqs")


def test_nan_and_inf_values_are_parsed():
    body = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {}, "values": [[0, "NaN"], [60, "+Inf"], [120, "-Inf"]]}],
        },
    }
    (series,) = _source(Recorder(_ok(body))).query_range(QUERY, 0, 120, 60, forecast="reqs")
    assert np.isnan(series.values[0]) and series.values[1] == np.inf and series.values[2] == -np.inf


def test_one_failing_chunk_fails_the_pull():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/query":
            return _vector(["a"])
        if request.url.params["start"] == "600000":
            return httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": "nope"})
        return _ok(_matrix(0, 0, 60, {"a": 0}))

    with pytest.raises(BadQueryError):
        _source(handler, max_points=10_000).query_range(QUERY, 0, 3 * 600_000, 60, forecast="reqs")


def test_stop_abandons_a_query_between_retries():
    stop = threading.Event()
    calls: list[float] = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        stop.set()

    client = httpx.Client(
        base_url="http://prom.test", transport=httpx.MockTransport(Recorder(default=httpx.Response(503)))
    )
    source = PrometheusSource(client, retries=5, sleep=sleep, stop=stop)
    with pytest.raises(QueryAbandoned):
        source.query_range(QUERY, 0, 60, 60, forecast="reqs")
    assert len(calls) == 1


def test_a_401_says_to_check_the_credentials():
    with pytest.raises(QueryError, match="bearer_token_file"):
        _source(Recorder(httpx.Response(401, text="Unauthorized"))).query_range(QUERY, 0, 60, 60, forecast="reqs")


def test_auth_tls_and_headers_reach_the_server_and_secrets_stay_out_of_errors_and_logs(tmp_path, caplog):
    token = tmp_path / "token"
    token.write_text("s3cr3t-token\n")
    config = PrometheusConfig(url="http://prom.test", bearer_token_file=token, headers={"X-Scope-OrgID": "team-a"})
    client = build_http_client(config)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503, text="down")

    client._transport = httpx.MockTransport(handler)  # the configured headers live on the client, not the transport
    with caplog.at_level(logging.DEBUG), pytest.raises(QueryError) as caught:
        PrometheusSource(client, retries=1, sleep=lambda _s: None).query_range(QUERY, 0, 60, 60, forecast="reqs")
    assert seen[0].headers["Authorization"] == "Bearer s3cr3t-token"
    assert seen[0].headers["X-Scope-OrgID"] == "team-a"
    assert "s3cr3t" not in str(caught.value) and "s3cr3t" not in caplog.text


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({}, "identity"), ({"accept-encoding": "gzip"}, "gzip"), ({"Accept-Encoding": "gzip, br"}, "gzip, br")],
    ids=["uncompressed by default", "asked for in lower case", "asked for"],
)
def test_answers_come_uncompressed_unless_the_headers_ask_for_compression(headers, expected):
    client = build_http_client(PrometheusConfig(url="http://prom.test", headers=headers))
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": []}})

    client._transport = httpx.MockTransport(handler)
    PrometheusSource(client, retries=0).query_range(QUERY, 0, 60, 60, forecast="reqs")
    assert seen[0].headers.get_list("Accept-Encoding") == [expected]


def test_basic_auth_reads_the_password_file(tmp_path):
    password = tmp_path / "pw"
    password.write_text("hunter2\n")
    client = build_http_client(
        PrometheusConfig.model_validate(
            {"url": "http://prom.test", "basic_auth": {"username": "u", "password_file": str(password)}}
        )
    )
    seen: list[httpx.Request] = []
    client._transport = httpx.MockTransport(lambda r: seen.append(r) or _ok(_matrix(0, 0, 60, {})))
    PrometheusSource(client).query_range(QUERY, 0, 0, 60, forecast="reqs")
    assert seen[0].headers["Authorization"] == "Basic dTpodW50ZXIy"


@pytest.mark.parametrize("key", ["bearer_token_file", "ca_file"])
def test_an_unreadable_secret_or_ca_file_is_named(tmp_path, key):
    missing = tmp_path / "missing"
    raw = {"url": "https://prom.test"}
    raw.update(
        {"bearer_token_file": str(missing)} if key == "bearer_token_file" else {"tls": {"ca_file": str(missing)}}
    )
    with pytest.raises(Exception, match=f"prometheus.*{key}.*{missing}"):
        build_http_client(PrometheusConfig.model_validate(raw))


def test_insecure_skip_verify_turns_verification_off():
    client = build_http_client(
        PrometheusConfig.model_validate({"url": "https://p", "tls": {"insecure_skip_verify": True}})
    )
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert pool._ssl_context.verify_mode.name == "CERT_NONE"


def test_a_plain_http_url_loads_no_ca_bundle_and_an_https_one_verifies_against_it():
    def context(url: str) -> ssl.SSLContext:
        pool = build_http_client(PrometheusConfig(url=url))._transport._pool  # type: ignore[attr-defined]
        return pool._ssl_context

    plain, secure = context("http://prom.test:9090"), context("https://prom.test")
    assert plain.cert_store_stats()["x509_ca"] == 0
    assert secure.cert_store_stats()["x509_ca"] > 0
    # Unused on http, but never a context that would accept any certificate.
    for ctx in (plain, secure):
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_query_parameters_are_what_prometheus_expects():
    recorder = Recorder(_ok(_matrix(0, 0, 60, {})))
    _source(recorder).query_range(QUERY, 1_700_000_000.5, 1_700_000_100, 60, forecast="reqs")
    params = dict(recorder.requests[0].url.params)
    assert params == {"query": QUERY, "start": "1700000040", "end": "1700000100", "step": "60"}
