"""How a trend's band holds a week ahead: synthetic disks forecast with ``forecaster forecast --at``.

Two disks of 21 days at 5m go into a fresh local Prometheus through remote
write, each free space falling about 20 GB a day with a daily wiggle and
noise: ``steady`` at one exact rate, ``varying`` at a rate that changes from
day to day by 30%. Then ``forecaster forecast --at`` fits each at 4 origins
(days 8, 10, 12 and 14) with ``horizon: 7d``, as a user would, and the band
is scored against what followed: its coverage over the first day, over the
week and over the week's last day, and its width at 7 days over its width at
1 hour::

    .venv/bin/python benchmarks/trend_band.py [--seed N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

# devtools/ sits beside the package in a source checkout, outside what pip installs.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.local_prometheus import LocalPrometheus
from devtools.remote_write import TimeSeries, push
from devtools.synthetic import DAY, grid

STEP = 300.0
ORIGINS = (8, 10, 12, 14)


def disks(t: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    days = (t - t[0]) / DAY
    wiggle = 2e9 * np.sin(2 * np.pi * t / DAY)
    steady = 800e9 - 20e9 * days + wiggle + rng.normal(0, 0.5e9, len(t))
    whole = np.floor(days).astype(np.int64)
    rates = 20e9 * (1 + 0.3 * rng.normal(size=whole.max() + 1))
    used = np.concatenate(([0.0], np.cumsum(rates)))[whole] + rates[whole] * (days - whole)
    varying = 800e9 - used + wiggle + rng.normal(0, 0.5e9, len(t))
    return {"steady": steady, "varying": varying}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t = grid(time.time() - 600, 21 * DAY, STEP)
    series = disks(t, args.seed)
    millis = (t * 1000).astype(np.int64).tolist()
    with LocalPrometheus(out_of_order_window="30d") as prometheus, tempfile.TemporaryDirectory() as work:
        push(
            prometheus.write_url,
            [
                TimeSeries({"__name__": "bench_disk_free_bytes", "instance": name, "job": "node"}, millis, v.tolist())
                for name, v in series.items()
            ],
        )
        config = Path(work) / "forecaster.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "prometheus": {"url": prometheus.url},
                    "state_dir": f"{work}/state",
                    "forecasts": [{"name": "disk", "query": "bench_disk_free_bytes", "step": "5m", "horizon": "7d"}],
                }
            )
        )
        command = [sys.executable, "-m", "forecaster", "forecast", "-c", str(config), "--format", "jsonl"]
        for day in ORIGINS:
            command += ["--at", str(int(t[0] + day * DAY))]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    print(f"seed {args.seed}: 80% band, horizon 7d, origins at days {', '.join(map(str, ORIGINS))} of 21")
    print(f"{'disk':<10}{'origin':>8}{'first day':>11}{'week':>7}{'last day':>10}{'width 7d/1h':>13}")
    for name, values in series.items():
        for origin in sorted({r["at"] for r in records}):
            rows = [r for r in records if r["at"] == origin and r["labels"]["instance"] == name and r["ds"] <= t[-1]]
            ds = np.array([r["ds"] for r in rows], dtype=np.float64)
            low, high = (np.array([r[key] for r in rows]) for key in ("yhat_lower", "yhat_upper"))
            truth = np.interp(ds, t, values)
            inside, lead, width = (truth >= low) & (truth <= high), ds - origin, high - low
            ratio = np.interp(7 * DAY, lead, width) / np.interp(3600, lead, width)
            print(
                f"{name:<10}{(origin - t[0]) / DAY:>7.0f}d{inside[lead <= DAY].mean():>11.0%}{inside.mean():>7.0%}"
                f"{inside[lead > 6 * DAY].mean():>10.0%}{ratio:>12.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
