"""One series, end to end: clean, fit Prophet, shape the forecast, put the band on it.

Decides the order of the stages and nothing else; each stage's own choices
live in its module (``cleaning``, ``seasonality``, ``prophet``, ``trend``,
``correction``, ``band``). Everything is a plain function of arrays, so it
runs the same in the service, in ``forecaster forecast``, in the backtest and
in a worker process. A series that cannot be forecast raises
``SeriesSkipped`` with its reason; the callers turn it into a value.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np

from forecaster.duration import DAY
from forecaster.errors import SeriesSkipped, SkipReason
from forecaster.model import prophet
from forecaster.model.cleaning import Prepared, bounds, held_at_edge, pinned_edges, prepare, to_grid
from forecaster.model.competitors import Competitor, latest_points, level_window, seasonal_copies, slower_levels
from forecaster.model.correction import Calibration, PastErrors, anchor_windows, lead_errors, new_level
from forecaster.model.frame import FitResult, Frame, frame_times
from forecaster.model.options import FitSpec
from forecaster.model.seasonality import YEAR, kept_weekly_order, prophet_options, scales_with_level, tests_weekly
from forecaster.model.trend import LINE_SHARE, choose_trend, damp, rate_drift, trailing_line, trend_surprise
from forecaster.series import finite


def fit_predict(
    timestamps: np.ndarray,
    values: np.ndarray,
    fit_time: float,
    spec: FitSpec,
    warm_start: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> FitResult:
    """Fit one series and predict its frame; raise SeriesSkipped when it cannot be fitted.

    ``timestamps`` must be strictly increasing (a ``Series`` is: see
    ``forecaster.series``); NaN and ±Inf values are dropped here. Stan's
    solver is stopped after ``timeout`` seconds.
    """
    ts, ys = finite(timestamps, values)
    if len(ts) > 1 and not (np.diff(ts) > 0).all():
        raise ValueError("timestamps must be strictly increasing; put raw arrays through forecaster.series.clean")
    if len(ts) < spec.min_points:
        raise SeriesSkipped(SkipReason.TOO_FEW_POINTS, f"{len(ts)} usable points, min_points is {spec.min_points}")
    ds = frame_times(fit_time, spec.step, spec.horizon)
    if np.ptp(ys) == 0:
        # Prophet on a constant series is all noise in the band; the honest forecast is the constant.
        flat = np.full(len(ds), ys[0])
        return FitResult(Frame(ds, flat, flat.copy(), flat.copy()), {}, len(ts))
    prepared = prepare(ts, ys, spec)
    if scales_with_level(prepared, spec):
        prepared = prepare(ts, ys, spec, "log")
    origin = float(prepared.grid[-1])
    kept = warm_start.get("weekly") if warm_start else None
    weekly = kept_weekly_order(kept, origin, spec.step)
    options = prophet_options(prepared, spec, weekly)
    # Stan, cmdstanpy and pandas raise many types; a failing series must not stop the batch.
    try:
        model = prophet.fit(
            prepared, spec.interval_width, options, warm_start, timeout, spec.events, spec.holidays_country
        )
    except TimeoutError:
        raise SeriesSkipped(
            SkipReason.FIT_TIMEOUT,
            f"Stan's solver ran past fit_timeout ({timeout:g}s) and was stopped; "
            "shorten history, coarsen step, or raise fit_timeout",
        ) from None
    except Exception as exc:
        raise SeriesSkipped(SkipReason.FIT_FAILED, f"Prophet could not fit: {exc.__class__.__name__}: {exc}") from exc
    calibration = None
    try:
        if spec.model.band == "prophet":
            fitted = prophet.simulated_band(model, ds)
        else:
            reuse = Calibration.from_json(warm_start.get("calibration")) if warm_start else None
            fitted, calibration = _residual_band(model, prepared, ds, spec, reuse)
    except Exception as exc:
        raise SeriesSkipped(
            SkipReason.PREDICT_FAILED, f"Prophet could not predict: {exc.__class__.__name__}: {exc}"
        ) from exc
    yhat, lower, upper = (prepared.untransform(a) for a in (fitted.yhat, fitted.yhat_lower, fitted.yhat_upper))
    if spec.model.bounds == "auto":
        yhat, lower, upper = _held_at_pinned_edges(ts, ys, ds, spec, (yhat, lower, upper))
    low_bound, high_bound = bounds(ys, spec)
    if low_bound is not None or high_bound is not None:
        yhat, lower, upper = (np.clip(a, low_bound, high_bound) for a in (yhat, lower, upper))
    lower, upper = np.minimum(lower, yhat), np.maximum(upper, yhat)
    if not (np.isfinite(yhat).all() and np.isfinite(lower).all() and np.isfinite(upper).all()):
        raise SeriesSkipped(SkipReason.PREDICT_FAILED, "the prediction contains NaN or Inf")
    choices = {
        "transform": prepared.transform,
        "clipped": prepared.clipped,
        "daily": options["daily_seasonality"],
        "weekly": options["weekly_seasonality"],
    }
    params = prophet.warm_params(model)
    if calibration is not None:
        params["calibration"] = calibration.to_json()
    if tests_weekly(prepared, spec):
        order = int(options["weekly_seasonality"] or 0)
        params["weekly"] = kept if weekly is not None else {"at": origin, "step": spec.step, "order": order}
    return FitResult(Frame(ds, yhat, lower, upper), params, len(ts), choices)


def _held_at_pinned_edges(
    ts: np.ndarray, ys: np.ndarray, ds: np.ndarray, spec: FitSpec, frame: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The forecast and band of a series sitting at a pinned edge now (see ``cleaning.pinned_edges``).

    Where the history stayed at the edge more often than not that far
    after a sample there (``held_at_edge``), the forecast is the edge, the
    median of what followed, as ``last_value`` is, where a smooth fit of
    the clipped shape falls short of it; the band there is that of what
    followed.
    """
    yhat, lower, upper = frame
    edges = [edge for edge in pinned_edges(ys)[::-1] if edge is not None and edge == ys[-1]]
    if not edges:
        return yhat, lower, upper
    _, values = to_grid(ts, ys, spec.step)
    leads = np.maximum(np.round((ds - ts[-1]) / spec.step).astype(np.int64), 1)
    for edge in edges:
        if (followed := held_at_edge(values, edge, leads, spec.interval_width, spec.step)) is None:
            continue
        share, low_then, high_then = followed
        held = share > 0.5
        yhat = np.where(held, edge, yhat)
        lower, upper = np.where(held, low_then, lower), np.where(held, high_then, upper)
    return yhat, lower, upper


