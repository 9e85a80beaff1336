"""Backtest the default model against the PromQL baselines on real and synthetic series, through Prometheus.

Each CSV in ``../shared/data`` (``timestamp,value`` or Prophet's ``ds,y``) is
shifted so that its last sample lies just before now, pushed into a fresh
local Prometheus through remote write, and backtested, as of a second after
its last sample, with ``forecaster backtest``'s own code and a config that
sets only ``name``, ``query``, ``history``, ``step`` and ``horizon``::

    .venv/bin/python benchmarks/backtest.py                 # ../shared/data
    .venv/bin/python benchmarks/backtest.py --synthetic     # generated series, not in that folder
    .venv/bin/python benchmarks/backtest.py --daily         # generated daily series
    .venv/bin/python benchmarks/backtest.py --plain         # the same, with Prophet's own defaults
    .venv/bin/python benchmarks/backtest.py --cut 20        # an earlier stretch of the files long enough for it

Sub-daily series are scored at 1h and 1d, daily series at 1d and 7d, over
``--origins`` rolling origins (default 6). Prints the table and per-fit timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# devtools/ sits beside the package in a source checkout, outside what pip installs.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.local_prometheus import LocalPrometheus
from devtools.remote_write import TimeSeries, push
from devtools.synthetic import demand
from forecaster import asof
from forecaster.backtest import SeriesReport, write_table
from forecaster.config import parse
from forecaster.duration import DAY, Duration
from forecaster.model.fit import fit_predict
from forecaster.model.frame import FitResult
from forecaster.model.options import FitSpec, ModelOptions
from forecaster.prometheus import PrometheusSource

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
METRIC = "bench_value"

# Prophet as it comes: automatic seasonalities, linear trend, its own simulated band.
PLAIN_PROPHET = {
    "daily_seasonality": "auto",
    "weekly_seasonality": "auto",
    "yearly_seasonality": "auto",
    "changepoint_prior_scale": 0.05,
    "changepoint_range": 0.8,
    "uncertainty_samples": 1000,
}
# Known events of the public files, as Prophet's documentation models them (``--events``): Peyton Manning's
# play-offs and Super Bowls, each with the day after.
PUBLIC_EVENTS = {
    "prophet_wp_log_peyton_manning": [
        {
            "name": "playoff",
            "dates": [
                "2008-01-13",
                "2009-01-03",
                "2010-01-16",
                "2010-01-24",
                "2010-02-07",
                "2011-01-08",
                "2013-01-12",
                "2014-01-12",
                "2014-01-19",
                "2014-02-02",
                "2015-01-11",
                "2016-01-17",
                "2016-01-24",
                "2016-02-07",
            ],
            "after": "1d",
        },
        {"name": "superbowl", "dates": ["2010-02-07", "2014-02-02", "2016-02-07"], "after": "1d"},
    ]
}
PLAIN_MODEL = ModelOptions(
    outliers=None, transform="none", trend="linear", band="prophet", bounds="none", residual_correction=False
)


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_csv(path)
    frame.columns = ["ds", "y"]
    ts = pd.to_datetime(frame["ds"]).to_numpy(dtype="datetime64[s]").astype(np.int64).astype(np.float64)
    order = np.argsort(ts, kind="stable")
    return ts[order], frame["y"].to_numpy(dtype=np.float64)[order]


def synthetic(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Series shaped like infrastructure metrics, 5 minutes apart over 21 days (42 for the two stand-ins), seeded."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, 21 * DAY, 300.0)
    day = np.sin(2 * np.pi * t / DAY)
    weekday = (np.floor(t / DAY) % 7 < 5).astype(np.float64)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    out["requests_daily_weekly"] = t, 500 + 200 * day * (0.6 + 0.4 * weekday) + rng.normal(0, 20, len(t))
    spiky = 50 + 10 * day + rng.normal(0, 2, len(t))
    spikes = rng.random(len(t)) < 0.01
    spiky[spikes] *= rng.uniform(20, 500, spikes.sum())
    out["bytes_with_spikes"] = t, spiky
    level = 30 + 5 * day + rng.normal(0, 1, len(t))
    level[t > t[-1] - rng.uniform(2, 5) * DAY] += 25
    out["queue_level_shift"] = t, level
    out["disk_used_growth"] = t, 1e9 + 2e6 * t / 3600 + 5e6 * day + rng.normal(0, 2e6, len(t))
    cpu = 85 + 20 * day + rng.normal(0, 4, len(t))
    out["cpu_utilization_percent"] = t, np.clip(cpu, 0, 100)
    out["errors_heavy_tail"] = t, rng.lognormal(np.log(5 + 3 * (day + 1)), 0.8)
    walk = 100 + np.cumsum(rng.normal(0, 0.5, len(t)))
    out["temperature_random_walk"] = t, walk + 3 * day
    out["cache_hit_ratio"] = t, np.clip(0.9 + 0.05 * day + rng.normal(0, 0.01, len(t)), 0, 1)
    # Stand-ins for the held-out series of issue 12, each with a full 28-day history behind every origin.
    long = np.arange(0, 42 * DAY, 300.0)
    shifted = 30 + 5 * np.sin(2 * np.pi * long / DAY) + rng.normal(0, 1, len(long))
    shifted[long > long[-1] - rng.uniform(8, 12) * DAY] += 15
    out["queue_level_shift_week_ago"] = long, shifted
    half_hourly = np.arange(0, 42 * DAY, 1800.0)
    out["electricity_demand_weekend_shape"] = half_hourly, demand(half_hourly, seed)
    # A CPU at 100% for hours around each daily peak, under a name that does not say it is a percentage.
    out["node_busy_pinned"] = t, np.minimum(90 + 20 * day + rng.normal(0, 5, len(t)), 100.0)
    return out


def daily_synthetic(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Daily series shaped like business metrics, 1,200 days (three years of history and the origins), seeded.

    Stand-ins for the daily series of issue 12's held-out set: counts whose weekends and yearly wave scale with a
    growing or shifted level, a random walk, log page views with multi-day spikes, and an additive yearly wave.
    """
    rng = np.random.default_rng(seed)
    days = np.arange(1200)
    t = days * DAY
    weekend = (days + 3) % 7 >= 5  # 1970-01-01 was a Thursday
    year = np.sin(2 * np.pi * days / 365.25 + rng.uniform(0, 2 * np.pi))
    n = len(days)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    growth = 1e4 * (1 + 0.0005 * days) * np.where(weekend, 0.7, 1.0) * (1 + 0.1 * year)
    out["daily_users_growing"] = t, growth * rng.lognormal(0, 0.03, n)
    shift = np.where(days > n - rng.uniform(30, 50), 1.3, 1.0)
    out["daily_sales_level_shift"] = (
        t,
        500 * shift * np.where(weekend, 1.4, 1.0) * (1 + 0.15 * year) + rng.normal(0, 20, n),
    )
    out["daily_cost_random_walk"] = (
        t,
        300 + np.cumsum(rng.normal(0, 2, n)) + np.where(weekend, -15, 0) + rng.normal(0, 3, n),
    )
    spikes = np.zeros(n)
    for start in rng.choice(n, 25, replace=False):
        spikes[start : start + rng.integers(1, 4)] += rng.uniform(0.5, 2.0)
    wander = np.cumsum(rng.normal(0, 0.02, n))
    out["daily_log_pageviews_spiky"] = t, 8 + 0.5 * year + 0.2 * weekend + spikes + wander + rng.normal(0, 0.15, n)
    weather = 10 * np.convolve(rng.normal(0, 1, n + 6), np.ones(7) / 7, "valid")
    out["daily_heating_yearly"] = t, 100 + 60 * year + np.where(weekend, -10, 0) + weather + rng.normal(0, 4, n)
    return out


