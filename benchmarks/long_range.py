"""Long-range pull benchmark: weeks at 1m from a real Prometheus, chunked, then cached.

Loads N series of DAYS days at 1m into a throwaway Prometheus, then does
what a retrain's fetch does (``Trainer._fetch``: plan, pull, merge, save the
cache), twice: a full pull whose window ends 30 minutes ago, and the next
retrain's incremental pull up to now. Prometheus' own query log gives the
largest range any query asked for.

    python benchmarks/long_range.py                 # 4 series, 45 days
    python benchmarks/long_range.py --days 90 --series 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

# devtools/ sits beside the package in a source checkout, outside what pip installs.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.local_prometheus import LocalPrometheus
from devtools.remote_write import TimeSeries, push
from devtools.synthetic import DAY, Signal, grid
from forecaster.config import PrometheusConfig
from forecaster.history import HistoryCache, merge, plan
from forecaster.prometheus import PrometheusSource, build_http_client

STEP = 60.0
METRIC = "long_range_bench"


def _logged_points(path: Path) -> list[int]:
    out = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        params = entry.get("params", {})
        if entry.get("httpRequest", {}).get("path") == "/api/v1/query_range" and params.get("query") == METRIC:
            span = (
                datetime.fromisoformat(params["end"]).timestamp() - datetime.fromisoformat(params["start"]).timestamp()
            )
            out.append(round(span / float(params["step"])) + 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=45)
    parser.add_argument("--series", type=int, default=4)
    args = parser.parse_args()
    span = args.days * DAY

    with LocalPrometheus() as prom, tempfile.TemporaryDirectory() as state_dir:
        t = grid(time.time() - 60, span + 3600, STEP)
        series = [
            TimeSeries(
                {"__name__": METRIC, "instance": f"host-{i}"},
                (t * 1000).astype("int64").tolist(),
                Signal(base=100 + i, noise=1.0).sample(t, seed=i).tolist(),
            )
            for i in range(args.series)
        ]
        started = time.monotonic()
        sent = push(prom.write_url, series, samples_per_request=50_000)
        print(f"loaded {sent:,} samples in {time.monotonic() - started:.1f}s")

        source = PrometheusSource(build_http_client(PrometheusConfig(url=prom.url)))
        cache = HistoryCache(Path(state_dir))
        now = (time.time() - 120) // STEP * STEP
        rows = []
        for label, fit_time in (("first retrain (full pull)", now - 30 * 60), ("next retrain (incremental)", now)):
            logged_before = len(_logged_points(prom.query_log)) if prom.query_log.exists() else 0
            started = time.monotonic()
            cached = cache.load("bench", METRIC, STEP)
            fetch = plan(cached, fit_time - span, fit_time, STEP, cache.overlap_steps)
            pulled = source.query_range(METRIC, fetch.start, fetch.end, STEP, forecast="bench")
            merged = merge(pulled, fetch, METRIC, STEP, fit_time - span)
            cache.save("bench", merged)
            seconds = time.monotonic() - started
            time.sleep(0.2)  # the query log is written as each query finishes
            queries = _logged_points(prom.query_log)[logged_before:]
            points = sum(len(s.timestamps) for s in pulled)
            rows.append((label, points, merged.points, len(queries), max(queries), seconds))
        source.close()
        size = cache.path("bench").stat().st_size

    print(f"{args.series} series, {args.days:g} days at 1m; cache file {size / 1e6:.1f} MB")
    print(f"{'':<28}{'pulled':>10}{'held':>10}{'queries':>9}{'max pts/query':>15}{'seconds':>9}")
    for label, points, held, count, largest, seconds in rows:
        print(f"{label:<28}{points:>10,}{held:>10,}{count:>9}{largest:>15,}{seconds:>9.2f}")
    print(f"incremental / full: {rows[1][1] / rows[0][1]:.4%}")


if __name__ == "__main__":
    main()