def _residual_band(
    model: Any, prepared: Prepared, ds: np.ndarray, spec: FitSpec, reuse: Calibration | None
) -> tuple[Frame, Calibration]:
    """The frame in the fit's space (Prophet's curves, the trend as chosen, the correction, the band) and its choices.

    ``reuse``: an earlier fit's choices, kept when they still apply (see ``Calibration``).
    """
    grid, y = prepared.grid, prepared.y
    options = spec.model
    origin = float(grid[-1])
    span = float(grid[-1] - grid[0])
    trend, rest = prophet.components(model, np.concatenate((grid, ds)))
    n = len(grid)
    leads = np.maximum(np.round((ds - origin) / spec.step).astype(np.int64), 1)
    mode = choose_trend(trend[:n], spec.step, span, options)
    future_trend = damp(trend[n:], ds, origin, float(trend[n - 1]), span, mode, options.trend_damping)
    # The errors are those of forecasts made at each past point from what was known then (see ``trailing_line``).
    level, slope = trailing_line(y - rest[:n], max(round(LINE_SHARE * n), 12))
    if np.isfinite(y - level).sum() < np.isfinite(y).sum() / 2:
        # Too gappy for a line at most points: the trend fitted in hindsight is all there is.
        level, slope = trend[:n], np.concatenate(([0.0], np.diff(trend[:n])))
    windows = anchor_windows(spec.step, n) if options.residual_correction else [1]
    window = level_window(spec.step, n)
    # The simple competitors: the recent level (over an hour, over six, and the latest sample up to an hour ahead) as
    # it is, and with Prophet's seasonality taken out and added back; the series a day and a week earlier.
    competitors = []
    if options.residual_correction:
        recent_levels = [Competitor(y, prepared.raw), Competitor(y - rest[:n], prepared.raw - rest[:n], rest[n:])]
        competitors = (
            recent_levels
            + slower_levels(recent_levels, spec.step, n)
            + seasonal_copies(y, prepared.raw, leads, spec.step)
            + latest_points(recent_levels, spec.step, n)
        )
    past = PastErrors(
        residuals=y - rest[:n] - level,
        windows=windows,
        correct=options.residual_correction,
        outcomes=prepared.raw - rest[:n] - level,
        surprise=trend_surprise(level, slope, spec.step, span, mode, options.trend_damping),
        competitors=competitors,
        level_steps=window,
        # A correction is measured from the line, so it is carried from the line's end rather than the trend's.
        line_offset=float(level[-1] - trend[n - 1]) if np.isfinite(level[-1]) else 0.0,
        year=round(YEAR / spec.step),
    )
    plan = lead_errors(past, leads, spec.interval_width, origin, reuse)
    correction, shares = plan.correction, plan.shares
    if options.residual_correction:
        # Against the fitted trend: a shift is new when the fit, knowing all of the history, cannot place it.
        shift = new_level(y - trend[:n] - rest[:n], min(windows))
        if shift is not None:
            correction, shares = np.full(len(ds), shift), np.zeros_like(shares)
    low, high = plan.low, plan.high
    if mode == "linear":
        low, high = _rate_spread(y - rest[:n], float(trend[n - 1] - trend[n - 2]), leads, shares, spec, low, high)
    yhat = (1 - shares.sum(axis=0)) * (future_trend + rest[n:] + correction)
    for share, competitor in zip(shares, competitors, strict=True):
        recent = competitor.clipped[-(competitor.level_steps or window) :]
        level_now = float(np.median(recent[np.isfinite(recent)])) if np.isfinite(recent).any() else 0.0
        yhat = yhat + share * (competitor.gain(leads) * level_now + competitor.ahead)
    return Frame(ds, yhat, yhat + low, yhat + high), plan.calibration


