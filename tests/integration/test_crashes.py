"""SIGKILL at random moments while fitting and writing state, and SIGTERM mid-fit: nothing is lost."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from devtools.local_prometheus import LocalPrometheus
from devtools.remote_write import push
from devtools.synthetic import Signal
from forecaster.history import HistoryCache
from forecaster.state import StateStore
from tests.helpers import Service, history, wait_for
from tests.integration.scrape import scrape, served, value

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = ("a", "b", "c", "d", "e", "f")
SERIES = {(("job", job),) for job in JOBS}
QUERY = "crash_requests"


def _load(prom: LocalPrometheus) -> None:
    push(
        prom.write_url,
        [
            history(
                {"__name__": QUERY, "job": job},
                Signal(base=50 + 10 * i, daily=5 + i, phase=i),
                span=2 * 3600,
                step=10,
                seed=i,
            )
            for i, job in enumerate(JOBS)
        ],
    )


def _config(prom: LocalPrometheus, state_dir: Path) -> dict[str, object]:
    return {
        "prometheus": {"url": prom.url, "timeout": "10s"},
        "state_dir": str(state_dir),
        "defaults": {
            # A step as short as retrain_every: each retrain has a new fit time, so it fits every series again
            # (within one step a retrain keeps the forecasts it would refit from the same history).
            "history": "2h",
            "step": "10s",
            "horizon": "6m",
            "horizons": ["2m"],
            "retrain_every": "10s",
            # Prophet's own simulated band makes each fit slow enough that signals land mid-fit.
            "model": {"band": "prophet"},
        },
        "forecasts": [{"name": "crashy", "query": QUERY}],
    }


def _intact(state_dir: Path) -> bool:
    """The stored forecast and history cache both load, and hold every series."""
    state = StateStore(state_dir).load("crashy", QUERY)
    cached = HistoryCache(state_dir).load("crashy", QUERY, 10.0)
    return (
        state is not None
        and cached is not None
        and {tuple(sorted(s.labels.items())) for s in state.series} == SERIES
        and {tuple(sorted(s.labels.items())) for s in cached.series} == SERIES
    )


def fits_done(service: Service) -> float:
    return value(scrape(service), "forecaster_fit_duration_seconds_count", forecast="crashy") or 0.0


def test_five_sigkills_while_fitting_lose_nothing(prometheus, run_service, tmp_path):
    _load(prometheus)
    state_dir = tmp_path / "state"
    service = run_service(_config(prometheus, state_dir))
    wait_for(lambda: set(served(scrape(service), "crashy")) == SERIES, 120, "the first forecasts")
    moments = random.Random(20261122)
    kills = []
    for _ in range(5):
        # Every start retrains at once (the stored fit time, aligned to step, is mostly older than retrain_every).
        # Wait until that retrain is part-way through its fits, then a random moment more, which may reach the
        # last fits and the state write.
        wait_for(lambda s=service: fits_done(s) % len(JOBS) != 0, 60, "a retrain under way", interval=0.05)
        delay = moments.uniform(0.0, 2.0)
        time.sleep(delay)
        fitted = fits_done(service)
        assert service.process is not None
        service.process.send_signal(signal.SIGKILL)
        assert service.process.wait(10) == -signal.SIGKILL
        kills.append(f"+{delay:.1f}s ({int(fitted) % len(JOBS)}/{len(JOBS)} fitted)")
        assert _intact(state_dir), f"state lost after SIGKILL {len(kills)}"
        started = time.monotonic()
        service = run_service(_config(prometheus, state_dir))

    wait_for(lambda: set(served(scrape(service), "crashy")) == SERIES, 10, "every series to be served after the kills")
    log = service.log()
    assert "unusable" not in log, log
    assert service.get("/readyz").status_code == 200
    assert not [p for p in state_dir.rglob(".*.tmp")], "temporaries left behind after start-up"
    print(
        f"\nSIGKILL at these moments after a retrain was seen part-way: {', '.join(kills)}; "
        f"every series served {time.monotonic() - started:.1f}s after the last restart"
    )


def test_sigterm_during_fits_stops_within_10s_with_state_intact(prometheus, run_service, tmp_path):
    _load(prometheus)
    state_dir = tmp_path / "state"
    service = run_service(_config(prometheus, state_dir))
    wait_for(lambda: set(served(scrape(service), "crashy")) == SERIES, 120, "the first forecasts")

    # Some but not all series of a retrain fitted: a retrain is under way.
    wait_for(
        lambda: fits_done(service) % len(JOBS) != 0, 60, "a retrain to be part-way through its fits", interval=0.05
    )
    started = time.monotonic()
    assert service.stop(signal.SIGTERM, timeout=30) == 0
    took = time.monotonic() - started
    assert took < 10
    state = StateStore(state_dir).load("crashy", QUERY)
    assert state is not None and {tuple(sorted(s.labels.items())) for s in state.series} == SERIES
    abandoned = "retrain abandoned for shutdown" in service.log()
    print(f"\nSIGTERM mid-retrain: stopped in {took:.2f}s (retrain abandoned: {abandoned})")
