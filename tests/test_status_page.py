"""The status page at ``/``: what it shows before and after a fit, escaping, paging and what a page costs."""

from __future__ import annotations

import math
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from forecaster import status_page
from forecaster.config import parse
from forecaster.exporter import Board, SelfMetrics
from forecaster.model.frame import Frame
from forecaster.scheduler import Scheduler
from forecaster.series import Series, recent
from forecaster.server import MetricsServer
from forecaster.shard import Shard
from forecaster.skill import Skill
from forecaster.state import ForecastState, SeriesState, StateStore
from forecaster.status_page import PAGE_SIZE, StatusPage, relative
from forecaster.trainer import Trainer

NOW = 1_700_000_000.0
STEP = 300.0


def _setup(tmp_path: Path, query: str = "sum by (job) (rate(http_requests_total[5m]))"):  # type: ignore[no-untyped-def]
    cfg = parse(
        {
            "prometheus": {"url": "http://127.0.0.1:1"},
            "state_dir": str(tmp_path),
            "defaults": {"history": "1d", "step": "5m", "horizon": "6h", "horizons": [], "min_points": 3},
            "forecasts": [{"name": "requests", "query": query}, {"name": "disk", "query": "node_disk_free"}],
        }
    )
    board = Board(cfg.forecasts)
    metrics = SelfMetrics(CollectorRegistry(), cfg.forecasts)
    next_runs = {"requests": NOW + 48 * 60}
    page = StatusPage(board, metrics, cfg.forecasts, next_runs.get, clock=lambda: NOW)
    return page, board, metrics


def _series(labels: dict[str, str], with_recent: bool = True) -> SeriesState:
    ds = NOW + STEP * np.arange(73)
    yhat = 100 + 10 * np.sin(ds / 7200)
    state = SeriesState(labels, Frame(ds, yhat, yhat - 5, yhat + 5))
    if with_recent:
        ts = NOW - STEP * np.arange(576, 0, -1, dtype=np.float64)
        state.recent = recent(Series(labels, ts, 100 + 10 * np.sin(ts / 7200)), NOW - 2 * 86400, 200)
    return state


def _publish(board: Board, name: str, count: int, **kwargs: bool) -> None:
    series = [_series({"job": f"job-{i:05d}"}, **kwargs) for i in range(count)]
    board.publish(ForecastState(name, "q", NOW - 12 * 60, series))


def _get(page: StatusPage, query: str = "") -> tuple[int, str]:
    status, body = page.render(query)
    return status, body.decode()


def test_before_the_first_fit_every_forecast_is_listed_as_not_fitted_yet(tmp_path):
    page, _, _ = _setup(tmp_path)
    status, text = _get(page)
    assert status == 200
    assert text.count("not fitted yet") == 2 and 'id="requests"' in text and 'id="disk"' in text
    assert "in 48 min" in text and "not scheduled yet" in text  # disk has no job
    assert all(f'href="{path}"' in text for path in ("/metrics", "/healthz", "/readyz"))
    assert (
        "<svg" not in text
        and "<script" not in text
        and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )


def test_a_sharded_replica_says_which_share_it_serves(tmp_path):
    page, board, metrics = _setup(tmp_path)
    assert "shard" not in _get(page)[1]
    forecasts = parse({"prometheus": {"url": "http://127.0.0.1:1"}, "forecasts": [{"name": "disk", "query": "x"}]})
    sharded = StatusPage(board, metrics, forecasts.forecasts, {}.get, clock=lambda: NOW, shard=Shard(1, 3))
    assert "This replica serves shard 1/3 of every forecast&#x27;s series." in _get(sharded)[1]


