"""Reading history from Prometheus' HTTP API.

One shared httpx client serves every forecast. Long ranges are split into
chunks under Prometheus' 11,000-points-per-series limit, fetched with bounded
concurrency and stitched back together; transient failures (connection
refused, timeouts, 5xx, 429) are retried with jittered backoff, while a query
Prometheus refuses (``bad_data``) fails at once with Prometheus' own message.
"""

from __future__ import annotations

import json
import logging
import math
import random
import ssl
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import orjson

from forecaster import answers
from forecaster.config import PrometheusConfig, is_header_safe
from forecaster.errors import BadQueryError, ForecasterError, QueryAbandoned, QueryError, TransientError
from forecaster.series import Labels, Series, series_key, sort_unique

log = logging.getLogger(__name__)

# Prometheus refuses more than 11,000 points per series; stay well clear.
MAX_POINTS_PER_QUERY = 10_000
# A pull of many series is split further so that one answer holds about this many samples.
MAX_SAMPLES_PER_REQUEST = 100_000
_MIN_CHUNK_STEPS = 10
# Ranges shorter than this (incremental pulls from the history cache) are not worth an extra sizing query.
_PROBE_ABOVE_STEPS = 1_000
_RETRY_STATUS = {429, 500, 502, 503, 504}
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 10.0
_AUTH_HINT = "; check prometheus.bearer_token_file, basic_auth and headers"


@dataclass(frozen=True)
class Chunk:
    start: float
    end: float


def plan_chunks(start: float, end: float, step: float, max_points: int = MAX_POINTS_PER_QUERY) -> list[Chunk]:
    """Split [start, end] into step-aligned chunks that each return at most max_points per series.

    Chunk boundaries sit on the step grid (multiples of ``step`` since the
    epoch) and consecutive chunks do not share a step, so stitching needs no
    de-duplication and leaves no hole.
    """
    first = math.ceil(start / step) * step
    last = math.floor(end / step) * step
    chunks = []
    cursor = first
    while cursor <= last:
        chunk_end = min(cursor + (max_points - 1) * step, last)
        chunks.append(Chunk(cursor, chunk_end))
        cursor = chunk_end + step
    return chunks


def _load_secret(path: Any, what: str) -> str:
    """A secret file's content, surrounding white space dropped; refused, never quoted, if it cannot be sent."""
    try:
        with open(path, "rb") as handle:
            # Latin-1 maps every byte to a character, so bytes that are not ASCII fail the check below.
            secret = handle.read().decode("latin-1").strip()
    except OSError as exc:
        raise ForecasterError(f"prometheus.{what}: cannot read {path}: {exc.strerror}") from None
    if not is_header_safe(secret):
        raise ForecasterError(
            f"prometheus.{what}: {path} holds a control character (a second line?) or a non-ASCII character, "
            "which cannot go into an HTTP header; keep only the secret itself in the file"
        )
    return secret


