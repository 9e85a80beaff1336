"""The band: which quantiles of a predictor's past errors bound its next ones.

Decides how wide the band is at each lead time. The errors are those the
predictor would have made from each past point of the history with only
what was known there (see ``model.trend.trailing_line``); the band is their
empirical quantiles over the latest quarter of the history, because
volatility drifts and, as in conformal calibration, the latest errors say
best how wide the next ones will be. Whether a quarter is enough is itself
checked by replaying the band on the history (``tail_share``): where it would
have under-covered, its tails move out. A history longer than a year adds
the errors of the same season a year earlier (``year_before``). No
sampling, and it covers about ``interval_width`` of what follows.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# The band is calibrated on the errors of the latest 1/RECENT_SHARE of the history.
RECENT_SHARE = 4
# How many stretches of the history replay the band, and the tail shares (times alpha) it may move out to.
CHECKS = 12
TAIL_FACTORS = (1.0, 0.75, 0.5, 0.3, 0.15)


def quantiles(errors: np.ndarray, alpha: float, lead: int, replayed: bool = True) -> tuple[float, float]:
    """The band's offsets: quantiles of the errors from the latest quarter of the history (at least 20).

    Volatility drifts; as in conformal calibration, the errors made most
    recently say best how wide the next ones will be. How far out to go in
    the tails is itself checked on the history (see ``tail_share``) unless
    ``replayed`` is false: then the tails stay at ``alpha``.
    """
    return quantiles_at(errors, band_tail(errors, alpha, lead, replayed))


def band_tail(errors: np.ndarray, alpha: float, lead: int, replayed: bool = True) -> float:
    """The share of errors the band leaves out on each side: ``alpha``, or further out where the replay says so."""
    return tail_share(errors, alpha, lead, _window(errors)) if replayed else alpha


def quantiles_at(errors: np.ndarray, tail: float, season: np.ndarray | None = None) -> tuple[float, float]:
    """The ``tail`` and ``1 - tail`` quantiles of the latest quarter of the errors (at least 20) and the ``season``'s
    (see ``year_before``), the one edge moved in where errors tied at the other took more than its ``tail``.

    ``np.quantile``'s linear interpolation, to the bit: the band takes
    these at every probed lead of every fit, and ``np.quantile``'s own checks
    cost more than the ranking. The window is sorted rather than partitioned
    at the four ranks: numpy's vectorised sort took 7-8 us on a fit's
    1,000-error windows, the partition 23-26. The two positions and their
    interpolation are a few scalars, done in Python's floats (the same IEEE
    doubles) rather than numpy calls on 2-element arrays.
    """
    recent = errors[-_window(errors) :]
    ranked = np.sort(recent if season is None or not len(season) else np.concatenate((recent, season)))
    low, high = _quantile(ranked, tail), _quantile(ranked, 1 - tail)
    size = len(ranked)
    # Errors tied at an edge (a series at exactly 0 but for bursts, and a forecast of 0) are all inside the band, so
    # the other edge moves in by the share they took beyond ``tail``: the band then covers ``1 - 2 tail`` of them.
    taken_low = tail - int(np.searchsorted(ranked, low, "left")) / size
    taken_high = tail - (size - int(np.searchsorted(ranked, high, "right"))) / size
    if taken_low > 1 / size:
        high = max(low, _quantile(ranked, 1 - tail - taken_low))
    if taken_high > 1 / size:
        low = min(high, _quantile(ranked, tail + taken_high))
    return low, high


def year_before(aligned: np.ndarray, errors: np.ndarray, year: int | None) -> np.ndarray:
    """The errors of the forecasts whose targets fell a year before the frame's: the season about to come, as it went
    last time.

    ``aligned`` holds an error per origin of the history (NaN where
    unknown), its last the latest origin whose target is known, and
    ``errors`` its finite ones; ``year`` is a year in steps (None: no
    season). The stretch is half as long as the band's window over
    ``errors``. A band calibrated on the latest quarter alone has not
    seen the season ahead when it differs from the last three months (page
    views through the play-offs, heating through the winter): on the daily
    stand-ins of ``benchmarks/backtest.py`` (two to three years each) the
    series calibrated went from 15 to 17 of 25, and the play-offs' band on
    an earlier stretch (``--cut 20``) covered 68 → 71%. Empty when the
    history holds less than a year and that stretch.
    """
    count = _window(errors) // 2
    if year is None or len(aligned) < year + count:
        return np.empty(0)
    stretch = aligned[len(aligned) - year : len(aligned) - year + count]
    return np.asarray(stretch[np.isfinite(stretch)])


def _quantile(ranked: np.ndarray, level: float) -> float:
    """``np.quantile(ranked, level)`` of values already sorted."""
    at = level * (len(ranked) - 1)
    rank = math.floor(at)
    return _lerp(float(ranked[rank]), float(ranked[min(rank + 1, len(ranked) - 1)]), at - rank)


def _window(errors: np.ndarray) -> int:
    return max(len(errors) // RECENT_SHARE, 20)


def tail_share(errors: np.ndarray, alpha: float, lead: int, window: int) -> float:
    """The share of errors to leave out on each side so that the band would have covered ``1 - 2 alpha``.

    Replays the band on the history: at each of up to ``CHECKS`` points it
    takes the quantiles of the ``window`` errors known by then (an error at
    lead k is known k steps after its origin) and counts how many of the
    errors that followed fell inside. Where the spread of errors changed
    from one stretch of the history to the next (weather, holidays, bursts
    of load), the latest window alone under-covers, and the tails move out
    to the first of ``TAIL_FACTORS`` that would have covered enough. Any
    shortfall counts: the errors are those of forecasts made from the past
    (see ``trailing_line``), so the replay is not flattered, and a band one
    step too wide on a steady series (85% for 80%) costs less than one that
    under-covers a changing one. The band is never narrowed this way.
    """
    start = window + lead
    if len(errors) < start + window:
        return alpha
    tails = np.array([alpha * factor for factor in TAIL_FACTORS])
    bounds = np.linspace(start, len(errors), CHECKS + 1).astype(np.int64)
    windows = sliding_window_view(errors, window)[bounds[:-1] - lead - window]
    low, high = _window_quantiles(windows, tails)
    # Each later error against the band of the check it falls in: within a check's sorted stretch, a band's
    # count is where its edges would be inserted.
    inside = np.zeros(len(tails), dtype=np.int64)
    for check, stretch in enumerate(np.split(errors[start:], bounds[1:-1] - start)):
        ranked = np.sort(stretch)
        inside += np.searchsorted(ranked, high[check], "right") - np.searchsorted(ranked, low[check], "left")
    covered = inside / (len(errors) - start)
    enough = np.flatnonzero(covered >= 1 - 2 * alpha)
    return float(tails[enough[0]] if len(enough) else tails[-1])


def _window_quantiles(rows: np.ndarray, tails: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``tails`` and ``1 - tails`` quantiles (rows x tails each), linearly interpolated between ranks, the
    edges moved for ties as in ``quantiles_at``.

    Each row is sorted: numpy's vectorised sort beats a partition at the
    twenty-odd ranks the quantiles need (12 rows of 1,000 errors, 34 times a
    cold fit).
    """
    size = rows.shape[1]
    positions, below, above = _ranks(np.concatenate((tails, 1 - tails)), size)
    ranked = np.sort(rows, axis=1)
    under, over = ranked[:, below], ranked[:, above]
    quantiles = under + (positions - below) * (over - under)
    count = len(tails)
    low, high = quantiles[:, :count], quantiles[:, count:]
    # As in ``quantiles_at``: errors tied at one edge move the other in. An edge can only have taken more than its
    # share where the rank before it holds the same value, which continuous errors never do: checked first, since
    # counting every row's errors below each edge tripled the replay's time.
    before, after = np.maximum(below[:count] - 1, 0), np.minimum(above[count:] + 1, size - 1)
    if not ((ranked[:, before] == low).any() or (ranked[:, after] == high).any()):
        return low, high
    below_low = np.array([np.searchsorted(row, edge, "left") for row, edge in zip(ranked, low, strict=True)])
    above_high = size - np.array([np.searchsorted(row, edge, "right") for row, edge in zip(ranked, high, strict=True)])
    taken_low, taken_high = tails - below_low / size, tails - above_high / size
    high = np.where(taken_low > 1 / size, np.maximum(low, _rows_quantile(ranked, 1 - tails - taken_low)), high)
    low = np.where(taken_high > 1 / size, np.minimum(high, _rows_quantile(ranked, tails + taken_high)), low)
    return low, high


def _rows_quantile(ranked: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Each sorted row's quantile at its own levels (rows x levels), linearly interpolated between ranks."""
    positions, below, above = _ranks(np.clip(levels, 0.0, 1.0), ranked.shape[1])
    under, over = np.take_along_axis(ranked, below, axis=1), np.take_along_axis(ranked, above, axis=1)
    return np.asarray(under + (positions - below) * (over - under))


def _ranks(levels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each quantile level falls among ``size`` sorted values: its fractional position, the ranks either side."""
    positions = levels * (size - 1)
    below = np.floor(positions).astype(np.int64)
    return positions, below, np.minimum(below + 1, size - 1)


def _lerp(a: float, b: float, t: float) -> float:
    """``np.quantile``'s interpolation between neighbouring ranks, from whichever end is nearer (numpy's ``_lerp``)."""
    difference = b - a
    return b - difference * (1 - t) if t >= 0.5 else a + difference * t
