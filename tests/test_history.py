from __future__ import annotations

import io
import json
import logging
import threading

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from forecaster import config as config_module
from forecaster.exporter import Board, SelfMetrics
from forecaster.history import History, HistoryCache, merge, plan
from forecaster.prometheus import plan_chunks
from forecaster.series import Series, series_key
from forecaster.state import StateStore
from forecaster.trainer import Trainer

STEP = 60.0
T0 = 1_700_000_040.0  # a multiple of STEP


class FakePrometheus:
    """Answers query_range from a table of series that each exist over [born, died)."""

    def __init__(self, series: dict[str, tuple[float, float]]) -> None:
        self.series = series
        self.calls: list[tuple[float, float]] = []

    @staticmethod
    def value(name: str, t: np.ndarray) -> np.ndarray:
        return np.asarray((t / STEP) % 97 + len(name), dtype=np.float64)

    def query_range(self, query: str, start: float, end: float, step: float, *, forecast: str) -> list[Series]:
        self.calls.append((start, end))
        chunks = plan_chunks(start, end, step)
        if not chunks:
            return []
        grid = np.arange(chunks[0].start, chunks[-1].end + step / 2, step)
        out = []
        for name, (born, died) in self.series.items():
            t = grid[(grid >= born) & (grid < died)]
            if len(t):
                out.append(Series({"name": name}, t, self.value(name, t)))
        return out


def _as_dict(series: list[Series]) -> dict[tuple[tuple[str, str], ...], tuple[list[float], list[float]]]:
    return {series_key(s.labels): (s.timestamps.tolist(), s.values.tolist()) for s in series}


def _incremental(prom: FakePrometheus, fit_times: list[float], window: float) -> History:
    cached: History | None = None
    for fit_time in fit_times:
        fetch = plan(cached, fit_time - window, fit_time, STEP, 5)
        pulled = prom.query_range("q", fetch.start, fetch.end, STEP, forecast="f")
        cached = merge(pulled, fetch, "q", STEP, fit_time - window)
    assert cached is not None
    return cached


def test_plan_without_cache_pulls_the_whole_window():
    fetch = plan(None, T0 - 3600, T0, STEP, 5)
    assert (fetch.start, fetch.end, fetch.cached) == (T0 - 3600, T0, None)


def test_plan_with_cache_pulls_from_the_cached_end_less_the_overlap():
    cached = History("q", STEP, T0 - 3600, T0, [])
    fetch = plan(cached, T0 - 3600 + 600, T0 + 600, STEP, 5)
    assert (fetch.start, fetch.end, fetch.cached) == (T0 - 5 * STEP, T0 + 600, cached)


def test_plan_ignores_a_cache_that_ends_before_the_window_or_starts_after_it():
    old = History("q", STEP, T0 - 7200, T0 - 3600, [])
    assert plan(old, T0 - 3000, T0, STEP, 5).cached is None
    short = History("q", STEP, T0 - 1800, T0, [])
    assert plan(short, T0 - 3600, T0 + 60, STEP, 5).cached is None


def test_a_window_off_the_step_grid_still_uses_the_cache():
    cached = History("q", STEP, T0 - 3600 + STEP, T0, [])
    assert plan(cached, T0 - 3600 + 1, T0, STEP, 5).cached is cached


@pytest.mark.parametrize("window", [6 * 3600.0, 6 * 3600.0 + 30], ids=["on-grid", "off-grid"])
def test_incremental_pulls_equal_one_full_pull_as_series_come_and_go(window):
    prom = FakePrometheus(
        {
            "steady": (0, float("inf")),
            "vanishes": (0, T0 + 3600),
            "appears": (T0 + 2 * 3600, float("inf")),
        }
    )
    fit_times = [T0 + k * 17 * STEP for k in range(30)]
    incremental = _incremental(prom, fit_times, window)
    full = prom.query_range("q", fit_times[-1] - window, fit_times[-1], STEP, forecast="f")
    assert _as_dict(incremental.series) == _as_dict(full)
    # The vanished series' last sample is older than the window: it is gone, not kept forever.
    assert {s.labels["name"] for s in incremental.series} == {"steady", "appears"}
    starts = [start for start, _ in prom.calls[1:30]]
    assert all(start == fit - 5 * STEP for start, fit in zip(starts, fit_times, strict=False))


