"""Throughput benchmark: the service's own cycle against the plain loop, on the same data in one run.

N synthetic-but-realistic series (daily and weekly seasonality, trend, noise;
14 days at 5m) go into a real Prometheus, and get each new step's sample as
time passes. Once Prometheus has compacted them (``LocalPrometheus.settle``), each
timed as a whole process:
  plain   benchmarks/plain_loop.py (fresh Prophet per series, 1,000-sample predict
          over history and future, one series after another)
  cold    forecaster forecast -c FILE with an empty state_dir
  warm    forecaster forecast -c FILE again, at once: within the same step nothing
          is new, so it fits nothing and keeps every forecast
  next    forecaster forecast -c FILE once the next step's sample is in: every
          series refitted, warm-started from the last fit, on cached history
Each side's forecast for the following day is scored against the generator's values.
Then the first ``--profile`` series are fitted in this process, plain Prophet
and forecaster's fit (cold, then warm-started on the next step's history) on
the same data, for each fit's CPU time (series per core-hour) and its split
between the solver (Stan's own process, or ``exact_map``'s solve) and
everything else.

    python benchmarks/throughput.py --series 60      # --profile 0: without the in-process fits
    python benchmarks/throughput.py --serve 500     # `forecaster run` on 500 series: cycles, RSS of the tree, scrapes
"""

# ruff: noqa: E402 (the BLAS pin below must come before numpy is imported)
from __future__ import annotations

import os

# The in-process fits run as the service's fit workers do, on one BLAS thread (see forecaster/_preload.py): unpinned,
# OpenBLAS threads spinning in the weekly-order test's least-squares steps tripled a fit's own CPU. numpy reads this
# when it loads. The timed commands get the environment as it was (see ``_child_env``).
_PINNED_HERE = "OPENBLAS_NUM_THREADS" not in os.environ
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import yaml

# devtools/ sits beside the package in a source checkout, outside what pip installs.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.local_prometheus import LocalPrometheus, free_port
from devtools.remote_write import TimeSeries, push
from devtools.synthetic import DAY, Signal, grid

STEP = 300.0
HISTORY = 14 * DAY
HORIZON = DAY
# How long after a step boundary the next-step run starts: the step's sample is pushed once the step has passed.
NEW_SAMPLE_WAIT = 2.0
METRIC = "bench_series"
DEFAULTS = {"history": "14d", "step": "5m", "horizon": "1d", "retrain_every": "1h"}
FORECAST = {"name": "bench", "query": METRIC, "max_series": 10000}


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


