"""The forecast curve over Prometheus' HTTP API, for Grafana's Prometheus data source.

Served on the ``/metrics`` listener under ``/api/v1/``: ``query``,
``query_range``, ``labels``, ``label/<name>/values``, ``series``, ``metadata``
and ``status/buildinfo``, to GET and form-encoded POST, in Prometheus' JSON
envelope::

    {"status": "success", "data": {"resultType": "matrix", "result": [...]}}
    {"status": "error", "errorType": "bad_data", "error": "parse error: ..."}

Parameters are read as Prometheus reads them (times as unix seconds or
RFC 3339, ``step`` as seconds or a duration, at most 11,000 points a series).
Each request reads the board once, so a retrain landing mid-request cannot mix
two fits. What a query may contain is in ``curve.py``; anything it refuses, and
any bad parameter, is a 4xx naming the problem, never a 5xx.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

import numpy as np
import orjson

import forecaster
from forecaster.curve import METRICS, Curve, Vector, evaluate, parse, selector_matches, served_curves
from forecaster.duration import Duration
from forecaster.errors import RefusedQuery
from forecaster.exporter import Board

log = logging.getLogger(__name__)

PREFIX = "/api/v1/"
MAX_POINTS = 11_000  # per series, as Prometheus' query_range
MAX_BODY = 1 << 20
# Far enough for any forecast, near enough that milliseconds stay exact integers in a float.
_LATEST = 1e11
_FORM = "application/x-www-form-urlencoded"
_LABEL_VALUES = re.compile(r"/api/v1/label/([^/]+)/values")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_STATUS = {"bad_data": 400, "execution": 422, "not_found": 404, "internal": 500}

Params = dict[str, list[str]]


class QueryAPI:
    """Answers ``/api/v1/*`` requests from the board's latest frames; ``clock`` is the default query time."""

    def __init__(self, board: Board, clock: Callable[[], float]) -> None:
        self._board = board
        self._clock = clock
        self._routes: dict[str, Callable[[Params, list[Curve]], Any]] = {
            "query": self._query,
            "query_range": self._query_range,
            "labels": self._labels,
            "series": self._series,
            "metadata": self._metadata,
            "status/buildinfo": self._buildinfo,
        }

    def handle(self, target: str, content_type: str, body: bytes) -> tuple[int, bytes]:
        """The status and JSON body answering ``target`` (path and query string) with a request body."""
        path, _, query_string = target.partition("?")
        params = parse_qs(query_string, keep_blank_values=True)
        if content_type.split(";", 1)[0].strip().lower() == _FORM:
            # As Go's ParseForm: the body's values come first, then the URL's.
            for name, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
                params[name] = values + params.get(name, [])
        try:
            data = self._dispatch(path, params)
        except RefusedQuery as exc:
            return _error(exc.error_type, str(exc))
        except Exception:
            log.exception("%s failed", path)
            return _error("internal", f"internal error answering {path}; the forecaster's log has the traceback")
        return 200, orjson.dumps({"status": "success", "data": data})

    def _dispatch(self, path: str, params: Params) -> Any:
        endpoint = path.removeprefix(PREFIX)
        values = _LABEL_VALUES.fullmatch(path)
        if endpoint not in self._routes and values is None:
            raise RefusedQuery(f"{path} is not served here; see the README for the query API's endpoints", "not_found")
        curves = served_curves(self._board.snapshot())  # one snapshot for the whole request
        if values is not None:
            return self._label_values(unquote(values.group(1)), params, curves)
        return self._routes[endpoint](params, curves)

    def _query(self, params: Params, curves: list[Curve]) -> dict[str, Any]:
        expr = parse(_first(params, "query"))
        at = _time(params, "time") if _first(params, "time") else self._clock()
        at_ms = round(at * 1000)
        result = evaluate(expr, curves, np.array([at_ms / 1000]))
        if isinstance(result, Vector):
            rows = [
                {"metric": labels, "value": [at_ms / 1000, format_value(value)]}
                for labels, value, present in zip(result.labels, result.values[:, 0], result.present[:, 0], strict=True)
                if present
            ]
            return {"resultType": "vector", "result": sorted(rows, key=lambda r: sorted(r["metric"].items()))}
        return {"resultType": "scalar", "result": [at_ms / 1000, format_value(float(result[0]))]}

    def _query_range(self, params: Params, curves: list[Curve]) -> dict[str, Any]:
        start_ms, end_ms = round(_time(params, "start") * 1000), round(_time(params, "end") * 1000)
        if end_ms < start_ms:
            raise RefusedQuery("end timestamp must not be before start time")
        step_ms = _step(_first(params, "step"))
        if (end_ms - start_ms) // step_ms > MAX_POINTS:
            raise RefusedQuery(
                f"exceeded maximum resolution of {MAX_POINTS:,} points per timeseries. "
                "Try decreasing the query resolution (?step=XX)"
            )
        expr = parse(_first(params, "query"))
        stamps = np.arange(start_ms, end_ms + 1, step_ms) / 1000
        result = evaluate(expr, curves, stamps)
        if not isinstance(result, Vector):
            result = Vector([{}], result[None, :], np.ones((1, len(stamps)), dtype=bool))
        times = stamps.tolist()
        series = []
        for labels, values, present in zip(result.labels, result.values.tolist(), result.present, strict=True):
            if present.any():
                points = [[times[j], format_value(values[j])] for j in np.flatnonzero(present).tolist()]
                series.append({"metric": labels, "values": points})
        return {"resultType": "matrix", "result": sorted(series, key=lambda s: sorted(s["metric"].items()))}

    def _labels(self, params: Params, curves: list[Curve]) -> list[str]:
        return sorted({name for curve in _selected(params, curves, required=False) for name in curve.labels})

    def _label_values(self, name: str, params: Params, curves: list[Curve]) -> list[str]:
        if not _LABEL_NAME.fullmatch(name):
            raise RefusedQuery(f"invalid label name: {name!r}")
        chosen = _selected(params, curves, required=False)
        return sorted({curve.labels[name] for curve in chosen if name in curve.labels})

    def _series(self, params: Params, curves: list[Curve]) -> list[dict[str, str]]:
        unique = {tuple(sorted(c.labels.items())): c.labels for c in _selected(params, curves, required=True)}
        return [unique[key] for key in sorted(unique)]

    def _metadata(self, params: Params, curves: list[Curve]) -> dict[str, list[dict[str, str]]]:
        wanted = _first(params, "metric")
        return {
            name: [{"type": "gauge", "help": text, "unit": ""}]
            for name, text in METRICS.items()
            if not wanted or wanted == name
        }

    def _buildinfo(self, params: Params, curves: list[Curve]) -> dict[str, str]:
        return {
            "version": forecaster.__version__,
            "revision": "",
            "branch": "",
            "buildUser": "forecaster",
            "buildDate": "",
            "goVersion": "",
        }


def _error(error_type: str, message: str) -> tuple[int, bytes]:
    return _STATUS[error_type], orjson.dumps({"status": "error", "errorType": error_type, "error": message})


def _first(params: Params, name: str) -> str:
    values = params.get(name)
    return values[0] if values else ""


def _selected(params: Params, curves: list[Curve], *, required: bool) -> list[Curve]:
    """The curves any ``match[]`` selects (all without one, unless ``required``) that have values in [start, end]."""
    selectors = params.get("match[]", [])
    if required and not selectors:
        raise RefusedQuery("no match[] parameter provided")
    start = _time(params, "start") if _first(params, "start") else -math.inf
    end = _time(params, "end") if _first(params, "end") else math.inf
    if selectors:
        picked = {id(c): c for text in selectors for c in selector_matches(text, curves)}
        curves = list(picked.values())
    return [c for c in curves if c.overlaps(start, end)]


def _time(params: Params, name: str) -> float:
    """A time parameter as Prometheus takes it: unix seconds, or RFC 3339 with a zone."""
    text = _first(params, name)
    try:
        value = float(text)
    except ValueError:
        try:
            parsed = dt.datetime.fromisoformat(text.strip())
        except ValueError:
            parsed = None
        value = parsed.timestamp() if parsed is not None and parsed.tzinfo is not None else math.nan
    if not math.isfinite(value) or abs(value) > _LATEST:
        raise RefusedQuery(f"invalid parameter {name!r}: cannot parse {text!r} to a valid timestamp")
    return value


def _step(text: str) -> int:
    """The query_range step in milliseconds: seconds as a float, or a duration such as ``5m``."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = Duration.parse(text).seconds
        except ValueError:
            raise RefusedQuery(f"invalid parameter 'step': cannot parse {text!r} to a valid duration") from None
    if not math.isfinite(seconds) or seconds > _LATEST:
        raise RefusedQuery(f"invalid parameter 'step': cannot parse {text!r} to a valid duration")
    step_ms = round(seconds * 1000)
    if step_ms <= 0:
        raise RefusedQuery("zero or negative query resolution step widths are not accepted. Try a positive integer")
    return step_ms


def format_value(value: float) -> str:
    """A sample value as Prometheus' JSON writes it: Go's shortest decimal, never an exponent; NaN, +Inf, -Inf."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(float(value))
    if "e" in text:
        return np.format_float_positional(value, trim="-")
    return text[:-2] if text.endswith(".0") else text
