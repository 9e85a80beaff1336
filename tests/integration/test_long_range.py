"""45 days at 1m step from a real Prometheus: chunked under its 11,000-point limit, sample for sample."""

from __future__ import annotations

import itertools
import json
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from devtools.local_prometheus import LocalPrometheus
from devtools.remote_write import push
from devtools.synthetic import Signal
from forecaster.config import PrometheusConfig
from forecaster.errors import BadQueryError
from forecaster.history import merge, plan
from forecaster.prometheus import PrometheusSource, build_http_client
from tests.helpers import history

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEP = 60.0
SPAN = 45 * 86400.0
QUERY = 'long_range_value{job="long"}'


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("prom")
    with LocalPrometheus(data_dir=data_dir) as prom:
        sent = push(
            prom.write_url,
            [history({"__name__": "long_range_value", "job": "long"}, Signal(noise=2.0), span=SPAN + 3600, step=STEP)],
            samples_per_request=50_000,
        )
        assert sent == (SPAN + 3600) / STEP
        yield prom


def _direct(prom: LocalPrometheus, start: float, end: float) -> dict[float, float]:
    body = httpx.get(
        f"{prom.url}/api/v1/query_range",
        params={"query": QUERY, "start": str(start), "end": str(end), "step": str(int(STEP))},
        timeout=30,
    ).json()
    assert body["status"] == "success", body
    (series,) = body["data"]["result"]
    return {float(t): float(v) for t, v in series["values"]}


def _logged_ranges(path: Path) -> list[tuple[float, float, float]]:
    out = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        params = entry.get("params", {})
        if entry.get("httpRequest", {}).get("path") == "/api/v1/query_range" and params.get("query") == QUERY:
            start = datetime.fromisoformat(params["start"]).timestamp()
            end = datetime.fromisoformat(params["end"]).timestamp()
            out.append((start, end, float(params["step"])))
    return out


def test_45_days_at_1m_in_chunks_equal_direct_small_queries_and_stay_under_the_limit(loaded: LocalPrometheus):
    prom = loaded
    end = (time.time() - 120) // STEP * STEP
    start = end - SPAN
    source = PrometheusSource(build_http_client(PrometheusConfig(url=prom.url)), max_concurrency=4)
    before = len(_logged_ranges(prom.query_log)) if prom.query_log.exists() else 0
    fetch_started = time.monotonic()
    (series,) = source.query_range(QUERY, start, end, STEP, forecast="long")
    elapsed = time.monotonic() - fetch_started

    expected_steps = np.arange(start, end + STEP / 2, STEP)
    assert np.array_equal(series.timestamps, expected_steps)

    # Prometheus' own query log: every range the chunked pull asked for, none over 11,000 points.
    chunks = sorted(_logged_ranges(prom.query_log)[before:])
    points = [round((e - s) / st) + 1 for s, e, st in chunks]
    assert len(chunks) == 7 and max(points) <= 11_000
    assert chunks[0][0] == start and chunks[-1][1] == end
    assert all(nxt[0] == prev[1] + STEP for prev, nxt in itertools.pairwise(chunks))
    assert sum(points) == len(expected_steps)

    # Sample for sample against direct one-day queries.
    direct: dict[float, float] = {}
    day = 86400.0
    for day_start in np.arange(start, end + 1, day):
        direct.update(_direct(prom, day_start, min(day_start + day - STEP, end)))
    assert sorted(direct) == series.timestamps.tolist()
    assert [direct[t] for t in series.timestamps.tolist()] == series.values.tolist()

    # The limit is real: one query for the whole range is refused.
    unchunked = PrometheusSource(build_http_client(PrometheusConfig(url=prom.url)), max_points=100_000)
    with pytest.raises(BadQueryError, match="11,000 points"):
        unchunked.query_range(QUERY, start, end, STEP, forecast="long")
    unchunked.close()
    print(f"\n45d at 1m: {len(series.timestamps)} points in {len(chunks)} chunks (max {max(points)}) in {elapsed:.2f}s")
    source.close()


def test_an_incremental_pull_after_45_days_equals_a_full_pull_and_is_a_sliver_of_it(loaded: LocalPrometheus):
    prom = loaded
    now = (time.time() - 120) // STEP * STEP
    source = PrometheusSource(build_http_client(PrometheusConfig(url=prom.url)))
    first_end = now - 30 * STEP
    first = plan(None, first_end - SPAN, first_end, STEP, 5)
    pulled = source.query_range(QUERY, first.start, first.end, STEP, forecast="long")
    cached = merge(pulled, first, QUERY, STEP, first_end - SPAN)

    second = plan(cached, now - SPAN, now, STEP, 5)
    pulled_again = source.query_range(QUERY, second.start, second.end, STEP, forecast="long")
    merged = merge(pulled_again, second, QUERY, STEP, now - SPAN)
    (full,) = source.query_range(QUERY, now - SPAN, now, STEP, forecast="long")
    (incremental,) = merged.series
    assert np.array_equal(incremental.timestamps, full.timestamps)
    assert np.array_equal(incremental.values, full.values)
    ratio = sum(len(s.timestamps) for s in pulled_again) / cached.points
    assert ratio < 0.1
    print(f"\nincremental pull after 30 min: {ratio:.4%} of the first pull ({cached.points} points)")
    source.close()
