"""The one boundary for Prometheus' answers: each is checked against the shape the HTTP API documents.

Prometheus, a proxy in front of it, or something that only looks like it may
answer anything. Every ``data`` object is checked here before any of it is
used, and whatever does not have the documented shape raises ``ValueError``
saying what was wrong (``result[3].value[1] is 'abc', not a number``); the
source turns that into a query error naming the forecast and the query, so a
bad answer costs one retrain, is counted, and never surfaces as a traceback.

    range query    {"resultType": "matrix", "result": [{"metric": {...}, "values": [[t, "v"], ...]}, ...]}
    instant query  {"resultType": "vector", "result": [{"metric": {...}, "value": [t, "v"]}, ...]}

A series keeps its full label set, ``__name__`` included, until the source
has seen every series of the answer (see ``several_metrics``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import orjson

from forecaster.series import Labels, Series

# Where a query returns series of several metrics, each series' metric name is exposed under this label.
NAME_LABEL = "metric_name"
# How a series' samples open in Prometheus' (compact) JSON; a key cannot hold a quote, a string only an escaped one.
_VALUES = b'"values":['


def cut_samples(raw: bytes) -> tuple[bytes, list[bytes]]:
    """A range-query answer's text with each series' samples cut out, and those samples' text in order.

    What is left keeps ``"values":[]`` where the samples were: labels,
    status and warnings are parsed as JSON as usual, and ``matrix`` decodes
    each series' samples in bulk. Parsing the whole answer built two Python
    objects per sample (a list and a string), most of a 60-series 14-day
    pull's time; an answer written with spaces (by a proxy) has nothing cut
    and is decoded sample by sample.
    """
    kept, cut, at = [], [], 0
    while (start := raw.find(_VALUES, at)) >= 0:
        begin = start + len(_VALUES)
        if raw[begin : begin + 1] == b"]":
            end = begin
        else:
            closing = raw.find(b"]]", begin)
            if closing < 0:
                break  # truncated: the JSON parser says so
            end = closing + 1
        kept.append(raw[at:begin])
        cut.append(raw[begin:end])
        at = end
    kept.append(raw[at:])
    return b"".join(kept), cut


def matrix(data: object, cut: Sequence[bytes] = ()) -> list[Series]:
    """The series of a range-query answer, labels with ``__name__``; series without samples are left out.

    ``cut`` holds each series' samples as ``cut_samples`` took them out of
    the answer, in order; empty when the answer still holds them.
    """
    out = []
    result = _result(data, "matrix", "a range vector (matrix)")
    if cut and len(cut) != sum("values" in item for item in result):
        raise ValueError(f"{len(cut)} lists of samples for {len(result)} series")
    samples = iter(cut)
    for i, item in enumerate(result):
        labels = _metric(item, i)
        values = item.get("values")
        if not isinstance(values, list):
            raise ValueError(f"result[{i}].values is {_what(values)}, not a list of [time, value] pairs")
        text = next(samples) if cut else None
        if not (text or values):
            continue
        try:
            ts, ys = _samples_text(text) if text else _samples(values)
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise ValueError(f'result[{i}].values holds a sample that is not [time, "number"] ({exc})') from None
        out.append(Series(labels, ts, ys))
    return out


def _samples_text(text: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The times and values of one series' ``[t,"v"],[t,"v"]`` text, parsed as one JSON list of numbers.

    Taken this way only when the text holds nothing but digits, signs,
    points, exponents and the pairs' punctuation, one bracket, one ``,"``
    and two quotes per pair: each pair then is a number and a quoted number.
    Anything else (NaN and ±Inf, which JSON has no number for, a ``"-0"``,
    which JSON reads as the integer 0, or a malformed sample) goes through
    ``_samples``, which reads them or names the sample that is wrong.
    """
    pairs = text.count(b"[")
    plain = not text.translate(None, b'0123456789.+-eE,[]"') and b'"-0"' not in text
    if plain and text.count(b'"') == 2 * pairs and text.count(b',"') == pairs:
        with contextlib.suppress(orjson.JSONDecodeError):
            flat = np.array(orjson.loads(b"[" + text.translate(None, b'[]"') + b"]"), dtype=np.float64)
            if len(flat) == 2 * pairs and np.isfinite(flat[0::2]).all():
                return flat[0::2].copy(), flat[1::2].copy()
    return _samples(orjson.loads(b"[" + text + b"]"))


