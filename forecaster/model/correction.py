"""Where the series is now: the residual carried into the forecast, and the recent level as a competitor.

Prophet has no memory of where the series is right now. Three decisions,
each scored on the history exactly as the band is (errors of forecasts made
from each past point with only what was known there):

- the median residual over a trailing window is carried into the forecast,
  whole or not at all, at the lead times where carrying it would have erred
  less (after a level shift, say); a fractional gain fitted on the history
  looks better there than it does in the forecast;
- a shift beyond any the history showed is carried forward whole
  (``new_level``), since the history cannot say when it ends;
- simple competitors (the recent level of the series, with or without its
  seasonality, and the series a day or a week earlier moved to its recent
  level: ``model.competitors``) take over at the lead times where they would
  have erred less than Prophet plus correction; half of each lead's forecast
  is the one chosen, the other half every candidate weighted to minimise
  the history's absolute errors (``combination_weights``).

``lead_errors`` makes all three choices per lead time and returns, with them,
the band's offsets around the forecast (see ``model.band``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bottleneck as bn
import numpy as np

from forecaster.duration import DAY, WEEK
from forecaster.model.band import band_tail, quantiles_at, year_before
from forecaster.model.combination import combination_weights
from forecaster.model.competitors import Competitor

# The share of each lead's forecast given to the weighted combination of every candidate, the rest going to the one
# chosen. A choice by the history's mean error is brittle where two candidates are close and the future favours the
# other; the combination hedges it. Replayed on the captured inputs of the eight backtest sets of
# ``benchmarks/backtest.py`` (public files at 4, 6 and 8 origins, three earlier stretches, two synthetic sets), pairs
# 1.25 times the best baseline or worse fell from 13 to 9 and pairs beating it rose from 96 to 98 of 140 at 0.5; the
# combination alone (1.0) made 94 and 9, and its own errors' quantiles under-covered (52 of 70 series calibrated).
COMBINED_SHARE = 0.5
# Fewer rows with every candidate's error than this, and the lead keeps the one chosen.
COMBINED_MIN_ERRORS = 50
# How long a fit's choices among corrections and competitors, and its band's tails, serve the fits after it.
REUSE = DAY


@dataclass(frozen=True)
class PastErrors:
    """What the history says about forecasts made from each of its points.

    ``residuals`` are measured from a trend known at each point (see
    ``model.trend.trailing_line``), and ``surprise(k)`` says how far that
    trend moved from its extrapolation k steps later (see
    ``model.trend.trend_surprise``): together, the errors of a forecast made at
    each past point. ``outcomes`` are the same residuals of the data before
    outliers were clipped (None: ``residuals``). ``windows`` are the trailing
    windows (in steps) whose median residual may be carried; ``correct``
    turns carrying off. A carried correction is returned plus
    ``line_offset``, the residuals' reference minus the forecast's at the
    origin.
    """

    residuals: np.ndarray
    windows: list[int]
    correct: bool
    outcomes: np.ndarray | None = None
    surprise: Callable[[int], np.ndarray] | None = None
    competitors: list[Competitor] = field(default_factory=list)
    level_steps: int = 3
    line_offset: float = 0.0
    # A year in steps, for the band's errors of the season ahead (see ``model.band.year_before``); None: none.
    year: int | None = None


@dataclass(frozen=True)
class LeadPlan:
    """Per frame lead: the correction to add, the band's offsets, and each competitor's share of the forecast."""

    correction: np.ndarray
    low: np.ndarray
    high: np.ndarray
    shares: np.ndarray  # (competitors, leads): set at the probed leads, interpolated between them
    calibration: Calibration


@dataclass(frozen=True)
class Calibration:
    """What ``lead_errors`` chose at each probed lead, kept with the fit's parameters for the next fit.

    Scoring every correction window and competitor on the replayed history,
    and replaying the band to set its tails, is most of a warm fit's time
    outside Stan (76 of 207 ms on a 14-day 5-minute series, profiled in
    process). A later fit within ``REUSE`` of the one that chose, among the
    same windows and competitors (``signature``) at the same leads, keeps the
    choices and tails and takes only the latest errors' quantiles anew: its
    band follows the newest data, and its choices are renewed once a day.
    """

    at: float
    probe: list[int]
    signature: list[float]
    anchors: list[int]  # the carried correction's window in steps; 0: none
    chosen: list[int]  # the competitor that took over; -1: none
    tails: list[float]
    mixes: list[list[float]]  # each competitor's share of the forecast
    scales: list[float]  # the band's scale: the mixed forecast's past absolute error over the chosen one's

    def applies(self, at: float, probe: np.ndarray, signature: list[float], past: PastErrors) -> bool:
        """Whether a fit at ``at`` may keep these choices: made less than ``REUSE`` before, among the same options."""
        return (
            0 <= at - self.at < REUSE
            and self.probe == probe.tolist()
            and self.signature == signature
            and all(window == 0 or window in past.windows for window in self.anchors)
            and all(-1 <= chosen < len(past.competitors) for chosen in self.chosen)
            and all(len(mix) == len(past.competitors) for mix in self.mixes)
        )

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict, which deep-copies every number: a quarter of a millisecond a fit.
        return {name: list(value) if isinstance(value, list) else value for name, value in vars(self).items()}

    @classmethod
    def from_json(cls, data: Any) -> Calibration | None:
        """The calibration a state file kept, or None when it is missing or not one this code wrote."""
        try:
            calibration = cls(
                float(data["at"]),
                [int(v) for v in data["probe"]],
                [float(v) for v in data["signature"]],
                [int(v) for v in data["anchors"]],
                [int(v) for v in data["chosen"]],
                [float(v) for v in data["tails"]],
                [[float(v) for v in mix] for mix in data["mixes"]],
                [float(v) for v in data["scales"]],
            )
        except (KeyError, TypeError, ValueError):
            return None
        lengths = {len(calibration.probe), len(calibration.anchors), len(calibration.chosen), len(calibration.tails)}
        lengths |= {len(calibration.mixes), len(calibration.scales)}
        return calibration if len(lengths) == 1 else None


def anchor_windows(step: float, points: int) -> list[int]:
    """Trailing windows (in steps) whose median residual may carry into the forecast: three points to a day, or to a
    week on daily data.

    Never a single point on sub-hourly data, where the last sample may be a spike. On daily data an hour, six hours
    and a day are all the latest point, which left one and three points; a week's median follows a level that has
    moved over days without one day's noise (replayed on ten earlier stretches of the daily page views, with the
    week's level of ``competitors.slower_levels``: pairs below the best baseline 12 to 16 of 20).
    """
    longest = DAY if step < DAY else WEEK
    sizes = {3} | {max(1, round(seconds / step)) for seconds in (3600.0, 6 * 3600.0, longest)}
    # A history of fewer than 12 points (min_points allows 3) has room for the latest point alone.
    return sorted(size for size in sizes if size <= max(1, points // 4)) or [1]


def new_level(residuals: np.ndarray, window: int) -> float | None:
    """The latest median residual when it lies beyond every earlier one: a level the history never showed.

    Gains fitted on the history cannot know how long such a shift lasts, so
    it is carried forward whole, as a step change in a level is.
    """
    anchor = trailing_median(residuals, window)
    latest, before = anchor[-1], anchor[: len(anchor) - window]
    before = before[np.isfinite(before)]
    if not np.isfinite(latest) or len(before) == 0 or abs(latest) <= float(np.max(np.abs(before))):
        return None
    return float(latest)


def trailing_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median of the finite values among the last ``window`` at each index; NaN when there are none."""
    if len(values) == 0:
        return np.array([], dtype=np.float64)
    # A window longer than the values holds all of them so far, as pandas' rolling median with min_periods=1 does.
    return np.asarray(bn.move_median(np.asarray(values, dtype=np.float64), min(window, len(values)), min_count=1))