def test_a_fitted_forecast_shows_its_fit_time_series_skips_and_skill(tmp_path):
    page, board, metrics = _setup(tmp_path)
    _publish(board, "requests", 3)
    metrics.skipped.labels("requests", "too_few_points").inc(4)
    metrics.skipped.labels("requests", "label_clash").inc(2)
    metrics.skill.publish(
        "requests",
        [({"job": "job-00000"}, Skill(3.25, 0.75, 0.41, 12)), ({"job": "job-00001"}, Skill(9.0, 0.5, -0.2, 12))],
    )
    status, text = _get(page)
    assert status == 200
    requests = text[text.index('id="requests"') : text.index('id="disk"')]
    assert "2023-11-14T22:01:20Z" in requests and "(12 min ago)" in requests
    assert "label_clash</span> 2" in requests and "too_few_points</span> 4" in requests
    assert "2 of 3 series scored" in requests and "1 behind a PromQL baseline" in requests
    assert "mean coverage 62 % (band 80 %)" in requests
    assert '<b class="ok">0.41</b> · coverage 75 % · MAE 3.25' in requests
    assert '<b class="warn">−0.2</b>' in requests and requests.count("not scored yet") == 1
    assert requests.count("<svg") == 3 and requests.count('class="real"') == 3
    assert "Some charts show only the forecast" not in requests


def test_hostile_labels_queries_and_parameters_are_escaped(tmp_path):
    page, board, _ = _setup(tmp_path, query='up{job="<script>alert(1)</script>"}')
    board.publish(ForecastState("requests", "q", NOW, [_series({"job": '<script>alert("x")</script>', "a&b": "'"})]))
    _, text = _get(page)
    assert "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the query
    assert r"job=&quot;&lt;script&gt;alert(\&quot;x\&quot;)&lt;/script&gt;&quot;" in text
    assert "{a&amp;b=&quot;&#x27;&quot;, job=" in text
    status, text = _get(page, "forecast=%3Cscript%3E")
    assert status == 404 and "<script" not in text and "&#x27;&lt;script&gt;&#x27;" in text
    status, text = _get(page, "forecast=requests&page=%3Cb%3E")
    assert status == 400 and "<b>" not in text


def test_one_forecast_is_paged_and_the_overview_shares_its_charts_among_the_forecasts(tmp_path):
    page, board, _ = _setup(tmp_path)
    _publish(board, "requests", 450)
    _publish(board, "disk", 2)
    _, text = _get(page)
    assert text.count("<svg") == PAGE_SIZE // 2 + 2
    assert f"showing 1–{PAGE_SIZE // 2} of 450 series" in text
    assert '<a href="/?forecast=requests&amp;page=1">all of them, 200 a page</a>' in text
    assert "showing 1–2 of 2 series" in text

    _, text = _get(page, "forecast=requests&page=2")
    assert text.count("<svg") == PAGE_SIZE and 'id="disk"' not in text
    assert "showing 201–400 of 450 series · page 2 of 3" in text
    assert 'href="/?forecast=requests&amp;page=1">‹ previous' in text
    assert 'href="/?forecast=requests&amp;page=3">next ›' in text
    assert "job-00200" in text and "job-00199" not in text and "job-00400" not in text

    _, last = _get(page, "forecast=requests&page=3")
    assert last.count("<svg") == 50 and "showing 401–450 of 450 series · page 3 of 3" in last
    assert _get(page, "forecast=requests&page=99")[1] == last  # past the end: the last page


def test_a_page_of_2000_series_draws_only_its_own_charts(tmp_path, monkeypatch):
    page, board, metrics = _setup(tmp_path)
    _publish(board, "requests", 2000)
    metrics.skill.publish("requests", [({"job": f"job-{i:05d}"}, Skill(1.0, 0.8, 0.3, 12)) for i in range(2000)])
    drawn: list[SeriesState] = []
    real_chart = status_page.chart

    def counting(series: SeriesState, fit_time: float, now: float) -> str:
        drawn.append(series)
        return real_chart(series, fit_time, now)

    monkeypatch.setattr(status_page, "chart", counting)
    snapshots = []
    real_snapshot = board.snapshot
    monkeypatch.setattr(board, "snapshot", lambda: snapshots.append(1) or real_snapshot())
    _, text = _get(page, "forecast=requests")
    assert len(drawn) == PAGE_SIZE and len(snapshots) == 1
    assert "2000 of 2000 series scored" in text and "showing 1–200 of 2000 series" in text
    # A chart's size does not grow with the frame: a long horizon is thinned to CHART_POINTS.
    assert max(len(m) for m in re.findall(r'class="yhat" points="([^"]*)"', text)) < 20 * status_page.CHART_POINTS