def build_http_client(config: PrometheusConfig) -> httpx.Client:
    """The one httpx client for Prometheus, with timeouts, auth and TLS from the config.

    Answers come uncompressed unless ``headers`` ask otherwise: gzipping a
    14-day, 60-series answer (9 MB of JSON) took Prometheus 0.7 s of CPU
    and made the pull 6-8 times slower on loopback; compression pays only
    over a link slower than about 100 Mbit/s.
    """
    headers = dict(config.headers)
    if not any(name.lower() == "accept-encoding" for name in headers):
        headers["Accept-Encoding"] = "identity"
    auth = None
    if config.bearer_token_file is not None:
        headers["Authorization"] = "Bearer " + _load_secret(config.bearer_token_file, "bearer_token_file")
    if config.basic_auth is not None:
        password = _load_secret(config.basic_auth.password_file, "basic_auth.password_file")
        auth = httpx.BasicAuth(config.basic_auth.username, password)
    verify: Any = True
    if urlsplit(config.url).scheme == "http" and config.tls.ca_file is None and not config.tls.insecure_skip_verify:
        # Nothing on a plain-http URL speaks TLS (redirects are not followed), so the system's CA bundle, which httpx
        # otherwise loads for every client (about 37 ms of each command's start), stays unread. The context still
        # verifies: a TLS connection, were one made, would fail rather than go unchecked.
        verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    elif config.tls.insecure_skip_verify:
        verify = False
    elif config.tls.ca_file is not None:
        try:
            verify = ssl.create_default_context(cafile=str(config.tls.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ForecasterError(f"prometheus.tls.ca_file: cannot load {config.tls.ca_file}: {exc}") from None
    seconds = config.timeout.seconds
    return httpx.Client(
        base_url=config.url,
        headers=headers,
        auth=auth,
        verify=verify,
        timeout=httpx.Timeout(seconds, connect=min(seconds, 10.0)),
        limits=httpx.Limits(max_connections=config.max_concurrency, max_keepalive_connections=config.max_concurrency),
    )


class PrometheusSource:
    """Fetches a forecast's history. Takes its httpx client so tests can inject a transport.

    Setting ``stop`` cuts a backoff short and gives up the query with QueryAbandoned,
    so a shutdown never waits out a retry schedule.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        retries: int = 3,
        max_concurrency: int = 4,
        sleep: Callable[[float], object] | None = None,
        max_points: int = MAX_POINTS_PER_QUERY,
        stop: threading.Event | None = None,
    ) -> None:
        self._client = client
        self._retries = retries
        self._max_concurrency = max_concurrency
        self._stop = stop or threading.Event()
        self._sleep = sleep or self._stop.wait
        self._max_points = max_points

    @classmethod
    def from_config(cls, config: PrometheusConfig, stop: threading.Event | None = None) -> PrometheusSource:
        return cls(build_http_client(config), retries=config.retries, max_concurrency=config.max_concurrency, stop=stop)

    def close(self) -> None:
        self._client.close()

    def query_range(self, query: str, start: float, end: float, step: float, *, forecast: str) -> list[Series]:
        """All series of ``query`` over [start, end] at ``step``, as many chunks as needed.

        Chunks stay under Prometheus' points-per-series limit and, for queries that
        return many series, under ``MAX_SAMPLES_PER_REQUEST`` in all: a decoded JSON
        answer costs about 150 bytes a sample, so one 500-series, 14-day pull in a
        single answer would hold the service at several hundred MB.
        """
        steps = int((end - start) // step) + 1
        chunk_steps = self._max_points
        if steps > _PROBE_ABOVE_STEPS:
            chunk_steps = self._steps_per_request(query, end, forecast=forecast)
        chunks = plan_chunks(start, end, step, chunk_steps)
        if not chunks:
            return []

        def fetch(chunk: Chunk) -> list[Series]:
            params = {"query": query, "start": _fmt(chunk.start), "end": _fmt(chunk.end), "step": _fmt(step)}
            data, cut = self._get("/api/v1/query_range", params, query=query, forecast=forecast, cut=True)
            try:
                return answers.matrix(data, cut)
            except ValueError as exc:
                raise QueryError(f"malformed answer to a range query: {exc}", forecast=forecast, query=query) from None

        if len(chunks) == 1:
            return _stitch([fetch(chunks[0])])
        with ThreadPoolExecutor(max_workers=min(self._max_concurrency, len(chunks))) as pool:
            futures = [pool.submit(fetch, chunk) for chunk in chunks]
            try:
                parts = [future.result() for future in futures]
            except BaseException:
                # One chunk failing fails the pull: do not keep Prometheus busy with the rest.
                for future in futures:
                    future.cancel()
                raise
        return _stitch(parts)

    def _steps_per_request(self, query: str, at: float, *, forecast: str) -> int:
        """Steps per chunk that keep one answer near MAX_SAMPLES_PER_REQUEST, judged by the series alive at ``at``."""
        try:
            count = len(self.query(query, at, forecast=forecast))
        except QueryError:
            # The range query will report the problem itself; size as if the query returned one series.
            return self._max_points
        return max(_MIN_CHUNK_STEPS, min(self._max_points, MAX_SAMPLES_PER_REQUEST // max(1, count)))

    def query(self, query: str, at: float, *, forecast: str) -> list[tuple[Labels, float]]:
        """An instant query: each series' labels and value at ``at``."""
        data, _ = self._get("/api/v1/query", {"query": query, "time": _fmt(at)}, query=query, forecast=forecast)
        try:
            return answers.vector(data)
        except ValueError as exc:
            raise QueryError(f"malformed answer to an instant query: {exc}", forecast=forecast, query=query) from None

    def _get(
        self, path: str, params: dict[str, str], *, query: str, forecast: str, cut: bool = False
    ) -> tuple[object, list[bytes]]:
        """The answer's ``data``, and with ``cut`` its series' samples as ``answers.cut_samples`` took them out."""
        attempt = 0
        while True:
            if self._stop.is_set():
                raise QueryAbandoned("given up: the service is stopping", forecast=forecast, query=query)
            try:
                return self._get_once(path, params, query=query, forecast=forecast, cut=cut)
            except TransientError as exc:
                if attempt >= self._retries:
                    raise QueryError(
                        f"{exc} (gave up after {attempt + 1} attempts; is Prometheus up and reachable?)",
                        forecast=forecast,
                        query=query,
                    ) from None
                delay = exc.retry_after or min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)
                delay *= random.uniform(0.5, 1.0) if exc.retry_after is None else 1.0
                log.info("forecast %r: %s; retrying in %.1fs", forecast, exc, delay)
                self._sleep(delay)
                attempt += 1

    def _get_once(
        self, path: str, params: dict[str, str], *, query: str, forecast: str, cut: bool
    ) -> tuple[object, list[bytes]]:
        try:
            response = self._client.get(path, params=params)
        except httpx.TimeoutException:
            raise TransientError("Prometheus did not answer within the timeout") from None
        except httpx.TransportError as exc:
            if _is_tls_failure(exc):
                raise QueryError(
                    f"the TLS handshake with Prometheus failed ({exc}); check prometheus.tls.ca_file, "
                    "the server's certificate and that prometheus.url names the host it was issued for",
                    forecast=forecast,
                    query=query,
                ) from None
            raise TransientError(f"cannot reach Prometheus: {exc.__class__.__name__}: {exc}") from None
        if response.status_code in (401, 403):
            raise QueryError(
                f"Prometheus refused the request (HTTP {response.status_code}): {response.text[:300]!r}{_AUTH_HINT}",
                forecast=forecast,
                query=query,
            )
        if response.status_code in _RETRY_STATUS:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise TransientError(f"Prometheus answered HTTP {response.status_code}{_error_text(response)}", retry_after)
        text, samples = answers.cut_samples(response.content) if cut else (response.content, [])
        try:
            body = _json(text)
        except ValueError:
            if response.is_success:
                raise TransientError(
                    f"Prometheus answered HTTP {response.status_code} with a body that is not JSON"
                ) from None
            raise QueryError(
                f"Prometheus answered HTTP {response.status_code}: {response.text[:200]!r}",
                forecast=forecast,
                query=query,
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", "no error message") if isinstance(body, dict) else "unexpected answer"
            kind = body.get("errorType") if isinstance(body, dict) else ""
            kind = kind if isinstance(kind, str) else ""
            cls = BadQueryError if kind == "bad_data" or response.status_code in (400, 422) else QueryError
            message = _one_line(f"{kind + ': ' if kind else ''}{error}")
            raise cls(f"Prometheus: {message}", forecast=forecast, query=query)
        warnings = body.get("warnings")
        for warning in warnings if isinstance(warnings, list) else []:
            log.warning("forecast %r: Prometheus warns about query %r: %s", forecast, query, _one_line(str(warning)))
        return body.get("data"), samples


def _json(text: bytes) -> Any:
    """The parsed answer: orjson, or the standard library's parser for what orjson refuses but it reads.

    Such as an ``Infinity`` a hand-written answer may hold, which ``answers``
    then names as the malformed sample it is.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _retry_after(header: str | None) -> float | None:
    if header is None:
        return None
    try:
        return min(_BACKOFF_CAP, max(0.0, float(header)))
    except ValueError:
        return None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f": {_one_line(str(body['error']))}" if isinstance(body, dict) and body.get("error") else ""
    except ValueError:
        return ""


def _fmt(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _stitch(parts: Iterable[list[Series]]) -> list[Series]:
    merged: dict[tuple[tuple[str, str], ...], tuple[Labels, list[np.ndarray], list[np.ndarray]]] = {}
    for part in parts:
        for item in part:
            entry = merged.setdefault(series_key(item.labels), (item.labels, [], []))
            entry[1].append(item.timestamps)
            entry[2].append(item.values)
    name_kept = answers.several_metrics(labels for labels, _, _ in merged.values())
    out = []
    for labels, ts_parts, ys_parts in merged.values():
        # The one place a series is put in order: everything downstream relies on it (see forecaster.series).
        ts, ys = sort_unique(np.concatenate(ts_parts), np.concatenate(ys_parts))
        out.append(Series(answers.identity(labels, name_kept), ts, ys))
    return out


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in str(exc)


def _one_line(text: str) -> str:
    """Server-supplied text for a log line: at most 500 characters, line breaks escaped, so none can forge a line."""
    return text[:500].replace("\r", "\\r").replace("\n", "\\n")
