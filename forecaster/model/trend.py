"""The trend: how it continues past the history, and how it was known at each past point.

Two decisions live here. ``choose_trend`` decides how the fitted trend is
extrapolated (held flat, damped, or Prophet's own line): a series whose level
wanders is held where it is, a disk that keeps filling keeps its slope.
``trailing_line`` stands in for the trend as it was known at each past
point, from the data before it only; the band and the residual correction
are scored on the errors of forecasts made from there, because Prophet's
in-sample trend was fitted on what came after each point too and would
flatter them. ``rate_drift`` says how much the rate moved from day to day,
which widens a linear trend's band with the lead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from forecaster.model.options import ModelOptions

# The share of the history behind the trailing line that stands in for Prophet's trend (see ``trailing_line``).
LINE_SHARE = 0.2


def choose_trend(trend: np.ndarray, step: float, span: float, options: ModelOptions) -> str:
    """``trend: auto``: keep the slope only when the trend has been going one way all along.

    That is, when the fitted trend's latest slope is within a factor of two of
    its average slope over the whole history (a disk filling up). A trend
    that has turned, or a level that wanders, is held flat: in sample
    Prophet's trend always looks smooth, but its latest slope is the one least
    supported by data and the one that runs away.
    """
    if options.trend != "auto":
        return options.trend
    if len(trend) < 3 or span <= 0:
        return "flat"
    overall = (trend[-1] - trend[0]) / span
    latest = (trend[-1] - trend[-2]) / step
    if overall != 0 and 0.5 <= latest / overall <= 2.0:
        return "linear"
    return "flat"


def damp(
    trend: np.ndarray, times: np.ndarray, origin: float, anchor: float, span: float, mode: str, damping: float
) -> np.ndarray:
    """The trend past ``origin``: Prophet's, held flat, or with its slope fading over a share of the span."""
    if mode == "linear":
        return trend
    lead = np.maximum(times - origin, 0.0)
    if mode == "flat":
        return np.where(lead > 0, anchor, trend)
    tau = max(damping * span, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(lead > 0, tau * (1 - np.exp(-lead / tau)) / lead, 1.0)
    return anchor + (trend - anchor) * share


def trailing_line(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """At each index: the end level and slope (per step) of the least-squares line through the last ``window`` values.

    NaN where fewer than half the window (or 10 values) are finite. Prophet's
    in-sample trend at a past point was fitted on what came after it too, so
    its errors there are those of a forecaster who knew the future, and
    flattered the model against the simple alternatives and narrowed the
    band. The fitted trend at the end of the history, where the forecast
    starts, is a line through its last stretch (no changepoints in the last
    tenth); this line, fitted at every point from what was known then, is its
    honest stand-in.
    """
    n = len(values)
    known = np.isfinite(values).astype(np.float64)
    filled = np.where(known > 0, values, 0.0)
    # Centred positions keep the running sums of squares small enough to difference without losing precision.
    x = np.arange(n, dtype=np.float64) - n / 2
    starts = np.maximum(np.arange(1, n + 1) - window, 0)

    def running(a: np.ndarray) -> np.ndarray:
        total = np.concatenate(([0.0], np.cumsum(a)))
        return np.asarray(total[1:] - total[starts])

    count, sum_x, sum_xx = running(known), running(known * x), running(known * x * x)
    sum_y, sum_xy = running(filled), running(filled * x)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x, mean_y = sum_x / count, sum_y / count
        spread = sum_xx - count * mean_x * mean_x
        slope = np.where(spread > 0, (sum_xy - count * mean_x * mean_y) / spread, 0.0)
        level = mean_y + slope * (x - mean_x)
    sparse = count < max(10, window / 2)
    level[sparse] = np.nan
    slope[sparse] = np.nan
    return level, slope


def trend_surprise(
    level: np.ndarray, slope: np.ndarray, step: float, span: float, mode: str, damping: float
) -> Callable[[int], np.ndarray]:
    """For a lead of k steps: how far the trailing line's level moved from where its extrapolation at each t said.

    Together with the residuals from that line, these are the errors of the
    trend extrapolated (flat, damped or linear, as the forecast will be) from
    each past point with only the data before it.
    """

    def at(k: int) -> np.ndarray:
        if mode == "linear":
            reach = float(k)
        elif mode == "damped":
            tau = max(damping * span, 1.0) / step
            reach = tau * (1 - np.exp(-k / tau))
        else:
            reach = 0.0
        now = len(level) - k
        return np.asarray(level[k:] - (level[:now] + slope[:now] * reach))

    return at


def rate_drift(values: np.ndarray, window: int) -> tuple[float, float] | None:
    """The series' typical rate and how far it moves from one ``window`` to the next (per step).

    The typical rate is the median slope over every ``window``; a rate
    carried from the end of the history that ran faster or slower than that
    tends back to it. The drift is the spread of the slope's changes from one
    window to the next, per ``window``. Prophet's trend simulation lets the rate change
    in the future as often and as much as its fitted changepoints did; on a
    steady series those are all zero, and its band does not widen. The
    slopes of successive windows differ on every series, by noise where the
    rate is steady and by more where it is not, and a window one period of
    the daily seasonality long compares windows at the same phase, so a
    daily shape the seasonality did not take out cancels. A few days'
    changes can come out small by chance, so the drift is never taken to be
    less than the noise alone makes two windows' slopes differ. None when
    fewer than ``window`` changes are known.
    """
    # Only whole windows: the first few are shorter, and their slopes differ from a whole window's by more.
    slopes = trailing_line(values, window)[1][window - 1 :]
    changes = slopes[window:] - slopes[:-window]
    changes = changes[np.isfinite(changes)]
    if len(changes) < window:
        return None
    steps = np.diff(values)
    steps = steps[np.isfinite(steps)]
    # Step to step, iid noise of sd s differs by sd s * sqrt(2); the steps' median absolute deviation says so robustly.
    # A history with a gap between every two samples has no steps, and no floor.
    noise = 1.4826 * float(np.median(np.abs(steps - np.median(steps)))) / np.sqrt(2) if len(steps) else 0.0
    # Two slopes fitted through that noise differ by this much even where the rate does not move at all.
    floor = 2 * noise**2 * 12 / (window * (window**2 - 1))
    return float(np.median(slopes[np.isfinite(slopes)])), float(np.sqrt(max(np.var(changes), floor)))
