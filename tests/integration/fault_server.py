"""A stand-in for Prometheus' HTTP API that misbehaves on cue: 500, 503, malformed JSON, hangs, odd shapes.

Runs the stdlib HTTP server on a free loopback port in a background thread;
each request takes the next behaviour from ``script`` (then ``default``), and
every request is recorded with its headers so tests can see what reached it.
``answers`` maps an API path to a JSON body that path always gets instead, for
answers that parse but have the wrong shape (``{"status": "success", "data": []}``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

OK = "ok"
HANG = "hang"
MALFORMED = "malformed"


class FaultServer:
    def __init__(
        self,
        script: list[str | int] | None = None,
        default: str | int = OK,
        hang_seconds: float = 5.0,
        answers: dict[str, object] | None = None,
    ):
        self.answers = answers or {}
        self.script = list(script or [])
        self.default = default
        self.hang_seconds = hang_seconds
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def _next(self) -> str | int:
        with self._lock:
            return self.script.pop(0) if self.script else self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                with server._lock:
                    server.requests.append((url.path, params, dict(self.headers.items())))
                behaviour = server._next()
                if url.path in server.answers:
                    body, status = json.dumps(server.answers[url.path]).encode(), 200
                elif behaviour == HANG:
                    server._closing.wait(server.hang_seconds)
                    body, status = _matrix(params), 200
                elif behaviour == MALFORMED:
                    body, status = b'{"status": "success", "data": {"resultType": "matr', 200
                elif behaviour == OK:
                    body, status = _matrix(params), 200
                else:
                    body, status = json.dumps({"status": "error", "error": "injected"}).encode(), int(behaviour)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up on a hung request

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's name)
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[FaultServer]:
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._closing.set()
            self._httpd.shutdown()
            self._httpd.server_close()
            thread.join(5)


def _matrix(params: dict[str, str]) -> bytes:
    start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
    values = []
    t = start
    while t <= end:
        values.append([t, str(100.0 + (t % 3600) / 60)])
        t += step
    result = [{"metric": {"__name__": "fake", "job": "api"}, "values": values}]
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()


def now_aligned(step: float) -> float:
    return time.time() // step * step