def test_a_series_without_recent_values_still_gets_its_forecast_drawn_and_the_page_says_why(tmp_path):
    page, board, _ = _setup(tmp_path)
    _publish(board, "requests", 2, with_recent=False)
    _, text = _get(page)
    assert text.count("<svg") == 2 and 'class="real"' not in text and 'class="yhat"' in text
    assert "recent values are not kept across restarts" in text


def test_relative_times_read_as_people_say_them():
    assert relative(NOW - 12 * 60, NOW) == "12 min ago"
    assert relative(NOW + 48 * 60, NOW) == "in 48 min"
    assert relative(NOW + 3 * 3600 + 60, NOW) == "in 3 h 1 min"
    assert relative(NOW - 2 * 86400, NOW) == "2 d ago"
    assert relative(NOW - 5, NOW) == "just now"


def test_axis_numbers_stay_short():
    assert [status_page._num(v, 4) for v in (5.515e9, 1234.5, -0.25, 3e-5, -math.inf)] == [
        "5.515G",
        "1.234k",
        "−0.25",
        "3e−05",
        "−∞",
    ]


def test_recent_averages_the_tail_down_and_keeps_the_newest_sample_in_the_last_point():
    ts = np.arange(1000, dtype=np.float64) * STEP
    values = ts.copy()
    values[10] = np.nan
    tail = recent(Series({}, ts, values), since=ts[-600], max_points=200)
    assert len(tail.timestamps) == 200 and tail.values.dtype == np.float32
    assert tail.timestamps[-1] == pytest.approx(ts[-3:].mean())
    assert tail.timestamps[0] >= ts[-600]
    assert len(recent(Series({}, ts[:0], values[:0]), 0, 200).timestamps) == 0


class _ConstantSource:
    def query_range(self, query: str, start: float, end: float, step: float, *, forecast: str) -> list[Series]:
        t = np.arange(np.ceil(start / step) * step, end + step / 2, step)
        return [Series({"instance": "a"}, t, np.full(len(t), 3.0))]


def test_a_retrain_publishes_the_recent_values_but_does_not_store_them(tmp_path):
    page, board, metrics = _setup(tmp_path)
    cfg_forecast = page._forecasts[0]
    trainer = Trainer(_ConstantSource(), StateStore(tmp_path), board, metrics, clock=lambda: NOW)  # type: ignore[arg-type]
    state = trainer.run(cfg_forecast)
    assert state is not None
    tail = board.snapshot()[0].series[0].recent
    assert tail is not None and 0 < len(tail.timestamps) <= 200 and tail.timestamps[-1] <= state.fit_time
    assert "recent" not in (tmp_path / "forecasts" / "requests.json").read_text()
    reloaded = StateStore(tmp_path).load("requests", cfg_forecast.query, now=NOW)
    assert reloaded is not None and reloaded.series[0].recent is None


def test_the_next_retrain_is_the_scheduler_job_s_own_time():
    cfg = parse(
        {
            "prometheus": {"url": "http://127.0.0.1:1"},
            "defaults": {"retrain_every": "1h"},
            "forecasts": [{"name": "requests", "query": "q"}],
        }
    )
    fit_time = time.time() - 600
    trainer = SimpleNamespace(current=lambda name: SimpleNamespace(fit_time=fit_time), run=lambda forecast: None)
    scheduler = Scheduler(trainer, cfg.forecasts)  # type: ignore[arg-type]
    assert scheduler.next_run("requests") is None
    scheduler.start()
    try:
        assert scheduler.next_run("requests") == pytest.approx(fit_time + 3600, abs=1e-3)
        assert scheduler.next_run("nothing") is None
    finally:
        scheduler.shutdown()


def test_the_server_hands_the_query_string_to_the_page_and_answers_with_its_status(tmp_path):
    page, board, _ = _setup(tmp_path)
    _publish(board, "requests", 1)
    ready = threading.Event()
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, ready, page.render)
    server.start()
    url = "http://{}:{}".format(*server.address)
    try:
        found = httpx.get(url + "/?forecast=requests")
        assert found.status_code == 200 and found.headers["content-type"] == "text/html; charset=utf-8"
        assert 'id="requests"' in found.text and 'id="disk"' not in found.text
        assert httpx.get(url + "/?forecast=nope").status_code == 404
        assert httpx.head(url + "/").headers["content-length"] == str(len(page.render("")[1]))
    finally:
        server.stop()
