from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from forecaster import state as state_module
from forecaster.model.frame import Frame
from forecaster.state import ForecastState, SeriesState, StateStore, atomic_write
from tests.helpers import Rendered

QUERY = "sum by (job) (rate(x[5m]))"


def _state(name: str = "reqs", fit_time: float = 1_700_000_000.0) -> ForecastState:
    ds = fit_time + 300 * np.arange(5, dtype=np.float64)
    frame = Frame(ds, np.linspace(1, 2, 5), np.linspace(0, 1, 5), np.linspace(2, 3, 5))
    params = {"k": 0.1, "m": 0.2, "sigma_obs": 0.05, "delta": [0.0, 0.1], "beta": [0.3]}
    return ForecastState(name, QUERY, fit_time, [SeriesState({"job": "api"}, frame, params, 288, inputs="ab12")])


def test_save_and_load_round_trip(tmp_path):
    store = StateStore(tmp_path)
    store.save(_state())
    loaded = store.load("reqs", QUERY)
    assert loaded is not None
    assert (loaded.forecast, loaded.query, loaded.fit_time) == ("reqs", QUERY, 1_700_000_000.0)
    (series,) = loaded.series
    original = _state().series[0]
    assert series.labels == {"job": "api"} and series.points == 288 and series.params == original.params
    assert series.inputs == "ab12"
    for name in ("ds", "yhat", "yhat_lower", "yhat_upper"):
        assert np.array_equal(getattr(series.frame, name), getattr(original.frame, name))
    data = json.loads(store.path("reqs").read_bytes())
    assert (data["format"], data["version"]) == (state_module.FORMAT, state_module.VERSION)


def test_a_failed_write_leaves_the_previous_file_whole_and_no_temporary(tmp_path, monkeypatch):
    store = StateStore(tmp_path)
    store.save(_state(fit_time=1_700_000_000.0))
    before = store.path("reqs").read_bytes()

    def crash(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.save(_state(fit_time=1_700_003_600.0))
    monkeypatch.undo()
    assert store.path("reqs").read_bytes() == before
    assert list(store.forecasts_dir.glob(".*.tmp")) == []


def test_atomic_write_replaces_whole(tmp_path):
    path = tmp_path / "a" / "file"
    atomic_write(path, b"one")
    atomic_write(path, b"two")
    assert path.read_bytes() == b"two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file"]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\x00\xff\xfe binary",
        b'{"format": "something-else", "version": 1}',
        b'{"format": "forecaster-state", "version": 2, "series": []}',
        b'{"format": "forecaster-state", "version": 1}',
        b'{"format": "forecaster-state", "version": 1, "forecast": "reqs", "query": "q", "fit_time": 1, '
        b'"series": [{"labels": {}, "ds": [1, 2], "yhat": [1], "yhat_lower": [1], "yhat_upper": [1]}]}',
        b'{"format": "forecaster-state", "version": 1, "forecast": "reqs", "query": "q", "fit_time": 1, '
        b'"series": [{"labels": {}, "ds": [1], "yhat": [NaN], "yhat_lower": [1], "yhat_upper": [1]}]}',
        b"[1, 2, 3]",
    ],
    ids=["empty", "truncated", "binary", "foreign", "newer", "no-fields", "ragged", "nan", "list"],
)
def test_an_unusable_state_file_is_logged_set_aside_and_does_not_raise(tmp_path, caplog, content):
    store = StateStore(tmp_path)
    store.forecasts_dir.mkdir(parents=True)
    store.path("reqs").write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="forecaster.state"):
        assert store.load("reqs", "q") is None
    assert not store.path("reqs").exists()
    (aside,) = store.forecasts_dir.glob("reqs.json.bad-*")
    assert aside.read_bytes() == content
    assert "'reqs'" in caplog.text and "will refit" in caplog.text


def test_a_file_of_another_forecast_is_set_aside(tmp_path):
    store = StateStore(tmp_path)
    store.save(_state("other"))
    store.path("other").rename(store.path("reqs"))
    assert store.load("reqs", QUERY) is None
    assert list(store.forecasts_dir.glob("reqs.json.bad-*"))


def test_a_changed_query_ignores_the_stored_state_but_keeps_the_file(tmp_path):
    store = StateStore(tmp_path)
    store.save(_state())
    assert store.load("reqs", "up") is None
    assert store.path("reqs").exists()