def _samples(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """The times and values of ``[time, "value"]`` pairs; ValueError naming the first that is not one.

    The shapes are checked a whole series at a time (the type of every pair,
    time and value at C speed) and the numbers converted by numpy: a sample
    at a time in Python cost 0.6 s of a 60-series, 14-day pull. Only an
    answer that fails the bulk check is walked sample by sample, to name the
    sample that is wrong.
    """
    if {type(v) for v in values} == {list} and set(map(len, values)) == {2}:
        times = [v[0] for v in values]
        texts = [v[1] for v in values]
        if {type(t) for t in times} <= {int, float} and {type(t) for t in texts} == {str}:
            ts = np.array(times, dtype=np.float64)
            if np.isfinite(ts).all():
                with contextlib.suppress(ValueError):
                    return ts, np.array(texts, dtype=np.float64)
    ts = np.fromiter((_time(v) for v in values), dtype=np.float64, count=len(values))
    ys = np.fromiter((_number(v[1]) for v in values), dtype=np.float64, count=len(values))
    return ts, ys


def vector(data: object) -> list[tuple[Labels, float]]:
    """Each series' labels (without ``__name__``) and value from an instant-query answer."""
    out = []
    for i, item in enumerate(_result(data, "vector", "an instant vector")):
        labels = _metric(item, i)
        labels.pop("__name__", None)
        value = item.get("value")
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError(f"result[{i}].value is {_what(value)}, not a [time, value] pair")
        try:
            out.append((labels, _number(value[1])))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"result[{i}].value[1] {exc}") from None
    return out


def several_metrics(label_sets: Iterable[Labels]) -> bool:
    """Whether an answer's series belong to more than one metric: then each keeps its name (see ``identity``).

    A query such as ``{__name__=~"up|scrape_samples_scraped"}`` returns series
    that differ only in their name; dropping it would merge them into one.
    """
    return len({labels.get("__name__") for labels in label_sets}) > 1


def identity(labels: Labels, name_kept: bool) -> Labels:
    """A series' labels without ``__name__``, or with it as ``metric_name`` when ``name_kept``."""
    out = {k: v for k, v in labels.items() if k != "__name__"}
    if name_kept and "__name__" in labels:
        out[NAME_LABEL] = labels["__name__"]
    return out


def _result(data: object, kind: str, described: str) -> list[dict[str, object]]:
    if not isinstance(data, dict):
        raise ValueError(f"data is {_what(data)}, not an object with resultType and result")
    if data.get("resultType") != kind:
        raise ValueError(f"expected {described}, Prometheus returned {data.get('resultType')!r}")
    result = data.get("result")
    if not isinstance(result, list):
        raise ValueError(f"result is {_what(result)}, not a list")
    for i, item in enumerate(result):
        if not isinstance(item, dict):
            raise ValueError(f"result[{i}] is {_what(item)}, not an object")
    return result


def _metric(item: dict[str, object], i: int) -> Labels:
    metric = item.get("metric")
    if not isinstance(metric, dict):
        raise ValueError(f"result[{i}].metric is {_what(metric)}, not an object of labels")
    for name, value in metric.items():
        if not isinstance(value, str):
            raise ValueError(f"result[{i}].metric[{name!r}] is {_what(value)}, not a string")
    return dict(metric)


def _time(sample: object) -> float:
    if not isinstance(sample, list) or len(sample) != 2:
        raise ValueError(f"{_what(sample)} is not a pair")
    when = sample[0]
    if isinstance(when, bool) or not isinstance(when, int | float) or not np.isfinite(when):
        raise ValueError(f"time {when!r} is not a finite number")
    return float(when)


def _number(text: object) -> float:
    # Prometheus writes sample values as strings, NaN and ±Inf spelled out; float() reads them all.
    if not isinstance(text, str):
        raise ValueError(f"is {_what(text)}, not a number in a string")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"is {text[:40]!r}, not a number") from None


def _what(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return {dict: "an object", list: "a list", bool: "a boolean"}.get(type(value), f"the number {value!r}")