def lead_errors(
    past: PastErrors, leads: np.ndarray, width: float, at: float = 0.0, reuse: Calibration | None = None
) -> LeadPlan:
    """For each lead (in steps): the correction to carry, the band around the forecast, the competitors' shares.

    For each lead the correction is the window (or none) with the smallest
    error in the history; each competitor then competes with Prophet plus
    that correction and wins where it would have erred less (by its
    ``margin``), up to its ``reach``. The band is the empirical quantiles of
    the winner's own errors at that lead (see ``model.band.quantiles``);
    the forecast is ``COMBINED_SHARE`` the combination of every candidate
    (see ``combination_weights``), the rest the winner, and the band is
    shrunk to the size of that mixed forecast's past errors (see ``_mix``).
    Computed at up to 40 log-spaced leads and each competitor's reach, and
    interpolated between them.

    A fit at time ``at`` given the ``reuse`` of an earlier one keeps its
    choices and tails if they still apply (see ``Calibration.applies``) and
    takes only the quantiles of the latest errors anew.
    """
    residuals = past.residuals
    unique = np.unique(leads)
    probe = np.unique(np.round(np.geomspace(unique[0], unique[-1], min(len(unique), 40))).astype(np.int64))
    # A competitor's last lead and the next are probed too, so that it hands over there rather than fading out.
    reaches = [c.reach + i for c in past.competitors if c.reach is not None for i in (0, 1)]
    probe = np.union1d(probe, [r for r in reaches if unique[0] <= r <= unique[-1]]).astype(np.int64)
    signature = _signature(past, width)
    if reuse is not None and not reuse.applies(at, probe, signature, past):
        reuse = None
    n = len(residuals)
    raw = residuals if past.outcomes is None else past.outcomes
    competitors = past.competitors
    # Keeping an earlier fit's choices needs the rolling medians of only the windows and competitors it chose.
    windows = past.windows if reuse is None else sorted(set(past.windows) & set(reuse.anchors))
    anchors = {m: trailing_median(residuals, m) for m in windows}
    used = range(len(competitors)) if reuse is None else set(reuse.chosen)
    levels = [
        trailing_median(c.clipped, c.level_steps or past.level_steps) if j in used else np.empty(0)
        for j, c in enumerate(competitors)
    ]
    shares = np.zeros((len(competitors), len(probe)))
    corrections = np.zeros(len(probe))
    lows = np.zeros(len(probe))
    highs = np.zeros(len(probe))
    chosen_anchors = np.zeros(len(probe), dtype=np.int64)
    chosen_competitors = np.full(len(probe), -1, dtype=np.int64)
    tails = np.zeros(len(probe))
    mixes: list[list[float]] = [[0.0] * len(competitors) for _ in probe]
    scales = np.ones(len(probe))
    alpha = (1 - width) / 2
    for i, k in enumerate(probe):
        drift = past.surprise(int(k)) if past.surprise is not None and k < n - 10 else 0.0
        later_all, outcome_all = residuals[k:] + drift, raw[k:] + drift
        known = np.isfinite(later_all)
        if k >= n - 10 or np.count_nonzero(known) <= 10:
            # Too few errors at this lead (a short or gappy history): the spread of all residuals is the best guess.
            errors = raw[np.isfinite(raw)]
            tails[i] = reuse.tails[i] if reuse is not None else band_tail(errors, alpha, int(k))
            lows[i], highs[i] = quantiles_at(errors, float(tails[i]))
            continue
        if reuse is not None:
            best_window, chosen = reuse.anchors[i], reuse.chosen[i]
            mixes[i], scales[i] = reuse.mixes[i], reuse.scales[i]
        else:
            best_window, chosen, scored = _choose(past, anchors, levels, int(k), later_all, known)
            mixes[i], scales[i] = _mix(scored, chosen, len(competitors))
        chosen_anchors[i], chosen_competitors[i] = best_window, chosen
        shares[:, i] = mixes[i]
        if best_window:
            # Prophet keeps a share of the forecast even where a competitor was chosen: carry its correction there too.
            latest = anchors[best_window][np.isfinite(anchors[best_window])]
            corrections[i] = float(latest[-1]) + past.line_offset if len(latest) else 0.0
        # The chosen forecast's error from each past origin, NaN where unknown.
        if chosen >= 0:
            aligned = competitors[chosen].raw[k:] - competitors[chosen].carried(levels[chosen][: n - k], int(k))
            replayed = competitors[chosen].replayed
        else:
            aligned = outcome_all if best_window == 0 else outcome_all - anchors[best_window][: n - k]
            replayed = True
        errors = aligned[np.isfinite(aligned)]
        season = year_before(aligned, errors, past.year)
        tails[i] = reuse.tails[i] if reuse is not None else band_tail(errors, alpha, int(k), replayed)
        lows[i], highs[i] = (scales[i] * offset for offset in quantiles_at(errors, float(tails[i]), season))
    calibration = reuse or Calibration(
        at,
        probe.tolist(),
        signature,
        chosen_anchors.tolist(),
        chosen_competitors.tolist(),
        tails.tolist(),
        mixes,
        scales.tolist(),
    )
    return LeadPlan(
        np.interp(leads, probe, corrections),
        np.interp(leads, probe, lows),
        np.interp(leads, probe, highs),
        np.array([np.interp(leads, probe, share) for share in shares]).reshape(len(shares), len(leads)),
        calibration,
    )


