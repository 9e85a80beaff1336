"""Which seasonalities a series gets, and Prophet's options around them.

Decided from the history, never Prophet's ``auto``, so that warm starts see
the same shapes every time: daily with two days of sub-daily samples, weekly
with two weeks, yearly with two years. On sub-daily data weekly terms are
kept only when they carry from one week to the next (``weekly_order``): with
two to four weeks of history they otherwise memorise each day of the week,
and a wandering level or a spell of weather becomes a "weekly pattern" that
the next week does not repeat. A short history also gets a stiffer trend.
Any ``prophet:`` option the user set wins over these.
"""

from __future__ import annotations

import itertools
from typing import Any

import bottleneck as bn
import numpy as np

from forecaster.duration import DAY, WEEK
from forecaster.model.cleaning import Prepared, centred
from forecaster.model.options import FitSpec

YEAR = 365.25 * DAY

# The weekly Fourier orders ``weekly_order`` chooses among: none, Prophet's default, and up to twice a day.
WEEKLY_ORDERS = (0, 3, 14)
# How much better (in held-out absolute error) more weekly terms must predict to be chosen (see ``weekly_order``).
WEEKLY_MARGIN = 0.02
# How long a fit's weekly order serves the retrains after it, as the band's choices do (``correction.REUSE``).
WEEKLY_REUSE = DAY
# How much better (in held-out absolute error) log space must predict left-out weeks to be chosen
# (``scales_with_level``). The daily page views, already in log units, predicted 4% better in log space, and fitted
# there their band covered less (71 -> 69% with 6 origins); the daily stand-ins whose shapes scale with their level
# predicted 9-23% better.
LOG_MARGIN = 0.05


def seasonalities(span: float, step: float) -> dict[str, bool | int]:
    """Daily with two days of sub-daily data, weekly with two weeks, yearly with two years.

    On sub-daily data the weekly terms go up to twice a day (order 14), so a
    weekend's daily shape may differ from a weekday's.
    """
    # n samples cover n steps: a "2d" history is two days even though its first and last sample are 2d - step apart.
    covered = span + step
    weekly = covered >= 2 * WEEK
    return {
        "daily_seasonality": covered >= 2 * DAY and step < DAY,
        "weekly_seasonality": 14 if weekly and step < DAY else weekly,
        "yearly_seasonality": covered >= 2 * YEAR,
    }


def fourier(times: np.ndarray, period: float, order: int) -> np.ndarray:
    """Prophet's seasonal features: sin and cos of the first ``order`` harmonics of ``period``."""
    angle = (2 * np.pi / period) * times[:, None] * np.arange(1, order + 1)[None, :]
    return np.hstack((np.sin(angle), np.cos(angle)))