class Live:
    """Keeps the loaded series going: each new step's sample, pushed once the step has passed, as scrapes would.

    Without them the history ages: a fit more than a step after the load
    sees less than the 14 days that keep the weekly terms on, and fits
    another model than the one before it (whose parameters then no longer
    warm-start it).
    """

    def __init__(self, prometheus: LocalPrometheus, series: list[tuple[dict[str, str], Signal, int]], end: float):
        self._prometheus = prometheus
        self._series = series
        self._last = float(grid(end, HISTORY, STEP)[-1])

    def catch_up(self) -> None:
        steps = np.arange(self._last + STEP, time.time() + STEP / 2, STEP)
        steps = steps[steps <= time.time()]
        if not len(steps):
            return
        ms = (steps * 1000).astype(np.int64).tolist()
        fresh = [
            TimeSeries(labels, ms, sig.sample(steps, seed * 1_000_003 + int(steps[0] // STEP)).tolist())
            for labels, sig, seed in self._series
        ]
        push(self._prometheus.write_url, fresh)
        self._last = float(steps[-1])


def timed(args: list[str]) -> Run:
    """Wall time and peak RSS (largest single process of its tree) of a command, with its stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_child_env())
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {process.returncode}")
    return Run(seconds, usage.ru_maxrss / 1024, output)


def _child_env() -> dict[str, str]:
    """The environment this benchmark was started with: the commands it times pin their own BLAS threads, or not."""
    env = dict(os.environ)
    if _PINNED_HERE:
        del env["OPENBLAS_NUM_THREADS"]
    return env


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
        "defaults": dict(DEFAULTS),
        "forecasts": [dict(FORECAST)],
    }


def throughput(count: int, profiled: int) -> None:
    series = signals(count)
    truth = {labels["instance"]: sig for labels, sig, _ in series}
    work = Path(tempfile.mkdtemp(prefix="forecaster-bench-"))
    with LocalPrometheus(scrape_targets=[]) as prometheus:
        end = time.time() - 60
        loaded = load(prometheus, series, end)
        live = Live(prometheus, series, end)
        print(f"loaded {loaded:,} samples: {count} series x 14 days at 5m", flush=True)
        print(f"Prometheus compacted them in {prometheus.settle():.0f} s; timing starts now", flush=True)
        config_path = work / "forecaster.yml"
        config_path.write_text(yaml.safe_dump(config(prometheus, work / "state")))
        fit_end = np.floor(time.time() / STEP) * STEP
        here = Path(__file__).resolve().parent
        plain = timed([sys.executable, str(here / "plain_loop.py"), "--url", prometheus.url, "--query", METRIC])
        command = [sys.executable, "-m", "forecaster", "forecast", "-c", str(config_path), "--format", "jsonl"]
        live.catch_up()
        cold = timed(command)
        live.catch_up()
        warm = timed(command)
        # A step later every series has a new sample, so every one is refitted (warm-started) rather than kept.
        time.sleep(STEP - time.time() % STEP + NEW_SAMPLE_WAIT)
        live.catch_up()
        following = timed(command)
        fit_end_next = fit_end + STEP
    rows = [
        ("plain loop", plain, fit_end),
        ("forecaster (cold)", cold, fit_end),
        ("forecaster (warm)", warm, fit_end),
        ("forecaster (next)", following, fit_end_next),
    ]
    print(f"\n{'':<20}{'seconds':>9}{'series/s':>10}{'speed-up':>10}{'peak RSS MB':>13}{'next-day MAE':>14}")
    for name, run, scored_from in rows:
        print(
            f"{name:<20}{run.seconds:>9.1f}{count / run.seconds:>10.2f}{plain.seconds / run.seconds:>9.1f}x"
            f"{run.peak_rss_mb:>13.0f}{mae(run.output, truth, scored_from):>14.4f}"
        )
    print(f"\nwarm vs cold: {cold.seconds / warm.seconds:.2f}x faster (the second run, in the same step)")
    print(f"next vs cold: {cold.seconds / following.seconds:.2f}x faster (a step later, every series refitted)")
    print("MAE is relative to each series' base level, averaged over series and the next day's steps.")
    if profiled:
        solver_share(series[:profiled], end)


def solver_share(series: list[tuple[dict[str, str], Signal, int]], end: float) -> None:
    """Per fit, in this process: CPU in the solver (Stan's own process, a child of this one, or the exact solve) and
    in everything else.

    Each fit gets the data the service would have pulled: 14 days at 5m up
    to ``end``, and for the warm-started fit the same window a step later,
    one new sample at its end.
    """
    from plain_loop import fit_and_predict

    from forecaster.config import parse
    from forecaster.model import exact_map
    from forecaster.model.fit import fit_predict
    from forecaster.model.prophet import load_prophet

    prophet = load_prophet()  # Prophet without cmdstanpy's INFO line per fit
    settings = {"prometheus": {"url": "http://unused"}, "defaults": DEFAULTS, "forecasts": [FORECAST]}
    spec = parse(settings).forecasts[0].fit_spec()
    times = grid(end, HISTORY, STEP)
    later = times + STEP
    totals = {"plain loop": [0.0, 0.0], "forecaster (cold)": [0.0, 0.0], "forecaster (warm)": [0.0, 0.0]}
    solve = exact_map.solve
    solving = [0.0]

    def timed_solve(data, init):
        start = time.process_time()
        try:
            return solve(data, init)
        finally:
            solving[0] += time.process_time() - start

    exact_map.solve = timed_solve
    histories = []
    for _, sig, seed in series:
        values = sig.sample(times, seed)
        histories.append((values, np.concatenate((values[1:], sig.sample(later[-1:], seed + 1)))))
    # One kind of fit after another over all the series, as a fit worker takes one forecast's series in turn.
    for values, _ in histories:
        with _Cpu(totals["plain loop"]):
            fit_and_predict(prophet, pd.DataFrame({"ds": pd.to_datetime(times, unit="s"), "y": values}), HORIZON, STEP)
    fitted = []
    for values, _ in histories:
        with _Cpu(totals["forecaster (cold)"], solving):
            fitted.append(fit_predict(times, values, end, spec).params)
    for (_, next_values), params in zip(histories, fitted, strict=True):
        with _Cpu(totals["forecaster (warm)"], solving):
            fit_predict(later, next_values, end + STEP, spec, params)
    exact_map.solve = solve
    print(f"\nper fit, in one process, over {len(series)} series (CPU time; solver: Stan's process or the exact solve)")
    print(f"{'':<20}{'CPU ms':>9}{'series/core-h':>15}{'solver ms':>11}{'in solver':>11}")
    for name, (total, solver) in totals.items():
        per_fit, solver_ms = total / len(series), 1000 * solver / len(series)
        print(f"{name:<20}{1000 * per_fit:>9.0f}{3600 / per_fit:>15,.0f}{solver_ms:>11.0f}{solver / total:>11.0%}")


class _Cpu:
    """Adds the CPU seconds spent in the block to ``total``: all of them, and the solver's.

    The solver's are those of child processes (Stan's) and what ``solving``
    (a counter the exact solve adds its own CPU to) grew by.
    """

    def __init__(self, total: list[float], solving: list[float] | None = None):
        self._total = total
        self._solving = solving if solving is not None else [0.0]

    def __enter__(self) -> None:
        self._start = _cpu_seconds()
        self._solved = self._solving[0]

    def __exit__(self, *exc: object) -> None:
        own, children = (now - before for now, before in zip(_cpu_seconds(), self._start, strict=True))
        self._total[0] += own + children
        self._total[1] += children + self._solving[0] - self._solved


def _cpu_seconds() -> tuple[float, float]:
    """This process's CPU seconds so far, and those of its reaped children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def serve(count: int, cycles: int) -> None:
    """``forecaster run`` on ``count`` series: time to serve them all, each cycle's time, RSS, scrape latency.

    ``retrain_every`` is a minute, so each cycle after the first starts a
    minute after the one before, or as soon as it ends if it took longer
    (APScheduler coalesces the missed runs). A cycle within the step of the
    one before keeps every forecast and fits nothing (the same history at
    the same fit time), so it is not counted: the cycles timed are those
    that refit every series, a step apart. A cycle has ended once the
    service has counted ``count`` more series, fitted or kept, and set the
    cycle's duration anew (until then it exposes the cycle before's, and 0
    before the first cycle ends, which for 2,000
    series is seconds after the last fit;
    ``forecaster_last_success_timestamp_seconds`` is the fit time, on the
    step grid, so it does not move for cycles within one step). Memory is
    the peak over time of the whole process tree's RSS (the service, its fork
    server and fit workers, their Stan solvers), sampled every half second,
    as is the latency of ``/metrics``.
    """
    series = signals(count)
    work = Path(tempfile.mkdtemp(prefix="forecaster-bench-"))
    port = free_port()
    with LocalPrometheus(scrape_targets=[f"127.0.0.1:{port}"], scrape_interval="15s") as prometheus:
        end = time.time() - 60
        loaded = load(prometheus, series, end)
        live = Live(prometheus, series, end)
        print(f"loaded {loaded:,} samples: {count} series x 14 days at 5m", flush=True)
        print(f"Prometheus compacted them in {prometheus.settle():.0f} s; timing starts now", flush=True)
        config_path = work / "forecaster.yml"
        settings = config(prometheus, work / "state", f"127.0.0.1:{port}")
        settings["defaults"]["retrain_every"] = "1m"  # type: ignore[index]
        config_path.write_text(yaml.safe_dump(settings))
        process = subprocess.Popen(
            [sys.executable, "-m", "forecaster", "run", "-c", str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_child_env(),
        )
        started = time.monotonic()
        served_after: float | None = None
        durations: list[float] = []
        last_duration = None
        # Fits, and fits plus series kept unfitted, as they stood when the cycle before ended.
        fits_before, handled_before = 0.0, 0.0
        peak_mb, slowest_scrape = 0.0, 0.0
        try:
            while len(durations) < cycles:
                if process.poll() is not None:
                    raise RuntimeError(f"forecaster run exited with {process.returncode}")
                live.catch_up()
                peak_mb = max(peak_mb, _tree_rss_mb(process.pid))
                t0 = time.perf_counter()
                samples = _samples(port)
                slowest_scrape = max(slowest_scrape, time.perf_counter() - t0)
                if served_after is None and samples.get('forecaster_series{forecast="bench"}', 0) >= count:
                    served_after = time.monotonic() - started
                fits = samples.get('forecaster_fit_duration_seconds_count{forecast="bench"}', 0.0)
                handled = fits + samples.get('forecaster_fits_unchanged_total{forecast="bench"}', 0.0)
                duration = samples.get('forecaster_cycle_duration_seconds{forecast="bench"}')
                # A cycle's series are all handled before its duration is set, which until then is the cycle before's.
                if handled >= handled_before + count and duration and duration != last_duration:
                    if fits - fits_before >= count:
                        durations.append(duration)
                        print(f"cycle {len(durations)}: {durations[-1]:.0f}s", flush=True)
                    last_duration, fits_before, handled_before = duration, fits, handled
                time.sleep(0.5)
        finally:
            process.terminate()
            process.wait(30)
    print(f"forecaster run: {count} series fitted and served {served_after:.0f}s after start")
    faster = f" (the second {durations[0] / durations[1]:.2f}x faster than the first)" if len(durations) > 1 else ""
    print("cycles: " + ", ".join(f"{d:.0f}s" for d in durations) + faster)
    print(f"peak RSS of the whole process tree: {peak_mb:.0f} MB")
    print(f"/metrics, polled every half second throughout: slowest answer {1000 * slowest_scrape:.0f} ms")


def _samples(port: int) -> dict[str, float]:
    """The service's own ``forecaster_*`` samples, keyed by name and labels as exposed; empty when it is down."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("forecaster_"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _tree_rss_mb(pid: int) -> float:
    """The resident memory of ``pid`` and every process below it, now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=60)
    parser.add_argument("--serve", type=int, metavar="N", help="measure `forecaster run` serving N series instead")
    parser.add_argument("--cycles", type=int, default=2, help="with --serve: how many retrain cycles to time")
    parser.add_argument(
        "--profile", type=int, default=10, metavar="N", help="fit the first N series in process to split CPU (0: skip)"
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.cycles)
    else:
        throughput(args.series, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
