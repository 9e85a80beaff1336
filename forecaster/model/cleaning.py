"""Preparing a history for the fit: the step grid, the transform, clipped spikes, safe bounds, pinned edges.

Decides what the fit sees and what the forecast may say:

- the history is put on the ``step`` grid, so every later stage can count in steps;
- a positive, heavy-tailed series is fitted in log space (forecasts are then
  medians, which is what MAE rewards);
- spikes far outside a rolling median/MAD band are clipped before fitting
  (except on the days of known events), so they bend neither trend nor
  seasonality, but the raw values are kept
  too: spikes will happen again, and the band should say how often;
- a series that was never negative is never forecast negative, and a percent
  or ratio series stays within 0–100 or 0–1;
- a series pinned at its highest or lowest value stays within it, and while it
  sits there, what followed such samples in its history is its forecast.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import bottleneck as bn
import numpy as np

from forecaster.duration import DAY, WEEK
from forecaster.model.band import quantiles_at
from forecaster.model.options import FitSpec

EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_PERCENT_HINT = re.compile(r"percent|pct|utili[sz]ation", re.IGNORECASE)
_RATIO_HINT = re.compile(r"ratio|fraction", re.IGNORECASE)
# A series pinned at its maximum or minimum (see ``pinned_edge``): this share of its samples there, and this many
# times as many as at the next value.
PINNED_SHARE = 0.01
PINNED_OVER_NEXT = 10
# Fewer samples at a pinned edge than this with a value a lead later, and the history cannot say what follows.
HELD_MIN_SAMPLES = 10
# Where the share of samples at a pinned edge differs this much between hours of the day, only those within
# HELD_PHASE of the latest sample's time of day say what follows it.
HELD_DAILY_SPREAD = 0.5
HELD_PHASE = 1800.0


@dataclass(frozen=True)
class Prepared:
    """A history ready to fit, on its step grid and in the space the fit works in."""

    grid: np.ndarray  # step-spaced times from the first to the last sample
    y: np.ndarray  # transformed, outliers clipped; NaN where no sample
    raw: np.ndarray  # transformed, outliers as they were
    transform: str
    offset: float  # log(y + offset)
    clipped: int

    def untransform(self, y: np.ndarray) -> np.ndarray:
        """Values of the fit's space back in the series' own units."""
        if self.transform == "log" and self.offset > 0:
            # expm1 keeps a forecast of exactly the offset (a zero in the data) at exactly zero.
            return np.asarray(self.offset * np.expm1(y - np.log(self.offset)))
        if self.transform == "log":
            return np.asarray(np.exp(y))
        return y


def to_grid(ts: np.ndarray, ys: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Samples on a step grid anchored at the last sample; NaN where there is none, the latest sample wins."""
    index = np.round((ts - ts[-1]) / step).astype(np.int64)
    index -= index[0]
    grid = ts[-1] - step * (index[-1] - np.arange(index[-1] + 1, dtype=np.float64))
    out = np.full(len(grid), np.nan)
    out[index] = ys
    return grid, out


def _skew(y: np.ndarray) -> float:
    sd = float(np.std(y))
    if sd == 0:
        return 0.0
    # Cubed by multiplying: numpy's ``** 3`` calls pow() for each value, twenty times slower, twice in every fit.
    centred = y - np.mean(y)
    return float(np.mean(centred * centred * centred) / sd**3)


def choose_transform(ys: np.ndarray, option: str) -> tuple[str, float]:
    """``log`` for a non-negative series whose log is much less skewed than itself; else ``none``.

    The offset keeps zeros finite: a hundredth of the median of the positive values.
    """
    if option == "none" or ys.min() < 0:
        return "none", 0.0
    positive = ys[ys > 0]
    if len(positive) == 0:
        return "none", 0.0
    offset = 0.0 if ys.min() > 0 else 0.01 * float(np.median(positive))
    if option == "log":
        return "log", offset
    raw = _skew(ys)
    logged = _skew(np.log(ys + offset))
    if raw > 2.0 and abs(logged) < raw / 2:
        return "log", offset
    return "none", 0.0


