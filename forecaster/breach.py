"""Predicted breaches: when a forecast band first crosses a threshold.

Pure functions on a :class:`~forecaster.model.frame.Frame`, used at scrape time to
expose ``forecast_breach_seconds`` (seconds from now until the crossing) and
at retrain time to attach a per-series threshold from a ``threshold_query``.
The answer never reaches past the fitted frame: a crossing after its end is
reported as no crossing (``+Inf``), not extrapolated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from forecaster.model.frame import Frame
from forecaster.series import Labels

ABOVE = "above"
BELOW = "below"
BANDS = ("yhat", "yhat_lower", "yhat_upper")


def band_values(frame: Frame, band: str) -> np.ndarray:
    if band not in BANDS:
        raise ValueError(f"band {band!r} is not one of {', '.join(BANDS)}")
    values: np.ndarray = getattr(frame, band)
    return values


def first_crossing(ds: np.ndarray, values: np.ndarray, threshold: float, direction: str) -> float | None:
    """The first time the piecewise-linear curve (ds, values) reaches ``threshold``; None if it never does.

    Reaching counts as crossing (``>=`` for above, ``<=`` for below): a disk at
    exactly zero bytes free is full. Between two frame points the time is
    interpolated linearly, matching how the gauges interpolate the frame.
    """
    if direction not in (ABOVE, BELOW):
        raise ValueError(f"direction {direction!r} is not {ABOVE!r} or {BELOW!r}")
    if len(ds) == 0:
        return None
    crossed = values >= threshold if direction == ABOVE else values <= threshold
    hits = np.flatnonzero(crossed)
    if len(hits) == 0:
        return None
    i = int(hits[0])
    if i == 0:
        return float(ds[0])
    v0, v1 = float(values[i - 1]), float(values[i])
    t0, t1 = float(ds[i - 1]), float(ds[i])
    return t0 + (threshold - v0) / (v1 - v0) * (t1 - t0)


def seconds_until_breach(frame: Frame, band: str, threshold: float, direction: str, now: float) -> float | None:
    """Seconds from ``now`` until ``band`` first crosses ``threshold`` inside the frame.

    0 when the band is already across at ``now``; ``+Inf`` when it does not
    cross before the frame ends; None when ``now`` is past the frame, where
    the forecast has expired and nothing is exposed.
    """
    if len(frame.ds) == 0 or now > frame.ds[-1]:
        return None
    values = band_values(frame, band)
    start = max(now, float(frame.ds[0]))
    ahead = frame.ds > start
    ds = np.concatenate(([start], frame.ds[ahead]))
    curve = np.concatenate(([np.interp(start, frame.ds, values)], values[ahead]))
    when = first_crossing(ds, curve, threshold, direction)
    return math.inf if when is None else max(0.0, when - now)


def match_threshold(labels: Labels, thresholds: Sequence[tuple[Labels, float]]) -> float | None:
    """The threshold whose labels agree with ``labels`` on every label name both have.

    A threshold series without labels (``vector(100)``) matches every series.
    None when no threshold series matches, or when several do with different
    values: guessing would page on the wrong disk.
    """
    found: set[float] = set()
    for candidate, value in thresholds:
        if all(labels[name] == candidate[name] for name in candidate.keys() & labels.keys()):
            found.add(value)
    if len(found) != 1:
        return None
    value = found.pop()
    return value if math.isfinite(value) else None