def _rate_spread(
    deseasoned: np.ndarray,
    slope: float,
    leads: np.ndarray,
    shares: np.ndarray,
    spec: FitSpec,
    low: np.ndarray,
    high: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The band widened by how far the carried rate may drift over each lead, as it drifted day to day.

    The replayed errors see few independent stretches as long as the longer
    leads (a week ahead on two weeks of history is one), so they cannot say
    how much the rate itself may change. As in Prophet's trend simulation,
    the rate is taken to keep changing as it has: a random walk whose daily
    steps are the history's day-over-day rate changes (``rate_drift``). Its
    sum over k steps has a standard deviation of ``drift * sqrt(k^3 / (3 *
    window))``, a spread that is nothing an hour ahead and grows faster than
    the lead, computed rather than sampled. It is centred where the
    history's typical rate would take the series: the carried rate is the
    latest, which may have been a fast or slow spell, and where a flat
    competitor carries part of the forecast, the series still runs on. Each
    edge goes as far as the wider of the two: the replayed errors hold the
    drift the history showed over the leads it could replay, so adding the
    spread to them would count that drift twice.
    """
    window = min(max(round(DAY / spec.step), 12), len(deseasoned) // 4)
    rates = rate_drift(deseasoned, window) if window >= 3 else None
    if rates is None:
        return low, high
    typical, drift = rates
    z = NormalDist().inv_cdf((1 + spec.interval_width) / 2)
    spread = z * drift * np.sqrt(leads.astype(np.float64) ** 3 / (3 * window))
    uncarried = (typical - (1 - shares.sum(axis=0)) * slope) * leads
    return np.minimum(low, uncarried - spread), np.maximum(high, uncarried + spread)
