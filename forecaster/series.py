"""One series of a query result, and the one place its samples are put in order.

A ``Series`` is what the Prometheus source returns, what the history cache
keeps and what a fit reads. Its timestamps are strictly increasing: the source
sorts and de-duplicates each series once, when it stitches a pull together
(``sort_unique``), and everything downstream relies on that instead of sorting
again. Values may still be NaN or ±Inf (Prometheus returns them); a fit drops
those itself (``finite``), which is a mask, not a sort.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

import numpy as np

Labels = dict[str, str]


def series_key(labels: Labels) -> tuple[tuple[str, str], ...]:
    """A hashable identity for a label set, independent of label order."""
    return tuple(sorted(labels.items()))


def format_labels(labels: Labels) -> str:
    """Labels for a log line or a message, values escaped so that a newline in one cannot forge a log line."""
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items())) + "}"


@dataclass
class Series:
    """One series of a query result: its labels (no ``__name__``) and samples in strictly increasing time order."""

    labels: Labels
    timestamps: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Recent:
    """A short tail of a series' history, averaged down to a few points, for the status page to draw.

    Values are float32: a chart needs no more, and 2,000 series of 200 points stay under 5 MB.
    """

    timestamps: np.ndarray
    values: np.ndarray


def recent(series: Series, since: float, max_points: int) -> Recent:
    """The finite samples of ``series`` from ``since`` on, each run of consecutive samples averaged to one point.

    Runs are counted back from the newest sample, so the last point always holds the latest samples.
    """
    ts, ys = finite(series.timestamps, series.values)
    keep = ts >= since
    ts, ys = ts[keep], ys[keep]
    per_point = max(1, -(-len(ts) // max_points))
    usable = len(ts) - len(ts) % per_point
    ts, ys = ts[len(ts) - usable :], ys[len(ys) - usable :]
    return Recent(
        ts.reshape(-1, per_point).mean(axis=1),
        ys.reshape(-1, per_point).mean(axis=1).astype(np.float32),
    )


class SeriesSource(Protocol):
    """What the trainer and the as-of code need from Prometheus (``forecaster.prometheus.PrometheusSource``)."""

    def query_range(self, query: str, start: float, end: float, step: float, *, forecast: str) -> list[Series]:
        """Every series of ``query`` over [start, end] at ``step``, each sorted and de-duplicated."""
        ...

    def query(self, query: str, at: float, *, forecast: str) -> list[tuple[Labels, float]]:
        """An instant query: each series' labels and value at ``at``."""
        ...


def sort_unique(timestamps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples sorted by time; of a repeated timestamp the last one given is kept."""
    order = np.argsort(timestamps, kind="stable")
    ts, ys = timestamps[order], values[order]
    if len(ts) > 1:
        last_of_run = np.concatenate((ts[1:] != ts[:-1], [True]))
        ts, ys = ts[last_of_run], ys[last_of_run]
    return ts, ys


def finite(timestamps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The samples whose time and value are both finite, as float arrays."""
    ts = np.asarray(timestamps, dtype=np.float64)
    ys = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(ts) & np.isfinite(ys)
    return ts[keep], ys[keep]


def clean(timestamps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arrays from anywhere made usable: NaN and ±Inf dropped, sorted, the last of a repeated timestamp kept."""
    return sort_unique(*finite(timestamps, values))
