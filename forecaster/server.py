"""The HTTP endpoints: ``/metrics``, ``/healthz`` (alive), ``/readyz`` (state loaded), the status page ``/``
and the query API ``/api/v1/``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from forecaster.query_api import MAX_BODY, PREFIX, QueryAPI

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 30.0

# The status page: the query string in, the HTTP status and the HTML out.
RenderPage = Callable[[str], tuple[int, bytes]]


class MetricsServer:
    """Serves the registry, the status page and the query API on a background thread; ``ready`` gates ``/readyz``.

    ``forecasts`` renders the forecast families' exposition text, which ``/metrics`` puts before the registry's.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        ready: threading.Event,
        status_page: RenderPage,
        api: QueryAPI | None = None,
        forecasts: Callable[[], str] | None = None,
    ) -> None:
        handler = _handler(registry, ready, status_page, api, forecasts)
        self._httpd = _Server((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _Server(ThreadingHTTPServer):
    # The stdlib's 5 refuses connections under a burst of scrapes and health checks.
    request_queue_size = 128


def _handler(
    registry: CollectorRegistry,
    ready: threading.Event,
    status_page: RenderPage,
    api: QueryAPI | None,
    forecasts: Callable[[], str] | None,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "forecaster"
        # An idle or trickling connection is dropped after this many seconds instead of holding a thread.
        timeout = IDLE_TIMEOUT

        def version_string(self) -> str:
            return "forecaster"  # not the stdlib's default, which names the Python version

        def do_HEAD(self) -> None:
            self._respond(body=False)

        def do_GET(self) -> None:
            self._respond(body=True)

        def do_POST(self) -> None:
            # Grafana's Prometheus data source sends its queries as form-encoded POSTs.
            if api is not None and self.path.startswith(PREFIX):
                self._api(api, body=True)
            else:
                self._send(405, b"only the query API (/api/v1/) takes POST\n", True)

        def _api(self, api: QueryAPI, body: bool) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self._send(413 if length > MAX_BODY else 400, b"bad Content-Length\n", body)
                return
            status, payload = api.handle(self.path, self.headers.get("Content-Type", ""), self.rfile.read(length))
            self._send(status, payload, body, "application/json")

        def _respond(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                # Both formats write a family as the same lines, and OpenMetrics' closing "# EOF" stays last.
                head = forecasts().encode() if forecasts is not None else b""
                self._send(200, head + encoder(registry), body, content_type)
            elif path == "/healthz":
                self._send(200, b"ok\n", body)
            elif path == "/readyz":
                if ready.is_set():
                    self._send(200, b"ready\n", body)
                else:
                    self._send(503, b"loading state\n", body)
            elif api is not None and path.startswith(PREFIX):
                self._api(api, body)
            elif path == "/":
                status, page = status_page(urlsplit(self.path).query)
                self._send(status, page, body, "text/html; charset=utf-8")
            else:
                self._send(404, b"not found; try /metrics\n", body)

        def _send(
            self, status: int, payload: bytes, body: bool, content_type: str = "text/plain; charset=utf-8"
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's name)
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