def test_the_overlap_replaces_late_samples_and_leaves_no_duplicates():
    window = 3600.0
    cached_ts = np.arange(T0 - window, T0 + 1, STEP)
    cached = History("q", STEP, T0 - window, T0, [Series({"a": "1"}, cached_ts, np.zeros(len(cached_ts)))])
    fetch = plan(cached, T0 + 120 - window, T0 + 120, STEP, 5)
    pulled_ts = np.arange(fetch.start, T0 + 121, STEP)
    merged = merge([Series({"a": "1"}, pulled_ts, np.ones(len(pulled_ts)))], fetch, "q", STEP, T0 + 120 - window)
    (only,) = merged.series
    assert np.all(np.diff(only.timestamps) == STEP)
    assert only.timestamps[0] == T0 + 120 - window and only.timestamps[-1] == T0 + 120
    assert only.values[only.timestamps >= T0 - 5 * STEP].tolist() == [1.0] * 8
    assert only.values[only.timestamps < T0 - 5 * STEP].tolist() == [0.0] * (len(only.timestamps) - 8)


def _history() -> History:
    ts = np.arange(T0 - 600, T0 + 1, STEP)
    return History(
        "sum by (job) (up)",
        STEP,
        T0 - 600,
        T0,
        [
            Series({"job": "a"}, ts, np.linspace(0, 1, len(ts))),
            Series({"job": "b", "zone": "x"}, ts[3:], np.full(len(ts) - 3, 7.5)),
        ],
    )


def test_save_and_load_round_trip(tmp_path):
    cache = HistoryCache(tmp_path)
    cache.save("reqs", _history())
    loaded = HistoryCache(tmp_path).load("reqs", "sum by (job) (up)", STEP)  # as a restarted service reads it
    assert loaded is not None
    assert (loaded.query, loaded.step, loaded.start, loaded.end) == ("sum by (job) (up)", STEP, T0 - 600, T0)
    assert _as_dict(loaded.series) == _as_dict(_history().series)
    assert cache.path("reqs") == tmp_path / "history" / "reqs.npz"


def test_a_changed_query_or_step_ignores_the_cache_without_moving_it(tmp_path):
    cache = HistoryCache(tmp_path)
    cache.save("reqs", _history())
    assert cache.load("reqs", "sum by (job) (rate(x[5m]))", STEP) is None
    assert cache.load("reqs", "sum by (job) (up)", 300.0) is None
    assert cache.path("reqs").exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage that is not a zip", b'{"format": "forecaster-state", "version": 1}'],
    ids=["empty", "garbage", "foreign"],
)
def test_an_unusable_cache_is_set_aside_and_logged(tmp_path, caplog, content):
    cache = HistoryCache(tmp_path)
    cache.path("reqs").parent.mkdir(parents=True)
    cache.path("reqs").write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="forecaster.history"):
        assert cache.load("reqs", "q", STEP) is None
    assert not cache.path("reqs").exists()
    (aside,) = (tmp_path / "history").glob("reqs.npz.bad-*")
    assert aside.read_bytes() == content
    assert "reqs" in caplog.text and "moved it to" in caplog.text


def test_the_file_is_read_once_and_what_was_saved_is_kept_in_memory(tmp_path):
    cache = HistoryCache(tmp_path)
    cache.save("reqs", _history())
    cache.path("reqs").unlink()
    kept = cache.load("reqs", "sum by (job) (up)", STEP)
    assert kept is not None and _as_dict(kept.series) == _as_dict(_history().series)
    assert HistoryCache(tmp_path).load("reqs", "sum by (job) (up)", STEP) is None


