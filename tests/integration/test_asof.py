"""``forecast --at`` and ``backtest`` against a real Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from devtools.local_prometheus import LocalPrometheus
from devtools.remote_write import TimeSeries, push
from devtools.synthetic import DAY, Signal, grid
from tests.helpers import write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEP = 300.0


def _forecaster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forecaster", "--log-level", "warning", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def prom(tmp_path: Path):
    (tmp_path / "prom").mkdir()
    with LocalPrometheus(data_dir=tmp_path / "prom") as started:
        yield started


def _config(tmp_path: Path, prom: LocalPrometheus, **settings: object) -> Path:
    return write_config(
        tmp_path / "forecaster.yml",
        {
            "prometheus": {"url": prom.url, "timeout": "20s"},
            "state_dir": str(tmp_path / "state"),
            "workers": 0,
            "forecasts": [{"name": "load", "query": "demo_load", **settings}],
        },
    )


def test_forecast_at_uses_nothing_from_after_time_and_stores_nothing(tmp_path, prom):
    t = grid(time.time() - 60, 3 * DAY, STEP)
    at = float(t[-1] - 6 * 3600 + 60)  # between two samples: the one after it is the first of the jump
    values = Signal(base=10, daily=2, noise=0.2).sample(t)
    values[t > at] += 1000.0
    push(prom.write_url, [TimeSeries({"__name__": "demo_load"}, (t * 1000).astype(np.int64).tolist(), values.tolist())])
    path = _config(tmp_path, prom, history="3d", step="5m", horizon="6h")

    done = _forecaster("forecast", "-c", str(path), "--at", str(int(at)), "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == int(6 * 3600 / STEP) + 1
    assert {r["at"] for r in records} == {int(at)}
    assert records[0]["ds"] == int(at)
    # The jump adds 1000 right after TIME; a forecast that saw any of it would be far above 20.
    assert max(r["yhat_upper"] for r in records) < 20
    assert min(r["yhat_lower"] for r in records) > 0
    assert not (tmp_path / "state").exists()

    rfc3339 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    again = _forecaster("forecast", "-c", str(path), "--at", rfc3339, "--format", "jsonl")
    assert again.returncode == 0, again.stderr
    assert max(json.loads(line)["yhat"] for line in again.stdout.splitlines()) < 20

    bad = _forecaster("forecast", "-c", str(path), "--at", "yesterday")
    assert bad.returncode == 2 and "--at: 'yesterday'" in bad.stderr


def test_backtest_prints_model_and_baselines_and_plots(tmp_path, prom):
    t = grid(time.time() - 60, 4 * DAY, STEP)
    values = Signal(base=100, daily=30, noise=2).sample(t)
    push(prom.write_url, [TimeSeries({"__name__": "demo_load"}, (t * 1000).astype(np.int64).tolist(), values.tolist())])
    path = _config(tmp_path, prom, history="2d", step="5m", horizon="6h", horizons=["1h"])

    done = _forecaster("backtest", "-c", str(path), "--origins", "2", "--plot", str(tmp_path / "plots"))
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("load{}")]
    assert [row[1] for row in rows] == ["1h", "6h"]
    for row in rows:
        model_mase = float(row[4].strip("()"))
        offset_1d_mase = float(row[8].strip("()"))
        assert model_mase < offset_1d_mase  # a clean daily wave: the model beats yesterday's noisy copy
    assert "model MAE below the best baseline" in done.stdout
    assert list((tmp_path / "plots").glob("*.png"))
