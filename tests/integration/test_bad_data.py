"""NaN/Inf-laden, constant, gappy and 3-point series in a real Prometheus: the service stays up and sane."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from devtools.local_prometheus import LocalPrometheus
from devtools.remote_write import TimeSeries, push
from devtools.synthetic import Signal, grid
from tests.helpers import wait_for
from tests.integration.scrape import scrape, served, value

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEP = 300.0
SPAN = 2 * 86400.0


@pytest.fixture
def prometheus(tmp_path: Path, service_port: int) -> Iterator[LocalPrometheus]:
    # A lookback shorter than the step makes each stored sample one point of the query, so "3 points" means 3.
    prom = LocalPrometheus(
        scrape_targets=[f"127.0.0.1:{service_port}"],
        scrape_interval="1s",
        data_dir=tmp_path / "prom",
        extra_args=["--query.lookback-delta=1m"],
    )
    (tmp_path / "prom").mkdir()
    prom.start()
    yield prom
    prom.stop()


def _series(kind: str, t: np.ndarray, y: np.ndarray) -> TimeSeries:
    return TimeSeries({"__name__": "bad_data", "kind": kind}, (t * 1000).astype(np.int64).tolist(), y.tolist())


def _load(prom: LocalPrometheus) -> None:
    t = grid(time.time() - 60, SPAN, STEP)
    laden = Signal(base=100, daily=20, noise=0.5).sample(t, seed=1)
    laden[::7] = np.nan
    laden[3::11] = np.inf
    laden[5::13] = -np.inf
    gappy = Signal(base=10, daily=2, noise=0.1).sample(t, seed=2)
    keep = (t < t[0] + 6 * 3600) | (t > t[-1] - 6 * 3600)
    push(
        prom.write_url,
        [
            _series("nan_inf", t, laden),
            _series("constant", t, np.full(len(t), 42.0)),
            _series("gappy", t[keep], gappy[keep]),
            _series("three_points", t[-3:], np.array([1.0, 2.0, 3.0])),
        ],
    )


def test_bad_series_never_crash_the_service_or_expose_nan_and_tiny_ones_are_skipped(prometheus, run_service, tmp_path):
    _load(prometheus)
    (raw,) = prometheus.query('bad_data{kind="nan_inf"}[3d]')
    stored = {v for _, v in raw["values"]}  # type: ignore[index]
    assert {"NaN", "+Inf", "-Inf"} <= stored, "Prometheus should hold the NaN and Inf samples"
    service = run_service(
        {
            "prometheus": {"url": prometheus.url, "timeout": "10s"},
            "state_dir": str(tmp_path / "state"),
            "defaults": {"history": "2d", "step": "5m", "horizon": "3h", "horizons": ["1h"], "retrain_every": "10s"},
            "forecasts": [{"name": "bad", "query": "bad_data"}],
        }
    )
    expected = {(("kind", kind),) for kind in ("nan_inf", "constant", "gappy")}

    def skipped(samples: list[tuple[str, dict[str, str], float]]) -> float:
        return value(samples, "forecaster_series_skipped_total", forecast="bad", reason="too_few_points") or 0.0

    # Two retrains at least, so "logged once" is tested too.
    samples = wait_for(
        lambda: (s := scrape(service)) and set(served(s, "bad")) == expected and skipped(s) >= 2 and s,
        180,
        "forecasts of the usable series and two skips of the tiny one",
    )
    assert service.get("/metrics").status_code == 200
    assert service.process is not None and service.process.poll() is None
    non_finite = [(n, labels, v) for n, labels, v in samples if not math.isfinite(v)]
    assert non_finite == []
    assert served(samples, "bad")[(("kind", "constant"),)] == pytest.approx(42.0)
    assert value(samples, "forecaster_series", forecast="bad") == 3
    log = service.log()
    assert log.count('series {kind="three_points"} skipped (too_few_points)') == 1, log
    assert "3 usable points" in log
    assert "Traceback" not in log
    # What Prometheus scraped holds no NaN either.
    assert prometheus.query('forecast_yhat{forecast="bad"} != forecast_yhat{forecast="bad"}') == []
