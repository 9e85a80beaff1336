"""Bad data, the cardinality guard, failing queries and retrains with nothing new, in-process with a fake source.

The series are constant or nearly so, which the model fits without Prophet.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from forecaster import config as config_module
from forecaster.errors import BadQueryError, QueryError, SeriesSkipped, SkipReason
from forecaster.executor import InlineExecutor
from forecaster.exporter import Board, SelfMetrics
from forecaster.model.fit import fit_predict
from forecaster.model.options import FitSpec
from forecaster.series import Series, clean
from forecaster.server import MetricsServer
from forecaster.state import StateStore
from forecaster.trainer import Trainer

T0 = 1_700_000_100.0  # a multiple of 300


def test_clean_drops_nan_and_inf_sorts_and_keeps_the_last_of_a_repeated_timestamp():
    ts = np.array([300.0, 100.0, 200.0, 200.0, 400.0, np.nan, 500.0, 600.0])
    ys = np.array([3.0, 1.0, 2.0, 2.5, np.nan, 9.0, np.inf, -np.inf])
    out_ts, out_ys = clean(ts, ys)
    assert out_ts.tolist() == [100.0, 200.0, 300.0]
    assert out_ys.tolist() == [1.0, 2.5, 3.0]


def test_too_few_usable_points_is_a_skip_with_its_reason():
    spec = FitSpec(step=300, horizon=3600, interval_width=0.8, min_points=20)
    ts = T0 + 300 * np.arange(25, dtype=np.float64)
    ys = np.full(25, np.nan)
    ys[:3] = [1.0, 2.0, 3.0]
    with pytest.raises(SeriesSkipped) as caught:
        fit_predict(ts, ys, T0 + 7500, spec)
    assert caught.value.reason == SkipReason.TOO_FEW_POINTS and "3 usable points" in str(caught.value)


def test_a_constant_series_gets_a_flat_finite_forecast():
    spec = FitSpec(step=300, horizon=3600, interval_width=0.8, min_points=20)
    ts = T0 + 300 * np.arange(30, dtype=np.float64)
    result = fit_predict(ts, np.full(30, 7.0), T0 + 9000, spec)
    for values in (result.frame.yhat, result.frame.yhat_lower, result.frame.yhat_upper):
        assert np.all(values == 7.0)


class ScriptedSource:
    """Returns the next scripted answer: a list of series, or an exception to raise."""

    def __init__(self, *answers: list[Series] | Exception) -> None:
        self.answers = list(answers)

    def query_range(self, query: str, start: float, end: float, step: float, *, forecast: str) -> list[Series]:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _constant(name: str, points: int = 40, value: float = 5.0) -> Series:
    ts = T0 - 300 * np.arange(points, dtype=np.float64)[::-1]
    return Series({"name": name}, ts, np.full(points, value))


def _trainer(tmp_path, source: ScriptedSource, executor=None, clock: float = T0, **settings: object):
    cfg = config_module.parse(
        {
            "prometheus": {"url": "http://127.0.0.1:1"},
            "state_dir": str(tmp_path),
            "defaults": {"history": "1d", "step": "5m", "horizon": "1h", "horizons": [], **settings},
            "forecasts": [{"name": "guarded", "query": "sum by (name) (x)"}],
        }
    )
    registry = CollectorRegistry()
    trainer = Trainer(
        source,  # type: ignore[arg-type]
        StateStore(tmp_path),
        Board(cfg.forecasts),
        SelfMetrics(registry, cfg.forecasts),
        clock=lambda: clock,
        stop=threading.Event(),
        executor=executor,
    )
    return trainer, registry, cfg.forecasts[0]


def test_max_series_skips_the_extra_series_counts_them_and_names_the_query(tmp_path, caplog):
    source = ScriptedSource([_constant(n) for n in ("c", "a", "d", "b")])
    trainer, registry, forecast = _trainer(tmp_path, source, max_series=2)
    with caplog.at_level(logging.WARNING):
        state = trainer.run(forecast)
    assert state is not None and sorted(s.labels["name"] for s in state.series) == ["a", "b"]
    assert (
        registry.get_sample_value("forecaster_series_skipped_total", {"forecast": "guarded", "reason": "max_series"})
        == 2
    )
    assert "max_series=2" in caplog.text and "sum by (name) (x)" in caplog.text and "Narrow the query" in caplog.text


def test_series_that_would_be_exposed_alike_are_both_refused_and_counted(tmp_path, caplog):
    clash = [
        _constant("a"),
        Series({"name": "b", "forecast": "x"}, *_arrays()),
        Series({"name": "b", "exported_forecast": "x"}, *_arrays()),
    ]
    trainer, registry, forecast = _trainer(tmp_path, ScriptedSource(clash))
    with caplog.at_level(logging.WARNING):
        state = trainer.run(forecast)
    assert state is not None and [s.labels for s in state.series] == [{"name": "a"}]
    labels = {"forecast": "guarded", "reason": "label_clash"}
    assert registry.get_sample_value("forecaster_series_skipped_total", labels) == 2
    assert "rename or drop the clashing label" in caplog.text


def _arrays(points: int = 40) -> tuple[np.ndarray, np.ndarray]:
    series = _constant("any", points)
    return series.timestamps, series.values


def test_a_skipped_series_is_counted_every_run_but_logged_once(tmp_path, caplog):
    answers = [[_constant("ok"), _constant("tiny", points=3)] for _ in range(3)]
    trainer, registry, forecast = _trainer(tmp_path, ScriptedSource(*answers))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert trainer.run(forecast) is not None
    labels = {"forecast": "guarded", "reason": "too_few_points"}
    assert registry.get_sample_value("forecaster_series_skipped_total", labels) == 3
    assert caplog.text.count('{name="tiny"} skipped (too_few_points)') == 1


@pytest.mark.parametrize(
    "error",
    [
        QueryError("cannot reach Prometheus", forecast="guarded", query="sum by (name) (x)"),
        BadQueryError("Prometheus: bad_data: parse error", forecast="guarded", query="sum by (name) (x)"),
    ],
    ids=["unreachable", "bad_data"],
)
def test_a_failed_query_keeps_the_previous_forecast_and_is_counted(tmp_path, caplog, error):
    trainer, registry, forecast = _trainer(tmp_path, ScriptedSource([_constant("a")], error))
    first = trainer.run(forecast)
    with caplog.at_level(logging.ERROR):
        assert trainer.run(forecast) is None
    assert trainer.current("guarded") is first
    assert registry.get_sample_value("forecaster_errors_total", {"forecast": "guarded", "stage": "query"}) == 1
    assert "keeping the previous forecast" in caplog.text and "'guarded'" in caplog.text


class CountingExecutor(InlineExecutor):
    """Fits inline, and records how many fits each retrain asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[int] = []

    def run(self, tasks, stop):  # type: ignore[no-untyped-def]
        self.asked.append(len(tasks))
        yield from super().run(tasks, stop)