def test_a_truncated_write_from_a_crash_is_set_aside_and_temporaries_removed(tmp_path):
    store = StateStore(tmp_path)
    store.save(_state())
    whole = store.path("reqs").read_bytes()
    store.path("reqs").write_bytes(whole[: len(whole) // 3])
    leftover = store.forecasts_dir / ".reqs.json.x1y2.tmp"
    leftover.write_bytes(whole[:10])
    store.clean_temporaries()
    assert not leftover.exists()
    assert store.load("reqs", QUERY) is None
    (aside,) = store.forecasts_dir.glob("reqs.json.bad-*")
    assert int(aside.name.rsplit("-", 1)[1]) <= time.time()


def test_load_state_serves_stored_forecasts_before_any_query(tmp_path):
    from forecaster import config as config_module
    from forecaster.service import Service

    cfg = config_module.parse(
        {
            "prometheus": {"url": "http://127.0.0.1:1"},
            "state_dir": str(tmp_path),
            "defaults": {"horizon": "1h", "step": "5m", "horizons": []},
            "workers": 0,
            "forecasts": [{"name": "reqs", "query": QUERY}, {"name": "fresh", "query": "up"}],
        }
    )
    now = time.time()
    StateStore(tmp_path).save(_state(fit_time=now - 60))
    service = Service(cfg)
    try:
        assert service.load_state() == 1
        labels = {"forecast": "reqs", "horizon": "0s", "instance": "", "job": "api"}
        scrape = CollectorRegistry()
        scrape.register(Rendered(service.forecast_text))
        value = scrape.get_sample_value("forecast_yhat", labels)
        assert value is not None and 1.0 <= value <= 2.0
        assert service.registry.get_sample_value(
            "forecaster_last_success_timestamp_seconds", {"forecast": "reqs"}
        ) == pytest.approx(now - 60)
        assert service.registry.get_sample_value("forecaster_series", {"forecast": "reqs"}) == 1
    finally:
        service.close()


def _edited(store: StateStore, edit) -> None:  # type: ignore[no-untyped-def]
    store.save(_state())
    data = json.loads(store.path("reqs").read_bytes())
    edit(data)
    store.path("reqs").write_text(json.dumps(data))


NOW = 1_700_000_600.0

BAD_STATES = {
    "fit_time Infinity": lambda d: d.update(fit_time=float("inf")),
    "fit_time NaN": lambda d: d.update(fit_time=float("nan")),
    "fit_time 1e12": lambda d: d.update(fit_time=1e12),
    "fit_time 30 days ahead": lambda d: d.update(fit_time=NOW + 30 * 86400),
    "fit_time negative": lambda d: d.update(fit_time=-5),
    "fit_time a string": lambda d: d.update(fit_time="1700000000"),
    "series not a list": lambda d: d.update(series={}),
    "labels not strings": lambda d: d["series"][0].update(labels={"job": 3}),
    "a frame of objects": lambda d: d["series"][0].update(yhat=[{}, {}, {}, {}, {}]),
    "a nested frame": lambda d: d["series"][0].update(ds=[[1, 2]] * 5),
    "warm params not numbers": lambda d: d["series"][0].update(
        params={"k": "x", "m": 0, "sigma_obs": 1, "delta": [], "beta": []}
    ),
    "warm params infinite": lambda d: d["series"][0]["params"].update(k=float("inf")),
    "threshold NaN": lambda d: d["series"][0].update(threshold=float("nan")),
    "inputs not a digest": lambda d: d["series"][0].update(inputs=12),
}


@pytest.mark.parametrize("edit", BAD_STATES.values(), ids=BAD_STATES.keys())
def test_a_state_file_with_bad_values_is_set_aside_and_the_forecast_refitted(tmp_path, edit):
    store = StateStore(tmp_path)
    _edited(store, edit)
    assert store.load("reqs", QUERY, now=NOW) is None
    assert list(store.forecasts_dir.glob("reqs.json.bad-*"))


def test_a_state_file_nested_too_deep_to_parse_is_set_aside(tmp_path):
    store = StateStore(tmp_path)
    store.path("reqs").parent.mkdir(parents=True)
    store.path("reqs").write_text("[" * 200_000 + "]" * 200_000)
    assert store.load("reqs", QUERY, now=NOW) is None
    assert list(store.forecasts_dir.glob("reqs.json.bad-*"))


def test_a_fit_a_few_seconds_ahead_of_this_clock_is_still_served(tmp_path):
    store = StateStore(tmp_path)
    store.save(_state(fit_time=NOW + 60))
    assert store.load("reqs", QUERY, now=NOW) is not None


def test_a_second_holder_of_a_state_dir_is_refused_naming_the_directory_and_the_holder(tmp_path):
    first = state_module.StateDirLock(tmp_path)
    first.acquire()
    second = state_module.StateDirLock(tmp_path)
    with pytest.raises(state_module.StateDirInUse, match=rf"state_dir {tmp_path} is in use .*PID {os.getpid()}"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()


def test_a_state_dir_that_cannot_hold_a_lock_file_is_used_unlocked(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING):
        state_module.StateDirLock(blocker / "state").acquire()
    assert "running without it" in caplog.text
