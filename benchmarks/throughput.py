"""Throughput benchmark: the service's own cycle against the plain loop, on the same data in one run.

N synthetic-but-realistic series (daily and weekly seasonality, trend, noise;
14 days at 5m) go into a real Prometheus. Then, each timed as a whole process:
  plain   benchmarks/plain_loop.py (fresh Prophet per series, 1,000-sample predict
          over history and future, one series after another)
  cold    forecaster forecast -c FILE with an empty state_dir
  warm    forecaster forecast -c FILE again (warm start, cached history)
Each side's forecast for the following day is scored against the generator's values.

    python benchmarks/throughput.py --series 60
    python benchmarks/throughput.py --serve 500     # peak RSS of `forecaster run` serving 500 series
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import yaml

# devtools/ sits beside the package in a source checkout, outside what pip installs.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.local_prometheus import LocalPrometheus, free_port
from devtools.remote_write import TimeSeries, push
from devtools.synthetic import DAY, Signal, grid

STEP = 300.0
HISTORY = 14 * DAY
HORIZON = DAY
METRIC = "bench_series"


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    output: str


def signals(count: int) -> list[tuple[dict[str, str], Signal, int]]:
    rng = np.random.default_rng(42)
    out = []
    for i in range(count):
        base = float(rng.uniform(50, 5000))
        out.append(
            (
                {"__name__": METRIC, "instance": f"host-{i:04d}", "job": "bench"},
                Signal(
                    base=base,
                    daily=base * float(rng.uniform(0.1, 0.4)),
                    weekly=base * float(rng.uniform(0.0, 0.2)),
                    trend_per_day=base * float(rng.uniform(-0.005, 0.01)),
                    noise=base * float(rng.uniform(0.02, 0.08)),
                    phase=float(rng.uniform(0, 6.28)),
                ),
                i,
            )
        )
    return out


def load(prometheus: LocalPrometheus, series: list[tuple[dict[str, str], Signal, int]], end: float) -> int:
    t = grid(end, HISTORY, STEP)
    ms = (t * 1000).astype(np.int64).tolist()
    return push(
        prometheus.write_url, [TimeSeries(labels, ms, sig.sample(t, seed).tolist()) for labels, sig, seed in series]
    )


def timed(args: list[str]) -> Run:
    """Wall time and peak RSS (largest single process of its tree) of a command, with its stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {process.returncode}")
    return Run(seconds, usage.ru_maxrss / 1024, output)


def mae(output: str, truth: dict[str, Signal], fit_end: float) -> float:
    """Mean absolute error of the next day's forecast against noiseless truth, over all series."""
    errors = []
    for line in output.splitlines():
        record = json.loads(line)
        if fit_end < record["ds"] <= fit_end + HORIZON:
            sig = truth[record["labels"]["instance"]]
            errors.append(abs(record["yhat"] - float(sig.clean(record["ds"]))) / sig.base)
    return float(np.mean(errors)) if errors else float("nan")


def config(prometheus: LocalPrometheus, state_dir: Path, listen: str = "127.0.0.1:0") -> dict[str, object]:
    return {
        "prometheus": {"url": prometheus.url},
        "server": {"listen": listen},
        "state_dir": str(state_dir),
        "defaults": {"history": "14d", "step": "5m", "horizon": "1d", "retrain_every": "1h"},
        "forecasts": [{"name": "bench", "query": METRIC, "max_series": 10000}],
    }


def throughput(count: int) -> None:
    series = signals(count)
    truth = {labels["instance"]: sig for labels, sig, _ in series}
    work = Path(tempfile.mkdtemp(prefix="forecaster-bench-"))
    with LocalPrometheus(scrape_targets=[]) as prometheus:
        end = time.time() - 60
        loaded = load(prometheus, series, end)
        print(f"loaded {loaded:,} samples: {count} series x 14 days at 5m", flush=True)
        config_path = work / "forecaster.yml"
        config_path.write_text(yaml.safe_dump(config(prometheus, work / "state")))
        fit_end = np.floor(time.time() / STEP) * STEP
        here = Path(__file__).resolve().parent
        plain = timed([sys.executable, str(here / "plain_loop.py"), "--url", prometheus.url, "--query", METRIC])
        command = [sys.executable, "-m", "forecaster", "forecast", "-c", str(config_path), "--format", "jsonl"]
        cold = timed(command)
        warm = timed(command)
    rows = [("plain loop", plain), ("forecaster (cold)", cold), ("forecaster (warm)", warm)]
    print(f"\n{'':<20}{'seconds':>9}{'series/s':>10}{'speed-up':>10}{'peak RSS MB':>13}{'next-day MAE':>14}")
    for name, run in rows:
        print(
            f"{name:<20}{run.seconds:>9.1f}{count / run.seconds:>10.2f}{plain.seconds / run.seconds:>9.1f}x"
            f"{run.peak_rss_mb:>13.0f}{mae(run.output, truth, fit_end):>14.4f}"
        )
    print(f"\nwarm vs cold: {cold.seconds / warm.seconds:.2f}x faster")
    print("MAE is relative to each series' base level, averaged over series and the next day's steps.")


def serve(count: int) -> None:
    series = signals(count)
    work = Path(tempfile.mkdtemp(prefix="forecaster-bench-"))
    port = free_port()
    with LocalPrometheus(scrape_targets=[f"127.0.0.1:{port}"], scrape_interval="15s") as prometheus:
        loaded = load(prometheus, series, time.time() - 60)
        print(f"loaded {loaded:,} samples: {count} series x 14 days at 5m", flush=True)
        config_path = work / "forecaster.yml"
        config_path.write_text(yaml.safe_dump(config(prometheus, work / "state", f"127.0.0.1:{port}")))
        process = subprocess.Popen(
            [sys.executable, "-m", "forecaster", "run", "-c", str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started = time.monotonic()
        try:
            while _served(port) < count:
                if process.poll() is not None:
                    raise RuntimeError(f"forecaster run exited with {process.returncode}")
                time.sleep(2)
            fitted = time.monotonic() - started
            scrape_times = []
            for _ in range(20):
                t0 = time.perf_counter()
                httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
                scrape_times.append(time.perf_counter() - t0)
            peak = _peak_rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(30)
    print(f"forecaster run: {count} series fitted and served after {fitted:.0f}s")
    print(f"peak RSS (VmHWM) of the service process: {peak:.0f} MB")
    print(f"/metrics scrape: median {1000 * float(np.median(scrape_times)):.1f} ms over 20 scrapes")


def _served(port: int) -> int:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    except httpx.HTTPError:
        return 0
    for line in text.splitlines():
        if line.startswith('forecaster_series{forecast="bench"}'):
            return int(float(line.split()[-1]))
    return 0


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=60)
    parser.add_argument("--serve", type=int, metavar="N", help="measure `forecaster run` serving N series instead")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
    else:
        throughput(args.series)
    return 0


if __name__ == "__main__":
    sys.exit(main())
