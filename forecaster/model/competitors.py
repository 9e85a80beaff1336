"""The simple competitors of Prophet plus correction: the recent level, and the series a day or a week earlier.

Each is a forecast a PromQL user could write (``last_over_time``, a median
over the last hour, ``offset 1d``), scored at each lead time against Prophet
plus its correction by ``model.correction.lead_errors``, which gives it the
forecast where it would have erred less on the history. Built here, per fit,
from the cleaned series; which of them wins is decided there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from forecaster.duration import DAY, WEEK

# A seasonal copy's past errors count this much more when it competes: one that merely ties on the history swaps a
# smooth forecast for last period's noise and spells (chosen without it, the copy took nyc_taxi's earlier stretch,
# ``--cut 20``, from 0.77 to 1.32 times the best baseline at 1h; with it, 0.72).
COPY_MARGIN = 0.1
# The longer window over which a competitor may take the series' recent level (see ``slower_levels``); on daily data,
# where six hours are no longer than the hour's three points, a week.
SLOW_LEVEL = 6 * 3600.0
SLOW_LEVEL_DAILY = WEEK
# How far ahead the latest sample alone may compete as the level (see ``latest_points``). Replayed on the captured
# inputs of the eight backtest sets of ``benchmarks/backtest.py``, pairs below the best baseline went from 98 to 102
# of 140 with an hour's reach (9 pairs at 1.25 times it or worse, 52 of 70 series calibrated, as before); with half an
# hour 100, with a day 101 (and 10 pairs, 51 calibrated), as with no limit at all.
LATEST_REACH = 3600.0


@dataclass(frozen=True)
class Competitor:
    """A simple forecast: the recent level of ``clipped`` (its median over its ``level_steps``), plus ``ahead``.

    ``raw`` is the same series with its outliers as they were: the errors
    behind the band come from it, since spikes will happen again. ``ahead``
    is added to the level at each frame time (the seasonality that was taken
    out of the series, added back), or 0.
    """

    clipped: np.ndarray
    raw: np.ndarray
    ahead: np.ndarray | float = 0.0
    # The longest lead (in steps) it can forecast with only what was known at the origin; None: any.
    reach: int | None = None
    # Its past errors count (1 + margin) times against the forecast it would replace.
    margin: float = 0.0
    # Its own level window (in steps); None: ``PastErrors.level_steps``.
    level_steps: int | None = None
    # Whether replaying its band on the history may move the band's tails out (see ``model.band.tail_share``).
    replayed: bool = True
    # The lead (in steps) by which the level has faded linearly to nothing; None: it is carried whole at every lead.
    fade: int | None = None

    def gain(self, leads: np.ndarray | int) -> np.ndarray:
        """The share of the level carried at each of ``leads`` (in steps)."""
        if self.fade is None:
            return np.ones(np.shape(leads))
        return np.clip(1 - np.asarray(leads, dtype=np.float64) / self.fade, 0.0, 1.0)

    def carried(self, levels: np.ndarray, lead: int) -> np.ndarray:
        """``levels`` as carried ``lead`` steps ahead: whole, or faded by ``gain`` (scored at every lead of every fit,
        so a copy that does not fade is not multiplied by one)."""
        return levels if self.fade is None else self.gain(lead) * levels


def level_window(step: float, points: int) -> int:
    """The trailing window (in steps) whose median is the series' current level: an hour, at least three points."""
    return max(1, min(max(3, round(3600.0 / step)), points // 4))


def slower_levels(competitors: list[Competitor], step: float, points: int) -> list[Competitor]:
    """The same competitors with their level taken over six hours (a week on daily data) instead of ``level_window``'s
    hour (three points).

    On a noisy series an hour's median is itself noisy, and a day ahead that
    noise is most of the error; six hours smooth it. Each competes like the
    rest, so a series whose level moves within hours keeps the hour.
    """
    steps = min(max(3, round((SLOW_LEVEL if step < DAY else SLOW_LEVEL_DAILY) / step)), points // 4)
    if steps <= level_window(step, points):
        return []
    return [dataclasses.replace(competitor, level_steps=steps) for competitor in competitors]


def latest_points(competitors: list[Competitor], step: float, points: int) -> list[Competitor]:
    """The same competitors with their level the latest sample alone, competing up to ``LATEST_REACH`` ahead.

    An hour's median lags a series that wanders (a machine's temperature, a
    database's CPU): its middle is half an hour old, and over the next few
    steps PromQL's last value errs less. Further ahead, where a single
    sample's noise is most of the error, it would win on the history by
    chance as often as by merit, so it does not compete there. It is scored
    on the history with its spikes clipped, but the run of outlying samples
    that ends the history is kept (it may be a new level: see
    ``model.cleaning``), so where it was chosen, a spike in the very last
    sample carries into the next hour, as it does in ``last_value``.
    """
    if level_window(step, points) <= 1:
        return []
    reach = max(1, round(LATEST_REACH / step))
    return [dataclasses.replace(competitor, level_steps=1, reach=reach) for competitor in competitors]


def seasonal_copies(clipped: np.ndarray, raw: np.ndarray, leads: np.ndarray, step: float) -> list[Competitor]:
    """The series one day and one week earlier, moved by how far its recent level has moved since: ``offset 1d/1w``.

    A PromQL user compares the forecast with these copies; a daily or weekly
    shape sharper than Prophet's Fourier terms (a morning ramp, a weekend
    that differs from a weekday) is one the copy keeps exactly. Each copy is
    a competitor of differences from the lagged series, so its level is how
    far the series has moved from a period ago and ``ahead`` is the lagged
    series itself at each frame lead (the latest period again beyond one
    period, where the copy does not compete: ``reach``). A period needs two
    of them in the history to be scored.

    The day copy's move fades linearly over the day (``fade``): a day ahead
    it is ``offset 1d`` itself. How far today differs from yesterday at
    this hour is mostly today's weather or load, which is over by tomorrow;
    carried whole to tomorrow it counts that difference twice. The week
    copy keeps its move: a week's growth stays. Replayed on the captured
    inputs of the eleven backtest sets of ``benchmarks/backtest.py``, pairs
    below the best baseline went from 151 to 153 of 190 and pairs at 1.25
    times it or worse from 10 to 8 (yosemite's temperatures a day ahead
    1.23 to 0.94 times ``offset_1d`` with 4 origins); fading the week copy
    too, 153 / 9, and the play-offs' band with 6 origins covered 71 → 69%.

    A copy's band is not widened by replaying it: its errors at one lead move
    together for days (a spell of weather shifts a whole week against the
    last), so the replay's stretches hold only a few independent spells, and
    any shortfall among them pushed the tails out to the 1.5% quantiles a
    day ahead on the demand stand-in of ``benchmarks/backtest.py``, which
    the band then covered 93-98% of.
    """
    n = len(clipped)
    # A gap in the copied period is bridged by the sample before it, so the forecast has a value at every lead
    # (pandas' ffill().bfill(), without pandas in the fit workers).
    known = ~np.isnan(clipped)
    filled = clipped.copy()
    if known.any():
        before = np.maximum.accumulate(np.where(known, np.arange(n), -1))
        filled = clipped[np.where(before < 0, np.argmax(known), before)]
    copies = []
    for seconds in (DAY, WEEK):
        period = round(seconds / step)
        if period < 2 or n < 2 * period:
            continue
        lagged = np.concatenate((np.full(period, np.nan), clipped[:-period]))
        back = n - period + (leads - 1) % period
        fade = period if seconds == DAY else None
        copies.append(
            Competitor(
                clipped - lagged,
                raw - lagged,
                filled[back],
                reach=period,
                margin=COPY_MARGIN,
                replayed=False,
                fade=fade,
            )
        )
    return copies
