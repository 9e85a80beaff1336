"""The status page in a real browser: headless Chromium loads ``/`` from a running service fed by a real Prometheus."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from devtools.local_prometheus import LocalPrometheus
from devtools.remote_write import push
from devtools.synthetic import Signal
from tests.helpers import Service, history, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium")
# A label value that would be markup if the page did not escape it.
HOSTILE = "<i>web</i>"
SERIES = [
    ("demo_requests", {"job": "api", "team": "core"}, Signal(base=100, daily=20, noise=0.5)),
    ("demo_requests", {"job": "web", "team": HOSTILE}, Signal(base=300, daily=40, phase=2.0, noise=0.5)),
    (
        "demo_disk_free",
        {"job": "node", "device": "sda1"},
        Signal(base=5e9, daily=0, trend_per_day=-2e8, noise=1e6, origin=time.time()),
    ),
]


def _browse(service: Service, tmp_path: Path, *args: str) -> str:
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'chromium'}",
            *args,
            service.url + "/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed: apt-get install chromium (scripts/ensure-prometheus test does, as root)",
)
def test_the_status_page_shows_every_forecast_with_a_chart_per_series_in_a_browser(
    prometheus: LocalPrometheus, run_service, tmp_path: Path
):
    push(
        prometheus.write_url,
        [
            history({"__name__": metric, **labels}, sig, span=86400, step=300, seed=i)
            for i, (metric, labels, sig) in enumerate(SERIES)
        ],
    )
    service = run_service(
        {
            "prometheus": {"url": prometheus.url, "timeout": "10s"},
            "state_dir": str(tmp_path / "state"),
            "defaults": {"history": "1d", "step": "5m", "horizon": "3h", "horizons": [], "retrain_every": "1h"},
            "forecasts": [
                {"name": "requests", "query": "demo_requests", "prophet": {"uncertainty_samples": 100}},
                {"name": "disk_free", "query": "demo_disk_free", "prophet": {"uncertainty_samples": 100}},
            ],
        }
    )
    wait_for(
        lambda: "not fitted yet" not in service.get("/").text,
        120,
        "both forecasts to be fitted",
    )

    dom = _browse(service, tmp_path, "--dump-dom")
    assert 'id="requests"' in dom and 'id="disk_free"' in dom
    assert "showing 1–2 of 2 series" in dom and "showing 1–1 of 1 series" in dom
    assert len(re.findall(r"<svg\b", dom)) == len(SERIES)
    assert len(re.findall(r'<polyline class="real"', dom)) == len(SERIES)  # recent values, not only the forecast
    assert "&lt;i&gt;web&lt;/i&gt;" in dom and "<i>" not in dom
    # Each forecast's next retrain: its scheduler job, an hour after the retrain that just ran.
    assert [50 < int(m) <= 60 for m in re.findall(r"\(in (\d+) min\)", dom)] == [True, True]

    screenshot = tmp_path / "status.png"
    _browse(service, tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2000", "--hide-scrollbars")
    pixels = imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200, f"the screenshot has only {len(colours)} distinct colours; is the page blank?"
