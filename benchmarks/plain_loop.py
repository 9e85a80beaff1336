"""The baseline the service is measured against: the plain loop most Prophet-on-Prometheus exporters run.

For each series, one after another: pull the full window, fit a fresh Prophet
with default settings, and predict with 1,000 uncertainty samples over history
and future. Prints the future part as jsonl (same keys as ``forecaster forecast``).

    python benchmarks/plain_loop.py --url http://127.0.0.1:9090 --query 'bench_series' \\
        --history 14d --step 300 --horizon 86400
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from typing import Any

import httpx
import pandas as pd


def fit_and_predict(prophet: Any, history: pd.DataFrame, horizon: float, step: float) -> pd.DataFrame:
    """A fresh default Prophet fitted on ``history``, predicted over history and future; the future rows."""
    model = prophet()
    model.fit(history)
    periods = int(horizon // step)
    return model.predict(model.make_future_dataframe(periods=periods, freq=f"{int(step)}s")).tail(periods)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--query", required=True)
    parser.add_argument("--history", type=float, default=14 * 86400, help="seconds")
    parser.add_argument("--step", type=float, default=300)
    parser.add_argument("--horizon", type=float, default=86400, help="seconds")
    args = parser.parse_args()

    logging.getLogger("prophet.plot").disabled = True
    from prophet import Prophet

    for name in ("prophet", "cmdstanpy"):
        logging.getLogger(name).setLevel(logging.WARNING)

    end = math.floor(time.time() / args.step) * args.step
    with httpx.Client(base_url=args.url, timeout=60) as client:
        listing = client.get("/api/v1/query", params={"query": args.query, "time": end}).json()["data"]["result"]
        for item in listing:
            labels = {k: v for k, v in item["metric"].items() if k != "__name__"}
            selector = args.query + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
            # Pulled in chunks under Prometheus' 11,000-points limit, as any working exporter must.
            values: list[list[float]] = []
            start = end - args.history
            while start <= end:
                chunk_end = min(end, start + 10_000 * args.step)
                body = client.get(
                    "/api/v1/query_range",
                    params={"query": selector, "start": start, "end": chunk_end, "step": args.step},
                ).json()
                for result in body["data"]["result"]:
                    values.extend(result["values"])
                start = chunk_end + args.step
            history = pd.DataFrame(
                {"ds": pd.to_datetime([float(v[0]) for v in values], unit="s"), "y": [float(v[1]) for v in values]}
            )
            forecast = fit_and_predict(Prophet, history, args.horizon, args.step)
            for row in forecast.itertuples():
                record = {
                    "forecast": "plain",
                    "labels": labels,
                    "ds": int(row.ds.value // 1_000_000_000),
                    "yhat": row.yhat,
                    "yhat_lower": row.yhat_lower,
                    "yhat_upper": row.yhat_upper,
                }
                sys.stdout.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