def weekly_order(grid: np.ndarray, y: np.ndarray, step: float) -> int:
    """The weekly Fourier order (0, 3 or 14) that best predicts weeks the fit did not see.

    With two to four weeks of history, Prophet's weekly terms can memorise
    each day of the week: a wandering level or a spell of weather is then
    fitted as a "weekly pattern" that the next week does not repeat, and the
    in-sample errors behind the band look far better than the forecast will
    be. So each whole week is left out in turn, daily terms alone or with
    weekly ones are fitted by least squares on the other weeks, and the
    order whose predictions of the left-out weeks err least wins; 0 when a
    weekly pattern does not carry from one week to the next. A higher order
    must err at least ``WEEKLY_MARGIN`` less: on a weekly wave, orders 3
    and 14 predict left-out weeks within about 1% of each other, and the
    extra terms then fit noise (next-day MAE 13% worse in
    ``benchmarks/throughput.py``'s series). The series is
    first detrended by its centred one-week moving average, which removes
    the level's wander but keeps every weekly and daily shape (bottleneck's
    mean, which differs from pandas' compensated one in the last bits only:
    far below the margin that decides).
    """
    week = round(WEEK / step)
    detrended = y - centred(bn.move_mean, y, week, week // 2)
    known = np.isfinite(detrended)
    features = np.hstack((np.ones((len(grid), 1)), fourier(grid, DAY, 4), fourier(grid, WEEK, 14)))[known]
    target = detrended[known]
    fold = np.floor((grid[-1] - grid[known]) / WEEK).astype(np.int64)
    folds = np.unique(fold)
    if len(folds) < 2:
        return 14
    # Normal equations per fold, so each left-out fit is a small solve rather than a pass over the data.
    gram, moment, runs = _fold_equations(features, target, fold)
    daily_columns = 1 + 2 * 4
    errors = {}
    for order in WEEKLY_ORDERS:
        # fourier() puts the sines first: order k keeps the sin and cos of harmonics 1..k.
        columns = np.r_[
            0:daily_columns, daily_columns : daily_columns + order, daily_columns + 14 : daily_columns + 14 + order
        ]
        predicted = _left_out_predictions(
            features[:, columns], gram[:, columns][:, :, columns], moment[:, columns], runs
        )
        errors[order] = float(np.abs(target - predicted).sum())
    # More terms must earn their place: within WEEKLY_MARGIN of the best, the fewest terms win.
    best = min(errors.values())
    return min(order for order, error in errors.items() if error <= best * (1 + WEEKLY_MARGIN))


def scales_with_level(prepared: Prepared, spec: FitSpec) -> bool:
    """``transform: auto`` on daily data: whether the weekly and yearly shapes scale with the level (fit in log space).

    A daily count (users, orders, sales) usually has weekends and seasons
    that are a share of its level, not a fixed amount: as it grows or
    steps up, Prophet's additive terms fit the shapes of the history's
    average level and miss the current one. Log space makes such shapes
    additive. Each whole week is left out in turn, the weekly and yearly
    terms are fitted by least squares on the others, on the series and
    on its log (each detrended by its centred one-week moving average),
    and log space is chosen when its predictions of the left-out weeks,
    back in the series' units, err ``LOG_MARGIN`` less. Sub-daily data
    keeps its space: there it chose log for a spiky series and for the
    half-hourly demand stand-in of ``benchmarks/backtest.py`` and lost on
    both.
    """
    y = prepared.y
    known = np.isfinite(y)
    if spec.model.transform != "auto" or prepared.transform != "none" or spec.step < DAY or known.sum() < 28:
        return False
    if float(np.min(y[known])) <= 0:
        return False
    grid = prepared.grid
    span = float(grid[-1] - grid[0])
    week = round(WEEK / spec.step)
    columns = [np.ones((len(grid), 1)), fourier(grid, WEEK, 3)]
    if span >= 2 * YEAR:
        columns.append(fourier(grid, YEAR, 10))
    features = np.hstack(columns)
    fold = np.floor((grid[-1] - grid) / WEEK).astype(np.int64)
    errors = []
    for logged, values in enumerate((y, np.log(y))):
        trend = centred(bn.move_mean, values, week, week // 2)
        rows = np.isfinite(values - trend)
        gram, moment, runs = _fold_equations(features[rows], (values - trend)[rows], fold[rows])
        predicted = _left_out_predictions(features[rows], gram, moment, runs) + trend[rows]
        back = np.exp(predicted) if logged else predicted
        errors.append(float(np.abs(y[rows] - back).sum()))
    return errors[1] < (1 - LOG_MARGIN) * errors[0]


def _fold_equations(
    features: np.ndarray, target: np.ndarray, fold: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Per fold, its rows' normal equations (X'X and X'y), and its rows (start, end).

    A fold is a run of consecutive rows: a week of a time-ordered grid.
    """
    bounds = np.flatnonzero(np.r_[True, fold[1:] != fold[:-1], True])
    runs = [(int(start), int(end)) for start, end in itertools.pairwise(bounds)]
    gram = np.stack([features[start:end].T @ features[start:end] for start, end in runs])
    moment = np.stack([features[start:end].T @ target[start:end] for start, end in runs])
    return gram, moment, runs


def _left_out_predictions(
    features: np.ndarray, gram: np.ndarray, moment: np.ndarray, runs: list[tuple[int, int]]
) -> np.ndarray:
    """Each fold's rows predicted by least squares on every other fold, all folds solved at once.

    One ``lstsq`` per fold took 49 ms on three years of daily data (157
    folds), as long as the fit itself.
    """
    left_in, right = gram.sum(axis=0) - gram, moment.sum(axis=0) - moment
    try:
        beta = np.linalg.solve(left_in, right[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        # Terms that the other folds cannot tell apart (too short a history for them): the least-norm solution.
        beta = np.einsum("fij,fj->fi", np.linalg.pinv(left_in), right)
    return np.concatenate(
        [features[start:end] @ coefficients for (start, end), coefficients in zip(runs, beta, strict=True)]
    )


def prophet_options(prepared: Prepared, spec: FitSpec, weekly: int | None = None) -> dict[str, Any]:
    """Prophet's constructor options: the data-driven defaults, then the user's own on top.

    ``weekly`` is the weekly order an earlier fit chose and this one keeps
    (see ``kept_weekly_order``); None: ``weekly_order`` chooses it here.
    """
    span = float(prepared.grid[-1] - prepared.grid[0])
    options: dict[str, Any] = {
        **seasonalities(span, spec.step),
        # A short history has few cycles to tell a trend from a wave; keep its trend stiff.
        "changepoint_prior_scale": 0.05 if span >= 4 * WEEK else 0.01,
        "changepoint_range": 0.9,
    }
    if tests_weekly(prepared, spec):
        order = weekly if weekly is not None else weekly_order(prepared.grid, prepared.y, spec.step)
        options["weekly_seasonality"] = order or False
    options.update(spec.prophet)
    if spec.model.band == "residual":
        options["uncertainty_samples"] = 0
    return options


def tests_weekly(prepared: Prepared, spec: FitSpec) -> bool:
    """Whether the weekly order is chosen by ``weekly_order``: sub-daily data, two weeks of it, no order set."""
    span = float(prepared.grid[-1] - prepared.grid[0])
    return seasonalities(span, spec.step)["weekly_seasonality"] == 14 and "weekly_seasonality" not in spec.prophet


def kept_weekly_order(record: Any, at: float, step: float) -> int | None:
    """The weekly order in an earlier fit's ``record``, if chosen less than ``WEEKLY_REUSE`` before ``at`` at ``step``.

    Leaving each week out in turn cost a warm retrain a quarter of its time
    outside Stan (5-6 of 21-23 ms), and a day's new data seldom moves the
    choice; a retrain within a day keeps it, so its warm start also keeps
    its shape. None when the record is missing, stale, from another step,
    or not one this code wrote.
    """
    try:
        chosen_at, chosen_step, order = float(record["at"]), float(record["step"]), int(record["order"])
    except (KeyError, TypeError, ValueError):
        return None
    if order not in WEEKLY_ORDERS or chosen_step != step or not 0 <= at - chosen_at < WEEKLY_REUSE:
        return None
    return order
