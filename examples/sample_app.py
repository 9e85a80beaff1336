"""A small instrumented web app that sends itself daily-patterned traffic, for the compose stack.

It serves ``/work`` (a request that takes a few milliseconds) and ``/metrics``
on one port, and a background thread calls ``/work`` at a rate that follows a
day: quiet at night (UTC), busy in the afternoon. The forecaster forecasts
its request rate; the dashboards show it next to the forecast.

    sample_app_requests_total{path, code}              counter
    sample_app_requests_in_progress                    gauge
    sample_app_request_duration_seconds{path}          histogram

Run: ``python examples/sample_app.py --listen 0.0.0.0:8000``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

DAY = 86400.0


class Instruments:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "sample_app_requests", "Requests served, by path and status code.", ["path", "code"], registry=registry
        )
        self.in_progress = Gauge("sample_app_requests_in_progress", "Requests being served now.", registry=registry)
        self.latency = Histogram(
            "sample_app_request_duration_seconds",
            "Time to serve a request.",
            ["path"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=registry,
        )


def daily_rate(t: float, base: float, amplitude: float) -> float:
    """Requests per second at unix time ``t``: lowest around 03:00 UTC, highest around 15:00 UTC."""
    return max(0.1, base + amplitude * math.sin(2 * math.pi * (t / DAY - 0.375)))


def _handler(instruments: Instruments, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encoder(registry), content_type)
                return
            if path != "/work":
                self._send(404, b"not found; try /work or /metrics\n")
                return
            with instruments.in_progress.track_inprogress(), instruments.latency.labels(path).time():
                # Work whose cost grows with load, so latency follows the daily pattern too.
                time.sleep(random.uniform(0.002, 0.01) * (1 + daily_rate(time.time(), 1, 0.5)))
                code = 500 if random.random() < 0.01 else 200
            instruments.requests.labels(path, str(code)).inc()
            self._send(code, b"done\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's name)
            pass

    return Handler


def _traffic(url: str, base: float, amplitude: float, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read()
        except OSError:
            pass  # a 500 from /work, or the server still starting: the next request goes out anyway
        # Poisson arrivals at the current daily rate.
        stop.wait(random.expovariate(daily_rate(time.time(), base, amplitude)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sample_app", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="0.0.0.0:8000", metavar="HOST:PORT")
    parser.add_argument("--rate", type=float, default=8.0, help="mean requests per second")
    parser.add_argument("--amplitude", type=float, default=5.0, help="daily swing around the mean, requests/s")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    registry = CollectorRegistry()
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), _handler(Instruments(registry), registry))
    server.daemon_threads = True
    stop = threading.Event()
    own_url = f"http://127.0.0.1:{server.server_address[1]}/work"
    threading.Thread(target=_traffic, args=(own_url, args.rate, args.amplitude, stop), daemon=True).start()
    print(f"sample_app: serving /work and /metrics on {args.listen}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
