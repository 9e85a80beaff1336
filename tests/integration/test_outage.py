"""Prometheus goes away mid-run and comes back; the service keeps serving and recovers by itself."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from devtools.local_prometheus import LocalPrometheus
from devtools.remote_write import push
from devtools.synthetic import Signal
from tests.helpers import history, wait_for
from tests.integration.scrape import scrape, served, value

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIGNALS = {
    "a": Signal(base=100, daily=20, noise=0.5),
    "b": Signal(base=50, daily=10, phase=2.0, noise=0.5),
}
SERIES = {(("job", job),) for job in SIGNALS}


def _config(prom: LocalPrometheus, state_dir: Path) -> dict[str, object]:
    return {
        "prometheus": {"url": prom.url, "timeout": "2s", "retries": 1},
        "state_dir": str(state_dir),
        "defaults": {"history": "2d", "step": "5m", "horizon": "3h", "horizons": ["1h"], "retrain_every": "10s"},
        "forecasts": [{"name": "outage", "query": "outage_requests"}],
    }


def test_outage_keeps_serving_counts_failures_survives_a_restart_and_recovers(prometheus, run_service, tmp_path):
    push(
        prometheus.write_url,
        [
            history({"__name__": "outage_requests", "job": job}, sig, span=2 * 86400, step=300, seed=i)
            for i, (job, sig) in enumerate(SIGNALS.items())
        ],
    )
    service = run_service(_config(prometheus, tmp_path / "state"))

    def points(samples: list[tuple[str, dict[str, str], float]]) -> float:
        return value(samples, "forecaster_query_points_total", forecast="outage") or 0.0

    first = wait_for(
        lambda: (s := scrape(service)) and set(served(s, "outage")) == SERIES and points(s) and s,
        120,
        "the first forecasts",
    )
    first_points = points(first)
    # The retrain after the first pulls only what is new since, plus the overlap.
    after = wait_for(lambda: points(scrape(service)) > first_points and scrape(service), 60, "a second pull")
    second_points = points(after) - first_points
    assert 0 < second_points < 0.1 * first_points, (first_points, second_points)
    # The second retrain may fit past a step boundary: the outage must keep what is served once it is done. Within
    # the first one's step it keeps every forecast unfitted instead (the same history at the same fit time).
    settled = wait_for(
        lambda: (
            (s := scrape(service))
            and (value(s, "forecaster_fit_duration_seconds_count", forecast="outage") or 0)
            + (value(s, "forecaster_fits_unchanged_total", forecast="outage") or 0)
            >= 2 * len(SERIES)
            and s
        ),
        60,
        "the second retrain to finish",
    )

    prometheus.stop()
    during = wait_for(
        lambda: (
            (s := scrape(service))
            and (value(s, "forecaster_errors_total", forecast="outage", stage="query") or 0) >= 1
            and s
        ),
        60,
        "a failed retrain to be counted",
    )
    assert set(served(during, "outage")) == SERIES
    assert value(during, "forecaster_last_success_timestamp_seconds", forecast="outage") == value(
        settled, "forecaster_last_success_timestamp_seconds", forecast="outage"
    )
    assert "keeping the previous forecast" in service.log()

    stopping = time.monotonic()
    assert service.stop(signal.SIGTERM) == 0
    assert time.monotonic() - stopping < 10

    # Restart with Prometheus still down: the stored forecasts are served at once.
    started = time.monotonic()
    service = run_service(_config(prometheus, tmp_path / "state"))
    restored = wait_for(
        lambda: (s := scrape(service)) and set(served(s, "outage")) == SERIES and s, 10, "stored forecasts"
    )
    time_to_serve = time.monotonic() - started
    assert time_to_serve < 10
    assert service.get("/readyz").status_code == 200
    assert points(restored) == 0
    wait_for(
        lambda: (value(scrape(service), "forecaster_errors_total", forecast="outage", stage="query") or 0) >= 2,
        60,
        "failed retrains to be counted after the restart",
    )
    assert service.process is not None and service.process.poll() is None
    assert set(served(scrape(service), "outage")) == SERIES

    # A retrain that succeeds logs this, whether it refitted the series or kept them (unchanged within a step).
    retrained = "forecast 'outage': fitted "
    fits_before = service.log().count(retrained)
    prometheus.start()
    # Back on its own: it pulls only the tail (the cache holds the rest), refits, and is scraped again.
    recovered = wait_for(lambda: (s := scrape(service)) and points(s) > 0 and s, 60, "a pull after Prometheus returned")
    assert points(recovered) < 0.1 * first_points
    wait_for(lambda: service.log().count(retrained) > fits_before, 60, "a retrain after Prometheus returned")
    wait_for(
        lambda: len(prometheus.query('forecast_yhat{forecast="outage"}')) == 2 * len(SIGNALS),
        60,
        "Prometheus to scrape the forecasts again",
    )
    print(
        f"\nfirst pull {first_points:.0f} points, second {second_points:.0f} ({second_points / first_points:.2%}); "
        f"restart with Prometheus down served stored forecasts after {time_to_serve:.2f}s"
    )