def test_a_truncated_cache_is_set_aside(tmp_path):
    cache = HistoryCache(tmp_path)
    cache.save("reqs", _history())
    whole = cache.path("reqs").read_bytes()
    cache.path("reqs").write_bytes(whole[: len(whole) // 2])
    assert HistoryCache(tmp_path).load("reqs", "sum by (job) (up)", STEP) is None
    assert list((tmp_path / "history").glob("reqs.npz.bad-*"))


def test_another_version_or_forecast_is_set_aside(tmp_path):
    cache = HistoryCache(tmp_path)
    cache.save("other", _history())
    cache.path("other").rename(cache.path("reqs"))
    assert cache.load("reqs", "sum by (job) (up)", STEP) is None
    assert list((tmp_path / "history").glob("reqs.npz.bad-*"))

    buffer = io.BytesIO()
    meta = {"format": "forecaster-history", "version": 99, "forecast": "v", "labels": []}
    np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    cache.path("v").write_bytes(buffer.getvalue())
    assert cache.load("v", "q", STEP) is None
    assert list((tmp_path / "history").glob("v.npz.bad-*"))


def test_clean_temporaries_removes_what_a_crash_left(tmp_path):
    cache = HistoryCache(tmp_path)
    cache.save("reqs", _history())
    leftover = tmp_path / "history" / ".reqs.npz.abc.tmp"
    leftover.write_bytes(b"half")
    cache.clean_temporaries()
    assert not leftover.exists() and cache.path("reqs").exists()


def _config(tmp_path) -> config_module.Config:
    return config_module.parse(
        {
            "prometheus": {"url": "http://127.0.0.1:1"},
            "state_dir": str(tmp_path),
            "defaults": {"history": "1d", "step": "1m", "horizon": "1h", "horizons": [], "min_points": 3},
            "forecasts": [{"name": "flat", "query": "q"}],
        }
    )


def _trainer(tmp_path, prom: FakePrometheus, clock: list[float]) -> tuple[Trainer, CollectorRegistry]:
    cfg = _config(tmp_path)
    registry = CollectorRegistry()
    trainer = Trainer(
        prom,  # type: ignore[arg-type]
        StateStore(tmp_path),
        Board(cfg.forecasts),
        SelfMetrics(registry, cfg.forecasts),
        clock=lambda: clock[0],
        stop=threading.Event(),
        history=HistoryCache(tmp_path),
    )
    return trainer, registry


class ConstantPrometheus(FakePrometheus):
    @staticmethod
    def value(name: str, t: np.ndarray) -> np.ndarray:
        # Constant series need no Prophet fit, which keeps this test fast.
        return np.full(len(t), 3.0)


def test_the_retrain_after_the_first_pulls_under_a_tenth_of_its_points(tmp_path):
    prom = ConstantPrometheus({"a": (0, float("inf")), "b": (0, float("inf"))})
    clock = [T0]
    trainer, registry = _trainer(tmp_path, prom, clock)
    cfg_forecast = _config(tmp_path).forecasts[0]

    def pulled() -> float:
        return registry.get_sample_value("forecaster_query_points_total", {"forecast": "flat"}) or 0.0

    assert trainer.run(cfg_forecast) is not None
    first = pulled()
    assert first == 2 * 1441
    clock[0] += 600
    state = trainer.run(cfg_forecast)
    assert state is not None and len(state.series) == 2
    second = pulled() - first
    assert second == 2 * (10 + 5 + 1)
    assert second < 0.1 * first

    # A restarted trainer reads the cache from disk and stays incremental.
    restarted, registry2 = _trainer(tmp_path, prom, clock)
    clock[0] += 60
    assert restarted.run(cfg_forecast) is not None
    assert registry2.get_sample_value("forecaster_query_points_total", {"forecast": "flat"}) == 2 * (1 + 5 + 1)