def _choose(
    past: PastErrors,
    anchors: dict[int, np.ndarray],
    levels: list[np.ndarray],
    k: int,
    later: np.ndarray,
    known: np.ndarray,
) -> tuple[int, int, dict[int, np.ndarray]]:
    """At lead k: the correction window that would have erred least (0: none), and the competitor that beats it (-1).

    Also returns the errors each candidate was scored on, by competitor
    (-1: Prophet plus the chosen correction), NaN where unknown.
    """
    n = len(past.residuals)
    best_score, best_window = _mean_abs(later[known]), 0
    scored = {-1: later}
    for window, anchor in anchors.items() if past.correct else ():
        # ``later`` is finite where ``known``: the difference is finite where both are.
        difference = later - anchor[: n - k]
        pair = np.isfinite(difference)
        if np.count_nonzero(pair) <= 10:
            continue
        score = _mean_abs(difference[pair])
        if score < best_score:
            best_score, best_window, scored[-1] = score, window, difference
    chosen = -1
    for j, (competitor, level) in enumerate(zip(past.competitors, levels, strict=True)):
        if competitor.reach is not None and k > competitor.reach:
            continue
        persistence = competitor.clipped[k:] - competitor.carried(level[: n - k], k)
        scored[j] = persistence
        usable = np.isfinite(persistence)
        score = _mean_abs(persistence[usable]) if np.count_nonzero(usable) > 10 else np.inf
        score *= 1 + competitor.margin
        if score < best_score:
            best_score, chosen = score, j
    return best_window, chosen, scored