def clip_outliers(
    y: np.ndarray, step: float, threshold: float, keep: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """Clip points farther than ``threshold`` robust SDs from a centred rolling median.

    The window is six hours (at least 11 points), wide enough that a burst of
    several spiky samples does not become its own median. A local MAD of zero
    (flat stretches) falls back to a tenth of the series' global MAD. Where
    the window holds a whole week (daily data), each point is judged against
    the median plus its weekday's typical departure from it: a weekend that
    differs from the weekdays stood out from their median as a spike does,
    and was clipped every week (see ``weekday_departure``).

    The latest points are judged against the past alone, where a spike and the
    start of a new level look the same; the run of outlying points that
    reaches the end of the history is therefore kept as it is. Points where
    ``keep`` is true (the days of known events) are never clipped: their
    departure is what the event's effect is fitted on.
    """
    window = max(11, round(6 * 3600 / step) | 1)
    centre = centred(bn.move_median, y, window, 3)
    week = round(WEEK / step)
    if 2 <= week <= window:
        centre = centre + weekday_departure(y - centre, week)
    mad = centred(bn.move_median, np.abs(y - centre), window, 3)
    global_mad = float(np.nanmedian(np.abs(y - np.nanmedian(y))))
    scale = 1.4826 * np.maximum(mad, 0.1 * global_mad)
    low, high = centre - threshold * scale, centre + threshold * scale
    valid = np.isfinite(y) & np.isfinite(centre) & (scale > 0)
    outside = valid & ((y < low) | (y > high))
    if keep is not None:
        outside &= ~keep
    for index in np.flatnonzero(np.isfinite(y))[::-1]:
        if not outside[index]:
            break
        outside[index] = False
    out = y.copy()
    out[outside] = np.clip(y[outside], low[outside], high[outside])
    return out, int(outside.sum())


def weekday_departure(departure: np.ndarray, week: int) -> np.ndarray:
    """At each point, the median ``departure`` of all points at the same place in the week (the grid is regular).

    On daily data with weekends at 0.7 of the weekdays, the rolling median
    alone had a fifth of the points clipped (240 of 1,096 over three years),
    and the fitted weekly dip came out far shallower than the data's.
    """
    padded = np.concatenate((departure, np.full(-len(departure) % week, np.nan)))
    typical = np.nan_to_num(bn.nanmedian(padded.reshape(-1, week), axis=0))
    return np.asarray(typical[np.arange(len(departure)) % week])


def centred(move: Callable[..., np.ndarray], values: np.ndarray, window: int, min_count: int) -> np.ndarray:
    """pandas' ``rolling(window, center=True, min_periods=min_count)`` through one of bottleneck's ``move_*``.

    A window centred on each point, cut short at both ends and skipping
    NaN, as pandas places it (an even window reaches one point further
    back than ahead). bottleneck's windows trail their point, so each is
    read ``(window - 1) // 2`` points later, past the end into padding.
    The fit workers do without pandas: importing it took their fork
    server a quarter of a second, which the first fits waited for.
    """
    padded = np.concatenate((np.asarray(values, dtype=np.float64), np.full(window, np.nan)))
    lead = (window - 1) // 2
    return np.asarray(move(padded, window, min_count=min_count)[lead : lead + len(values)])


def prepare(ts: np.ndarray, ys: np.ndarray, spec: FitSpec, transform_option: str | None = None) -> Prepared:
    """The history on its grid, transformed and clipped; ``transform_option`` overrides ``spec.model.transform``."""
    grid, y = to_grid(ts, ys, spec.step)
    transform, offset = choose_transform(ys, transform_option or spec.model.transform)
    if transform == "log":
        y = np.log(y + offset)
    raw, clipped = y, 0
    if spec.model.outliers is not None:
        y, clipped = clip_outliers(y, spec.step, spec.model.outliers, event_days(grid, spec.events))
    return Prepared(grid, y, raw, transform, offset, clipped)


def event_days(grid: np.ndarray, events: Sequence[tuple[str, str, int, int]]) -> np.ndarray | None:
    """Which grid times fall on a day of a known event's window (UTC days, as Prophet counts them); None: no events."""
    if not events:
        return None
    day = np.floor(grid / DAY).astype(np.int64)  # days since the epoch
    marked = np.zeros(len(grid), dtype=bool)
    for _, date, lower, upper in events:
        first = datetime.date.fromisoformat(date).toordinal() - EPOCH_ORDINAL
        marked |= (day >= first + lower) & (day <= first + upper)
    return marked


def bounds(ys: np.ndarray, spec: FitSpec) -> tuple[float | None, float | None]:
    """Clip bounds: configured ones, else (``bounds: auto``) what the data and the name make safe."""
    lower, upper = spec.model.lower, spec.model.upper
    if spec.model.bounds != "auto":
        return lower, upper
    if lower is None and ys.min() >= 0:
        lower = 0.0
    if upper is None and ys.min() >= 0:
        if ys.max() <= 1 and _RATIO_HINT.search(spec.hint):
            upper = 1.0
        elif ys.max() <= 100 and _PERCENT_HINT.search(spec.hint):
            upper = 100.0
    lowest, highest = pinned_edges(ys)
    return (lowest if lower is None else lower), (highest if upper is None else upper)


def held_at_edge(
    values: np.ndarray, edge: float, leads: np.ndarray, width: float, step: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """What followed the history's samples at ``edge`` at each lead (in steps): the share still at the edge, and the
    ``width`` band of the values that followed them; None unless the latest value sits at the edge.

    The values that followed a sample at the edge are the series' own
    distribution given where it is now; the band is their quantiles as
    ``model.band.quantiles_at`` takes errors' (the latest quarter of them,
    the edge's ties moving the other end in). Computed at up to 40
    log-spaced leads and interpolated between them; a lead with fewer than
    ``HELD_MIN_SAMPLES`` samples at the edge that far from the end takes
    the figures of the last lead with enough. ``values`` are on the step
    grid (NaN: no sample).
    """
    at = values == edge
    n = len(values)
    if n < 2 or not at[-1]:
        return None
    starts = np.flatnonzero(at)
    if step < DAY and n * step >= 2 * DAY:
        # A series at the edge at some hours more than others (an office's traffic, at 0 every night) stays there
        # for hours at 22:00 but not at 6:00, and pooled over the night, what followed would say it does: then only
        # the samples at the latest one's time of day say what follows it.
        before = (np.arange(n)[::-1] * step) % DAY
        hours = np.minimum((before // 3600).astype(np.int64), 23)
        sampled = np.isfinite(values)
        share = np.bincount(hours[sampled], at[sampled], 24) / np.maximum(np.bincount(hours[sampled], minlength=24), 1)
        if np.ptp(share) >= HELD_DAILY_SPREAD:
            apart = before[starts]
            starts = starts[np.minimum(apart, DAY - apart) <= HELD_PHASE]
    probe = np.unique(np.round(np.geomspace(1, max(int(leads.max()), 1), 40)).astype(np.int64))
    shares, lows, highs = (np.full(len(probe), np.nan) for _ in range(3))
    for i, lead in enumerate(probe):
        later = values[starts[starts + lead < n] + lead]
        later = later[np.isfinite(later)]
        if len(later) >= HELD_MIN_SAMPLES:
            shares[i] = np.mean(later == edge)
            lows[i], highs[i] = quantiles_at(later, (1 - width) / 2)
    known = np.isfinite(shares)
    if not known.any():
        return None
    lag = np.minimum(leads, probe[known][-1])
    share, low, high = (np.interp(lag, probe[known], curve[known]) for curve in (shares, lows, highs))
    return share, low, high


def pinned_edges(ys: np.ndarray) -> tuple[float | None, float | None]:
    """The history's minimum and maximum where the series is pinned there (see ``pinned_edge``), else None."""
    lowest = pinned_edge(-ys)
    return (None if lowest is None else -lowest), pinned_edge(ys)


def pinned_edge(ys: np.ndarray) -> float | None:
    """The history's maximum where the series is pinned there (a CPU at 100, a pool at its size), else None.

    Pinned: at least ``PINNED_SHARE`` of the samples sit at exactly the
    maximum, ``PINNED_OVER_NEXT`` times as many as at the next value below
    it. A smooth fit of a clipped shape overshoots the clip, and where the
    series sits at it the forecast then errs where ``last_value`` is exact;
    a count that steps between neighbouring values (a replica count
    growing from 4 to 5) is at its maximum about as often as below it, and
    keeps its room to grow. Of ``-ys``, the minimum negated.
    """
    top = float(ys.max())
    at_top = int(np.count_nonzero(ys == top))
    if at_top < PINNED_SHARE * len(ys):
        return None
    below = ys[ys < top]
    at_next = int(np.count_nonzero(below == below.max())) if len(below) else 0
    return top if at_top >= PINNED_OVER_NEXT * at_next else None