def resolution(ts: np.ndarray) -> float:
    gap = float(np.median(np.diff(ts)))
    for step in (300.0, 1800.0, 3600.0, DAY):
        if gap <= step * 1.5:
            return step
    return DAY


def earlier(
    series: dict[str, tuple[np.ndarray, np.ndarray]], cut: float, origins: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each series without its last ``cut`` seconds, if what is left still holds a full history and the origins."""
    out = {}
    for name, (ts, ys) in series.items():
        step = resolution(ts)
        chosen, scored = settings(step)
        needed = Duration.parse(chosen["history"]).seconds + origins * Duration.parse(scored.split(",")[-1]).seconds
        keep = ts <= ts[-1] - cut
        if keep.any() and ts[keep][-1] - ts[0] >= needed:
            out[f"{name}_cut{cut / DAY:g}d"] = ts[keep], ys[keep]
    return out


def settings(step: float) -> tuple[dict[str, str], str]:
    """The forecast's settings (only history, step, horizon) and the horizons to score."""
    if step >= DAY:
        return {"history": "3y", "step": "1d", "horizon": "7d"}, "1d,7d"
    return {"history": "28d", "step": f"{int(step // 60)}m", "horizon": "1d"}, "1h,1d"


def timed(plain: bool, times: list[float]) -> Any:
    def fit(ts: np.ndarray, ys: np.ndarray, fit_time: float, spec: FitSpec) -> FitResult:
        if plain:
            spec = dataclasses.replace(spec, model=PLAIN_MODEL, prophet=PLAIN_PROPHET)
        started = time.perf_counter()
        try:
            return fit_predict(ts, ys, fit_time, spec)
        finally:
            times.append(time.perf_counter() - started)

    return fit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder of CSV files (default ../shared/data)")
    parser.add_argument("--synthetic", action="store_true", help="generated series instead of the CSV files")
    parser.add_argument("--daily", action="store_true", help="generated daily series instead of the CSV files")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic or daily series")
    parser.add_argument("--plain", action="store_true", help="Prophet's own defaults instead of forecaster's")
    parser.add_argument("--origins", type=int, default=6)
    parser.add_argument(
        "--cut",
        type=float,
        default=0.0,
        help="drop the last DAYS of every file and backtest the stretch before; files too short are left out",
    )
    parser.add_argument("--plot", type=Path, help="write one PNG per series here")
    parser.add_argument(
        "--events", action="store_true", help="give the files with known events (PUBLIC_EVENTS) those events"
    )
    args = parser.parse_args()

    if args.synthetic:
        series = synthetic(args.seed)
    elif args.daily:
        series = daily_synthetic(args.seed)
    else:
        series = {path.stem: read_csv(path) for path in sorted(args.data.glob("*.csv"))}
    if args.cut:
        series = earlier(series, args.cut * DAY, args.origins)
    now = time.time()
    forecasts: list[dict[str, Any]] = []
    horizons: dict[str, list[float]] = {}
    # Each file is backtested as of a second after its own last sample, not as of now. A range query ending at now
    # evaluates grid points after that sample, and within Prometheus' 5-minute lookback it repeats there: whether it
    # did depended on the clock, and the phantom sample moved every origin by a step, so a run's figures depended on
    # the minute it was started (two different tables from the same code).
    ends: dict[str, float] = {}
    pushed = []
    for name, (ts, ys) in series.items():
        step = resolution(ts)
        # Whole steps keep the samples on the same phase of the query grid as in the original file.
        shifted = ts + np.floor((now - 120 - ts[-1]) / step) * step
        millis = (shifted * 1000).astype(np.int64).tolist()
        pushed.append(TimeSeries({"__name__": METRIC, "file": name}, millis, ys.tolist()))
        chosen, scored = settings(step)
        key = "".join(c if c.isalnum() else "_" for c in name)
        forecast: dict[str, Any] = {"name": key, "query": f'{METRIC}{{file="{name}"}}', **chosen}
        events = PUBLIC_EVENTS.get(name.split("_cut")[0]) if args.events else None
        if events:
            # The file moved by whole steps (days, for these files); its events move with it.
            moved = datetime.timedelta(seconds=float(shifted[-1] - ts[-1]))
            forecast["events"] = [
                {**event, "dates": [(datetime.date.fromisoformat(d) + moved).isoformat() for d in event["dates"]]}
                for event in events
            ]
        forecasts.append(forecast)
        horizons[key] = [Duration.parse(h).seconds for h in scored.split(",")]
        ends[key] = float(shifted[-1]) + 1.0

    times: list[float] = []
    reports: list[SeriesReport] = []
    with LocalPrometheus(out_of_order_window="4000d") as prom:
        push(prom.write_url, pushed)
        config = parse({"prometheus": {"url": prom.url, "timeout": "60s"}, "forecasts": forecasts})
        source = PrometheusSource.from_config(config.prometheus)
        try:
            for forecast in config.forecasts:
                reports += asof.backtest(
                    source,
                    forecast,
                    origins=args.origins,
                    horizons=horizons[forecast.name],
                    now=ends[forecast.name],
                    plot_dir=args.plot,
                    fit=timed(args.plain, times),
                )
        finally:
            source.close()
    label = "plain Prophet" if args.plain else "forecaster defaults"
    where = f"synthetic (seed {args.seed})" if args.synthetic else str(args.data)
    if args.daily:
        where = f"daily synthetic (seed {args.seed})"
    if args.cut:
        where += f", the last {args.cut:g} days cut off"
    if args.events:
        where += ", with their known events"
    print(f"{label} on {where}: {len(reports)} series, {args.origins} origins\n")
    write_table(reports, 0.8, sys.stdout)
    p50, p90 = np.quantile(times, [0.5, 0.9])
    print(f"\nper fit+predict: median {p50:.2f}s, p90 {p90:.2f}s over {len(times)} fits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
