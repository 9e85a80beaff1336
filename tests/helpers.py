"""Shared pieces of the tests: synthetic history, the service as a subprocess, polling, reading a scrape."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from devtools.remote_write import TimeSeries, push
from devtools.synthetic import Signal, grid
from forecaster.exporter import ForecastCollector

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def public_file(name: str) -> tuple[np.ndarray, np.ndarray, float]:
    """A public file's unix seconds, values and median step; the test is skipped where ``../shared/data`` lacks it."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is missing; the public files sit in ../shared/data beside the repository")
    frame = pd.read_csv(path)
    ts = pd.to_datetime(frame.iloc[:, 0]).to_numpy(dtype="datetime64[s]").astype(np.int64).astype(np.float64)
    return ts, frame.iloc[:, 1].to_numpy(dtype=np.float64), float(np.median(np.diff(ts)))


def history(labels: dict[str, str], signal_: Signal, *, span: float, step: float, seed: int = 0) -> TimeSeries:
    """Synthetic history that ends a minute ago, as remote-write input."""
    t = grid(time.time() - 60, span, step)
    return TimeSeries(labels, (t * 1000).astype(np.int64).tolist(), signal_.sample(t, seed).tolist())


class LivePusher:
    """Keeps pushed series current: every ``every`` seconds, ``samples(at)`` stamped ``at``, a second ago.

    Never later: Prometheus 2.42 accepts a future-dated sample and then drops every current scrape sample.
    """

    def __init__(self, url: str, samples: Callable[[int], Sequence[TimeSeries]], every: float = 5.0) -> None:
        self.url = url
        self._samples = samples
        self._every = every
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._last_at = 0
        self.push_once()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def push_once(self) -> None:
        """Push now, from a test's thread too (to have a change in before waiting for its effect)."""
        # A second sample with another value in the same second is refused as a duplicate.
        with self._lock:
            at = max(math.floor(time.time() - 1), self._last_at + 1)
            push(self.url, self._samples(at))
            self._last_at = at

    def _loop(self) -> None:
        while not self._stopping.wait(self._every):
            self.push_once()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(self._every + 30)


class Service:
    """``forecaster run`` as a real subprocess."""

    def __init__(self, config_path: Path, port: int, log_path: Path, *extra_args: str) -> None:
        self.config_path = config_path
        self.extra_args = extra_args
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child owns it)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "forecaster",
                "run",
                "-c",
                str(self.config_path),
                "--listen",
                f"127.0.0.1:{self.port}",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(lambda: self.get("/healthz").status_code == 200, 30, "the service to answer /healthz")
        return self

    def get(self, path: str) -> httpx.Response:
        try:
            return httpx.get(self.url + path, timeout=5)
        except httpx.HTTPError:
            return httpx.Response(599)

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query of the service's own query API, POSTed form-encoded as Grafana sends it."""
        return self.api("/api/v1/query", {"query": promql, **({"time": str(at)} if at is not None else {})})["result"]

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = {"query": promql, "start": str(start), "end": str(end), "step": str(step)}
        return self.api("/api/v1/query_range", params)["result"]

    def api(self, path: str, params: dict[str, str]) -> Any:
        """The ``data`` of a successful answer; RuntimeError (with the error) for any other."""
        body = httpx.post(self.url + path, data=params, timeout=30).json()
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # retried until the deadline; reported if it never succeeds
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f": {last_error}" if last_error else ""))


def write_config(path: Path, data: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Rendered:
    """A registry collector of the forecast families as ``ForecastCollector`` writes them, read back by
    prometheus_client's own parser: ``get_sample_value`` then reads what a scrape would."""

    def __init__(self, collector: ForecastCollector) -> None:
        self._collector = collector

    def collect(self) -> Iterator[Metric]:
        yield from text_string_to_metric_families(self._collector.render())