def _two(last: float = 5.0) -> list[Series]:
    changing = _constant("b")
    changing.values[-1] = last
    return [_constant("a"), changing]


def _frames(state) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    return {s.labels["name"]: s.frame.yhat for s in state.series}


def test_a_retrain_with_nothing_new_fits_nothing_keeps_each_forecast_and_says_so(tmp_path, caplog):
    executor = CountingExecutor()
    trainer, registry, forecast = _trainer(tmp_path, ScriptedSource(_two(), _two()), executor)
    first = trainer.run(forecast)
    with caplog.at_level(logging.INFO):
        second = trainer.run(forecast)
    assert executor.asked == [2, 0]
    assert first is not None and second is not None and second is not first
    assert all(kept.frame is made.frame for kept, made in zip(second.series, first.series, strict=True))
    assert registry.get_sample_value("forecaster_fits_unchanged_total", {"forecast": "guarded"}) == 2
    assert "fitted 0 of 2 series, kept 2 unchanged since their last fit" in caplog.text


def test_only_the_series_whose_history_changed_is_refitted(tmp_path):
    executor = CountingExecutor()
    trainer, registry, forecast = _trainer(tmp_path, ScriptedSource(_two(), _two(last=9.0)), executor)
    first = _frames(trainer.run(forecast))
    second = _frames(trainer.run(forecast))
    assert executor.asked == [2, 1]
    assert np.array_equal(second["a"], first["a"]) and not np.array_equal(second["b"], first["b"])
    assert registry.get_sample_value("forecaster_fits_unchanged_total", {"forecast": "guarded"}) == 1


@pytest.mark.parametrize(
    "changed",
    [{"clock": T0 + 300}, {"horizon": "2h"}, {"model": {"outliers": "none"}}],
    ids=["next step", "horizon", "model"],
)
def test_a_restart_refits_only_what_a_new_step_or_a_new_setting_changes(tmp_path, changed):
    trainer, _, forecast = _trainer(tmp_path, ScriptedSource(_two()))
    trainer.run(forecast)
    for settings, asked in (({}, [0]), (changed, [2])):
        executor = CountingExecutor()
        restarted, _, forecast = _trainer(tmp_path, ScriptedSource(_two()), executor, **settings)
        stored = StateStore(tmp_path).load(forecast.name, forecast.query, now=T0 + 300)
        assert stored is not None
        restarted.adopt(stored)
        assert restarted.run(forecast) is not None
        assert executor.asked == asked, settings


def test_healthz_answers_at_once_and_readyz_only_once_state_is_loaded():
    ready = threading.Event()
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, ready, lambda query: (200, b""))
    server.start()
    url = "http://{}:{}".format(*server.address)
    try:
        assert httpx.get(url + "/healthz").status_code == 200
        assert httpx.get(url + "/readyz").status_code == 503
        assert httpx.get(url + "/metrics").status_code == 200
        ready.set()
        assert httpx.get(url + "/readyz").status_code == 200
    finally:
        server.stop()


def test_the_http_server_answers_head_names_no_python_and_drops_idle_connections(monkeypatch):
    import socket

    from forecaster import server as server_module

    monkeypatch.setattr(server_module, "IDLE_TIMEOUT", 0.5)
    ready = threading.Event()
    ready.set()
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, ready, lambda query: (200, b""))
    server.start()
    url = "http://{}:{}".format(*server.address)
    try:
        head = httpx.head(url + "/healthz")
        assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "3"
        assert head.headers["server"] == "forecaster"
        with socket.create_connection(server.address, timeout=5) as idle:
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and then nothing more
            started = time.monotonic()
            assert idle.recv(1024) == b""  # closed by the server, not by our 5 s timeout
            assert time.monotonic() - started < 3
    finally:
        server.stop()