def _mix(scored: dict[int, np.ndarray], chosen: int, count: int) -> tuple[list[float], float]:
    """Each of ``count`` competitors' share of the forecast (the chosen one's, hedged by the combination of all), and
    the band's scale.

    ``scored`` holds the errors ``_choose`` scored each candidate on (-1:
    Prophet plus its chosen correction); Prophet's share is what the
    competitors leave. The band is the chosen candidate's errors' quantiles
    (their shape, and the replay that set their tails), shrunk to the size
    of the errors the mixed forecast made on the history: its mean absolute
    error over the chosen one's. Unshrunk, the band sat around a
    forecast that erred less than the one it was measured on, and covered
    91-92% of what followed on yosemite and ``nab_ec2_cpu_utilization_825cc2``.
    """
    mix = np.zeros(count + 1)
    mix[chosen + 1] = 1.0
    members = list(scored)
    errors = np.stack([scored[member] for member in members])
    errors = errors[:, np.isfinite(errors).all(axis=0)]
    if len(members) <= 1 or errors.shape[1] < COMBINED_MIN_ERRORS:
        return [float(share) for share in mix[1:]], 1.0
    weights = combination_weights(errors)
    alone = _mean_abs(errors[members.index(chosen)])
    # Reweighted least squares only approaches the least absolute error; where it ends above the chosen one's (a
    # series at 0 but for rare spikes, whose exact 0 only the chosen recent level keeps), the choice stands.
    if _mean_abs(weights @ errors) >= alone:
        return [float(share) for share in mix[1:]], 1.0
    rows = np.array(members) + 1
    mix *= 1 - COMBINED_SHARE
    mix[rows] += COMBINED_SHARE * weights
    # Below 1: the mixed forecast is a weighted mean of the chosen one and a combination that erred less.
    return [float(share) for share in mix[1:]], _mean_abs(mix[rows] @ errors) / alone


def _mean_abs(values: np.ndarray) -> float:
    """``np.mean(np.abs(values))`` to the bit (the same pairwise sum) without its checks: ten calls per lead."""
    return float(np.add.reduce(np.abs(values)) / len(values))


def _signature(past: PastErrors, width: float) -> list[float]:
    """What the choices were made among: the band's width, the correction windows, each competitor's kind."""
    kinds = [
        value
        for c in past.competitors
        for value in (
            -1.0 if c.reach is None else float(c.reach),
            float(c.level_steps or 0),
            c.margin,
            float(c.fade or 0),
        )
    ]
    return [width, float(past.correct), *map(float, past.windows), float(past.level_steps), *kinds]
