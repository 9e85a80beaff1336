"""PrometheusSource and the CLI against a local HTTP server that fails on cue."""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
import time

import pytest

from forecaster.config import PrometheusConfig
from forecaster.errors import QueryError
from forecaster.prometheus import PrometheusSource, build_http_client
from tests.helpers import write_config
from tests.integration.fault_server import HANG, MALFORMED, FaultServer, now_aligned

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUERY = "sum by (job) (rate(fake_total[5m]))"
SECRET = "tok-9f3b1c7e"


def _source(url: str, *, retries: int, timeout: str = "1s", **extra: object) -> PrometheusSource:
    config = PrometheusConfig.model_validate({"url": url, "timeout": timeout, "retries": retries, **extra})
    # Keep the backoff real but short: the schedule itself is unit-tested.
    return PrometheusSource(
        build_http_client(config), retries=retries, sleep=lambda seconds: time.sleep(min(seconds, 0.05))
    )


def test_recovers_from_500_503_malformed_json_and_a_hang(caplog):
    with FaultServer([500, 503, MALFORMED, HANG], hang_seconds=5).running() as server:
        source = _source(server.url, retries=4)
        end = now_aligned(60)
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="forecaster.prometheus"):
            (series,) = source.query_range(QUERY, end - 3600, end, 60, forecast="reqs")
        elapsed = time.monotonic() - started
        source.close()
    assert len(server.requests) == 5
    assert len(series.timestamps) == 61 and series.labels == {"job": "api"}
    # The hang was cut at the 1s timeout, not waited out.
    assert elapsed < 4
    for expected in ("HTTP 500", "HTTP 503", "not JSON", "did not answer within the timeout"):
        assert expected in caplog.text


@pytest.mark.parametrize("fault", [503, 500, MALFORMED, HANG])
def test_gives_up_after_the_retries_naming_forecast_and_query(fault):
    with FaultServer(default=fault, hang_seconds=3).running() as server:
        source = _source(server.url, retries=2)
        end = now_aligned(60)
        with pytest.raises(QueryError) as caught:
            source.query_range(QUERY, end - 600, end, 60, forecast="reqs")
        source.close()
    assert len(server.requests) == 3
    assert f"forecast 'reqs': query {QUERY!r}" in str(caught.value)
    assert "gave up after 3 attempts" in str(caught.value)


def test_bad_request_is_not_retried():
    with FaultServer(default=400).running() as server:
        source = _source(server.url, retries=3)
        end = now_aligned(60)
        with pytest.raises(QueryError, match="injected"):
            source.query_range(QUERY, end - 600, end, 60, forecast="reqs")
        source.close()
    assert len(server.requests) == 1


def test_bearer_token_and_headers_reach_the_server(tmp_path):
    token = tmp_path / "token"
    token.write_text(SECRET + "\n")
    with FaultServer().running() as server:
        source = _source(
            server.url, retries=0, bearer_token_file=str(token), headers={"X-Scope-OrgID": "team-a", "X-Extra": "1"}
        )
        end = now_aligned(60)
        source.query_range(QUERY, end - 600, end, 60, forecast="reqs")
        source.close()
    (_, params, headers) = server.requests[0]
    assert headers["Authorization"] == f"Bearer {SECRET}"
    assert headers["X-Scope-OrgID"] == "team-a" and headers["X-Extra"] == "1"
    assert params["query"] == QUERY


def test_basic_auth_reaches_the_server(tmp_path):
    password = tmp_path / "password"
    password.write_text("pa55-" + SECRET + "\n")
    with FaultServer().running() as server:
        source = _source(server.url, retries=0, basic_auth={"username": "forecaster", "password_file": str(password)})
        end = now_aligned(60)
        source.query_range(QUERY, end - 600, end, 60, forecast="reqs")
        source.close()
    expected = base64.b64encode(f"forecaster:pa55-{SECRET}".encode()).decode()
    assert server.requests[0][2]["Authorization"] == f"Basic {expected}"


@pytest.mark.parametrize("status", [401, 503])
def test_the_token_never_appears_in_the_cli_output(tmp_path, status):
    token = tmp_path / "token"
    token.write_text(SECRET)
    with FaultServer(default=status).running() as server:
        config = write_config(
            tmp_path / "c.yml",
            {
                "prometheus": {"url": server.url, "timeout": "1s", "retries": 1, "bearer_token_file": str(token)},
                "state_dir": str(tmp_path / "state"),
                "workers": 0,
                "forecasts": [{"name": "reqs", "query": QUERY}],
            },
        )
        result = subprocess.run(
            [sys.executable, "-m", "forecaster", "--log-level", "debug", "forecast", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert server.requests and server.requests[0][2]["Authorization"] == f"Bearer {SECRET}"
    assert "'reqs'" in result.stderr and QUERY in result.stderr
    assert SECRET not in result.stderr and SECRET not in result.stdout
