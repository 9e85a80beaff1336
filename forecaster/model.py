"""One Prophet model per series: clean the history, fit, predict the forecast frame, put a band on it.

Everything here is a plain function of arrays so that it runs the same in
the service, in ``forecaster forecast``, in the backtest and in a worker process.

The defaults are chosen so that a forecast with only ``name`` and ``query`` is
worth looking at (see ``ModelOptions``):

- the history is put on the ``step`` grid; spikes far outside a rolling
  median/MAD band are clipped before fitting, so they bend neither trend nor
  seasonality;
- a positive, heavy-tailed series is fitted in log space (forecasts are then
  medians, which is what MAE rewards);
- daily and weekly seasonality are switched on from the history's span and
  resolution, never Prophet's ``auto``, so warm-start shapes stay stable;
  weekly terms only when they predict weeks left out of a least-squares fit
  better than daily terms alone (a wandering level or a spell of weather is
  not a weekly pattern);
- the fitted trend is extrapolated flat, damped or linearly, whichever
  would have strayed least from it in the history: a series whose level
  wanders is held where it is, a disk that keeps filling keeps its slope;
- Prophet has no memory of where the series is now; the recent median
  residual is carried into the forecast (after a level shift, say) at the
  lead times where carrying it would have erred less in the history; a
  shift larger than any the history showed is carried forward whole, and at
  lead times where the plain recent level would have erred less in the
  history than Prophet plus correction, the forecast is that level;
- the band is the empirical quantiles of the errors this predictor would
  have made at each lead time over the latest quarter of the history,
  forecasting from each past point with only what was known there (the
  trend there is a line through the fifth of the history before it), with
  its tails moved out where replaying it on the history shows that a
  quarter's errors under-covered what followed: no sampling, and it covers
  about ``interval_width`` of what follows;
- a series that was never negative is never forecast negative, and a percent
  or ratio series stays within 0–100 or 0–1.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

log = logging.getLogger(__name__)

# Skip reasons, exported as forecaster_series_skipped_total{reason}.
TOO_FEW_POINTS = "too_few_points"
FIT_FAILED = "fit_failed"
PREDICT_FAILED = "predict_failed"
MAX_SERIES = "max_series"

DAY = 86400.0
WEEK = 7 * DAY
YEAR = 365.25 * DAY

# The band is calibrated on the errors of the latest 1/RECENT_SHARE of the history.
RECENT_SHARE = 4
# How many stretches of the history replay the band, and the tail shares (times alpha) it may move out to.
CHECKS = 12
TAIL_FACTORS = (1.0, 0.75, 0.5, 0.3, 0.15)
# How much better (in held-out absolute error) more weekly terms must predict to be chosen (see ``weekly_order``).
WEEKLY_MARGIN = 0.02
# The share of the history behind the trailing line that stands in for Prophet's trend (see ``trailing_line``).
LINE_SHARE = 0.2

_PERCENT_HINT = re.compile(r"percent|pct|utili[sz]ation", re.IGNORECASE)
_RATIO_HINT = re.compile(r"ratio|fraction", re.IGNORECASE)


@dataclass
class Frame:
    """The forecast for one series at step-spaced times ``ds`` (unix seconds)."""

    ds: np.ndarray
    yhat: np.ndarray
    yhat_lower: np.ndarray
    yhat_upper: np.ndarray

    def at(self, target: float) -> tuple[float, float, float] | None:
        """Linear interpolation at ``target``; None outside the frame (never extrapolate)."""
        if len(self.ds) == 0 or target < self.ds[0] or target > self.ds[-1]:
            return None
        return (
            float(np.interp(target, self.ds, self.yhat)),
            float(np.interp(target, self.ds, self.yhat_lower)),
            float(np.interp(target, self.ds, self.yhat_upper)),
        )


@dataclass(frozen=True)
class ModelOptions:
    """How a series is prepared and how its forecast is shaped; config key ``model``.

    ``outliers``: robust z-score (distance from a rolling median in rolling MADs)
    beyond which a point is clipped before fitting; None fits the raw data.
    ``transform``: ``auto`` (log for positive heavy-tailed series), ``log`` or ``none``.
    ``trend``: how the fitted trend continues past the history: ``flat`` (held
    at its last value), ``damped`` (its slope fades over ``trend_damping`` of
    the history span), ``linear`` (Prophet's own) or ``auto`` (whichever of
    the three strayed least from the fitted trend in the history).
    ``band``: ``residual`` (empirical, cheap) or ``prophet`` (Prophet's simulated
    band, with ``prophet.uncertainty_samples`` draws).
    ``lower``/``upper``: clip bounds; ``None`` with ``bounds: auto`` detects them
    from the data (never negative → 0; percent/ratio by name and range).
    ``residual_correction``: carry the latest residual into the near future,
    a shift beyond any in the history whole, and let the recent level take
    over at lead times where it would have erred less than Prophet.
    """

    outliers: float | None = 5.0
    transform: str = "auto"
    trend: str = "auto"
    trend_damping: float = 0.1
    band: str = "residual"
    bounds: str = "auto"
    lower: float | None = None
    upper: float | None = None
    residual_correction: bool = True


@dataclass
class FitSpec:
    """What a fit needs besides the data; built from a config.Forecast.

    ``hint`` is the forecast's name and query, used only to recognise percent
    and ratio metrics when ``bounds`` is ``auto``.
    """

    step: float
    horizon: float
    interval_width: float
    min_points: int
    prophet: dict[str, Any] = field(default_factory=dict)
    model: ModelOptions = field(default_factory=ModelOptions)
    hint: str = ""


@dataclass
class FitResult:
    frame: Frame
    params: dict[str, Any]
    points: int
    # What the defaults decided for this series, for logs and the backtest.
    choices: dict[str, Any] = field(default_factory=dict)


class Skip(Exception):
    """A series that cannot be forecast; ``reason`` is a short label value."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def clean(timestamps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop NaN and ±Inf, sort by time, and keep the last value of a repeated timestamp."""
    ts = np.asarray(timestamps, dtype=np.float64)
    ys = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(ts) & np.isfinite(ys)
    ts, ys = ts[finite], ys[finite]
    order = np.argsort(ts, kind="stable")
    ts, ys = ts[order], ys[order]
    if len(ts) > 1:
        last_of_run = np.concatenate((ts[1:] != ts[:-1], [True]))
        ts, ys = ts[last_of_run], ys[last_of_run]
    return ts, ys


def frame_times(fit_time: float, step: float, horizon: float) -> np.ndarray:
    """The frame starts at the fit time, so the forecast for "now" is served right after a fit."""
    count = int(np.floor(horizon / step + 1e-9))
    return fit_time + step * np.arange(count + 1, dtype=np.float64)


def fit_predict(
    timestamps: np.ndarray,
    values: np.ndarray,
    fit_time: float,
    spec: FitSpec,
    warm_start: dict[str, Any] | None = None,
) -> FitResult:
    """Fit one series and predict its frame; raise Skip when it cannot be fitted."""
    ts, ys = clean(timestamps, values)
    if len(ts) < spec.min_points:
        raise Skip(TOO_FEW_POINTS, f"{len(ts)} usable points, min_points is {spec.min_points}")
    ds = frame_times(fit_time, spec.step, spec.horizon)
    if np.ptp(ys) == 0:
        # Prophet on a constant series is all noise in the band; the honest forecast is the constant.
        flat = np.full(len(ds), ys[0])
        return FitResult(Frame(ds, flat, flat.copy(), flat.copy()), {}, len(ts))
    return _forecast(ts, ys, ds, spec, warm_start)


# --- preparing the history -------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    grid: np.ndarray  # step-spaced times from the first to the last sample
    y: np.ndarray  # transformed, outliers clipped; NaN where no sample
    raw: np.ndarray  # transformed, outliers as they were
    transform: str
    offset: float  # log(y + offset)
    clipped: int


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
    return 0.0 if sd == 0 else float(np.mean((y - np.mean(y)) ** 3) / sd**3)


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


def clip_outliers(y: np.ndarray, step: float, threshold: float) -> tuple[np.ndarray, int]:
    """Clip points farther than ``threshold`` robust SDs from a centred rolling median.

    The window is six hours (at least 11 points), wide enough that a burst of
    several spiky samples does not become its own median. A local MAD of zero
    (flat stretches) falls back to a tenth of the series' global MAD.

    The latest points are judged against the past alone, where a spike and the
    start of a new level look the same; the run of outlying points that
    reaches the end of the history is therefore kept as it is.
    """
    import pandas as pd

    window = max(11, round(6 * 3600 / step) | 1)
    series = pd.Series(y)
    median = series.rolling(window, center=True, min_periods=3).median()
    mad = (series - median).abs().rolling(window, center=True, min_periods=3).median()
    global_mad = float(np.nanmedian(np.abs(y - np.nanmedian(y))))
    scale = 1.4826 * np.maximum(mad.to_numpy(), 0.1 * global_mad)
    centre = median.to_numpy()
    low, high = centre - threshold * scale, centre + threshold * scale
    valid = np.isfinite(y) & np.isfinite(centre) & (scale > 0)
    outside = valid & ((y < low) | (y > high))
    for index in np.flatnonzero(np.isfinite(y))[::-1]:
        if not outside[index]:
            break
        outside[index] = False
    out = y.copy()
    out[outside] = np.clip(y[outside], low[outside], high[outside])
    return out, int(outside.sum())


def prepare(ts: np.ndarray, ys: np.ndarray, spec: FitSpec) -> _Prepared:
    grid, y = to_grid(ts, ys, spec.step)
    transform, offset = choose_transform(ys, spec.model.transform)
    if transform == "log":
        y = np.log(y + offset)
    raw, clipped = y, 0
    if spec.model.outliers is not None:
        y, clipped = clip_outliers(y, spec.step, spec.model.outliers)
    return _Prepared(grid, y, raw, transform, offset, clipped)


def _untransform(y: np.ndarray, prepared: _Prepared) -> np.ndarray:
    if prepared.transform == "log" and prepared.offset > 0:
        # expm1 keeps a forecast of exactly the offset (a zero in the data) at exactly zero.
        return np.asarray(prepared.offset * np.expm1(y - np.log(prepared.offset)))
    if prepared.transform == "log":
        return np.asarray(np.exp(y))
    return y


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
    return lower, upper


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
    the level's wander but keeps every weekly and daily shape.
    """
    import pandas as pd

    week = round(WEEK / step)
    detrended = y - pd.Series(y).rolling(week, center=True, min_periods=week // 2).mean().to_numpy()
    known = np.isfinite(detrended)
    features = np.hstack((np.ones((len(grid), 1)), fourier(grid, DAY, 4), fourier(grid, WEEK, 14)))[known]
    target = detrended[known]
    fold = np.floor((grid[-1] - grid[known]) / WEEK).astype(np.int64)
    folds = np.unique(fold)
    if len(folds) < 2:
        return 14
    blocks = [(features[fold == f], target[fold == f]) for f in folds]
    # Normal equations per fold, so each left-out fit is a small solve rather than a pass over the data.
    gram = [rows.T @ rows for rows, _ in blocks]
    moment = [rows.T @ values for rows, values in blocks]
    total_gram, total_moment = sum(gram), sum(moment)
    daily_columns = 1 + 2 * 4
    errors = {}
    for order in (0, 3, 14):
        # fourier() puts the sines first: order k keeps the sin and cos of harmonics 1..k.
        columns = np.r_[
            0:daily_columns, daily_columns : daily_columns + order, daily_columns + 14 : daily_columns + 14 + order
        ]
        absolute = 0.0
        for (rows, values), left_out_gram, left_out_moment in zip(blocks, gram, moment, strict=True):
            left_in = (total_gram - left_out_gram)[np.ix_(columns, columns)]
            beta = np.linalg.lstsq(left_in, (total_moment - left_out_moment)[columns], rcond=None)[0]
            absolute += float(np.abs(values - rows[:, columns] @ beta).sum())
        errors[order] = absolute
    # More terms must earn their place: within WEEKLY_MARGIN of the best, the fewest terms win.
    best = min(errors.values())
    return min(order for order, error in errors.items() if error <= best * (1 + WEEKLY_MARGIN))


def prophet_options(prepared: _Prepared, spec: FitSpec) -> dict[str, Any]:
    """Prophet's constructor options: the data-driven defaults, then the user's own on top."""
    span = float(prepared.grid[-1] - prepared.grid[0])
    options: dict[str, Any] = {
        **seasonalities(span, spec.step),
        # A short history has few cycles to tell a trend from a wave; keep its trend stiff.
        "changepoint_prior_scale": 0.05 if span >= 4 * WEEK else 0.01,
        "changepoint_range": 0.9,
    }
    if options["weekly_seasonality"] == 14 and "weekly_seasonality" not in spec.prophet:
        options["weekly_seasonality"] = weekly_order(prepared.grid, prepared.y, spec.step) or False
    options.update(spec.prophet)
    if spec.model.band == "residual":
        options["uncertainty_samples"] = 0
    return options


# --- fitting ---------------------------------------------------------------------------------------------------


def _forecast(
    ts: np.ndarray, ys: np.ndarray, ds: np.ndarray, spec: FitSpec, warm_start: dict[str, Any] | None
) -> FitResult:
    import pandas as pd

    prepared = prepare(ts, ys, spec)
    observed = np.isfinite(prepared.y)
    options = prophet_options(prepared, spec)
    # Stan, cmdstanpy and pandas raise many types; a failing series must not stop the batch.
    try:
        model = _new_prophet(spec.interval_width, options)
        history = pd.DataFrame({"ds": pd.to_datetime(prepared.grid[observed], unit="s"), "y": prepared.y[observed]})
        init = _compatible_init(model, history, warm_start)
        model.fit(history, init=init) if init else model.fit(history)
    except Exception as exc:
        raise Skip(FIT_FAILED, f"Prophet could not fit: {exc.__class__.__name__}: {exc}") from exc
    try:
        if spec.model.band == "prophet":
            yhat, lower, upper = _prophet_band(model, ds)
        else:
            yhat, lower, upper = _residual_band(model, prepared, ds, spec)
    except Exception as exc:
        raise Skip(PREDICT_FAILED, f"Prophet could not predict: {exc.__class__.__name__}: {exc}") from exc
    yhat, lower, upper = (_untransform(a, prepared) for a in (yhat, lower, upper))
    low_bound, high_bound = bounds(ys, spec)
    if low_bound is not None or high_bound is not None:
        yhat, lower, upper = (np.clip(a, low_bound, high_bound) for a in (yhat, lower, upper))
    lower, upper = np.minimum(lower, yhat), np.maximum(upper, yhat)
    if not (np.isfinite(yhat).all() and np.isfinite(lower).all() and np.isfinite(upper).all()):
        raise Skip(PREDICT_FAILED, "the prediction contains NaN or Inf")
    choices = {
        "transform": prepared.transform,
        "clipped": prepared.clipped,
        "daily": options["daily_seasonality"],
        "weekly": options["weekly_seasonality"],
    }
    return FitResult(Frame(ds, yhat, lower, upper), _warm_params(model), len(ts), choices)


def _prophet_band(model: Any, ds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pandas as pd

    predicted = model.predict(pd.DataFrame({"ds": pd.to_datetime(ds, unit="s")}))
    yhat = predicted["yhat"].to_numpy(dtype=np.float64)
    if "yhat_lower" not in predicted:
        return yhat, yhat.copy(), yhat.copy()
    return yhat, predicted["yhat_lower"].to_numpy(dtype=np.float64), predicted["yhat_upper"].to_numpy(np.float64)


def _components(model: Any, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trend and everything else (seasonality) at ``times``, without Prophet's uncertainty sampling."""
    import pandas as pd

    predicted = model.predict(pd.DataFrame({"ds": pd.to_datetime(times, unit="s")}))
    trend = predicted["trend"].to_numpy(dtype=np.float64)
    return trend, predicted["yhat"].to_numpy(dtype=np.float64) - trend


def _damp(
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


def _residual_band(
    model: Any, prepared: _Prepared, ds: np.ndarray, spec: FitSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    grid, y = prepared.grid, prepared.y
    origin = float(grid[-1])
    span = float(grid[-1] - grid[0])
    trend, rest = _components(model, np.concatenate((grid, ds)))
    n = len(grid)
    leads = np.maximum(np.round((ds - origin) / spec.step).astype(np.int64), 1)
    mode = choose_trend(trend[:n], spec.step, span, spec.model)
    future_trend = _damp(trend[n:], ds, origin, float(trend[n - 1]), span, mode, spec.model.trend_damping)
    # The errors are those of forecasts made at each past point from what was known then (see ``trailing_line``).
    level, slope = trailing_line(y - rest[:n], max(round(LINE_SHARE * n), 12))
    if np.isfinite(y - level).sum() < np.isfinite(y).sum() / 2:
        # Too gappy for a line at most points: the trend fitted in hindsight is all there is.
        level, slope = trend[:n], np.concatenate(([0.0], np.diff(trend[:n])))
    residuals = y - rest[:n] - level
    windows = anchor_windows(spec.step, n) if spec.model.residual_correction else [1]
    drift = _trend_surprise(level, slope, spec.step, span, mode, spec.model.trend_damping)
    window = level_window(spec.step, n)
    # The simple alternatives: the recent level as it is, and with Prophet's seasonality taken out and added back.
    alternatives = [(y, prepared.raw, np.zeros(len(ds))), (y - rest[:n], prepared.raw - rest[:n], rest[n:])]
    if not spec.model.residual_correction:
        alternatives = []
    # A correction is measured from the line, so it is carried from the line's end rather than the trend's.
    line_offset = float(level[-1] - trend[n - 1]) if np.isfinite(level[-1]) else 0.0
    correction, low, high, shares = lead_errors(
        residuals,
        leads,
        spec.interval_width,
        windows,
        spec.model.residual_correction,
        drift,
        prepared.raw - rest[:n] - level,
        [(clipped, raw) for clipped, raw, _ in alternatives],
        window,
        line_offset,
    )
    if spec.model.residual_correction:
        # Against the fitted trend: a shift is new when the fit, knowing all of the history, cannot place it.
        shift = new_level(y - trend[:n] - rest[:n], min(windows))
        if shift is not None:
            correction, shares = np.full(len(ds), shift), np.zeros_like(shares)
    yhat = (1 - shares.sum(axis=0)) * (future_trend + rest[n:] + correction)
    for share, (clipped, _, ahead) in zip(shares, alternatives, strict=True):
        recent = clipped[-window:]
        level_now = float(np.median(recent[np.isfinite(recent)])) if np.isfinite(recent).any() else 0.0
        yhat = yhat + share * (level_now + ahead)
    return yhat, yhat + low, yhat + high


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


def _trend_surprise(
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


def anchor_windows(step: float, points: int) -> list[int]:
    """Trailing windows (in steps) whose median residual may carry into the forecast: three points to a day.

    Never a single point on sub-hourly data, where the last sample may be a spike.
    """
    sizes = {3} | {max(1, round(seconds / step)) for seconds in (3600.0, 6 * 3600.0, DAY)}
    return sorted(size for size in sizes if size <= max(1, points // 4))


def level_window(step: float, points: int) -> int:
    """The trailing window (in steps) whose median is the series' current level: an hour, at least three points."""
    return max(1, min(max(3, round(3600.0 / step)), points // 4))


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
    import pandas as pd

    return np.asarray(pd.Series(values).rolling(window, min_periods=1).median().to_numpy(dtype=np.float64))


def lead_errors(
    residuals: np.ndarray,
    leads: np.ndarray,
    width: float,
    windows: list[int],
    correct: bool,
    surprise: Callable[[int], np.ndarray] | None = None,
    outcomes: np.ndarray | None = None,
    alternatives: list[tuple[np.ndarray, np.ndarray]] | None = None,
    level_steps: int = 3,
    line_offset: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each lead (in steps): the residual correction to add, and the band's offsets around the forecast.

    ``residuals`` are measured from a trend known at each point (see
    ``trailing_line``), and ``surprise`` says how far that trend moved
    from its extrapolation k steps later (see ``_trend_surprise``):
    together, the errors of a forecast made at each past point. Prophet
    forgets where the series is right now. The correction is the median
    residual over a trailing window, carried whole or not at all: for each
    lead, the window (or none) with the smallest error in the history. It is
    returned plus ``line_offset``, the residuals' reference minus the
    forecast's at the origin. The band is the empirical quantiles of that
    predictor's own errors at that lead. ``outcomes`` are the residuals of
    the data before outliers were clipped: spikes were kept out of the fit,
    but they will happen again, and the band should say how often. Each of
    ``alternatives`` (a series, clipped and raw, whose recent level
    forecasts it: the series itself, or the series without its
    seasonality) competes at each lead with the median of its last
    ``level_steps`` values, and wins where it would have erred less in the
    history: the fourth array holds each alternative's share of the
    forecast per lead (0 or 1 at the probed leads, interpolated). The
    band's quantiles come from the latest quarter of the history (see
    ``_quantiles``). Computed at up to 40 log-spaced leads and interpolated
    between them.
    """
    unique = np.unique(leads)
    probe = np.unique(np.round(np.geomspace(unique[0], unique[-1], min(len(unique), 40))).astype(np.int64))
    n = len(residuals)
    raw = residuals if outcomes is None else outcomes
    anchors = {m: trailing_median(residuals, m) for m in windows}
    alternatives = alternatives or []
    levels = [trailing_median(clipped, level_steps) for clipped, _ in alternatives]
    shares = np.zeros((len(alternatives), len(probe)))
    corrections = np.zeros(len(probe))
    lows = np.zeros(len(probe))
    highs = np.zeros(len(probe))
    alpha = (1 - width) / 2
    for i, k in enumerate(probe):
        drift = surprise(int(k)) if surprise is not None and k < n - 10 else 0.0
        later_all, outcome_all = residuals[k:] + drift, raw[k:] + drift
        known = np.isfinite(later_all)
        if k >= n - 10 or known.sum() <= 10:
            # Too few errors at this lead (a short or gappy history): the spread of all residuals is the best guess.
            lows[i], highs[i] = _quantiles(raw[np.isfinite(raw)], alpha, int(k))
            continue
        best_score, best_anchor = float(np.mean(np.abs(later_all[known]))), None
        for anchor in anchors.values() if correct else ():
            now = anchor[: n - k]
            pair = np.isfinite(now) & known
            if pair.sum() <= 10:
                continue
            score = float(np.mean(np.abs(later_all[pair] - now[pair])))
            if score < best_score:
                best_score, best_anchor = score, anchor
        chosen = None
        for j, ((clipped, _), level) in enumerate(zip(alternatives, levels, strict=True)):
            persistence = clipped[k:] - level[: n - k]
            usable = np.isfinite(persistence)
            score = float(np.mean(np.abs(persistence[usable]))) if usable.sum() > 10 else np.inf
            if score < best_score:
                best_score, chosen = score, j
        if chosen is not None:
            shares[chosen, i] = 1.0
            errors = alternatives[chosen][1][k:] - levels[chosen][: n - k]
            lows[i], highs[i] = _quantiles(errors[np.isfinite(errors)], alpha, int(k))
            continue
        if best_anchor is None:
            errors = outcome_all[np.isfinite(outcome_all)]
        else:
            now = best_anchor[: n - k]
            pair = np.isfinite(now) & np.isfinite(outcome_all)
            errors = outcome_all[pair] - now[pair]
            latest = best_anchor[np.isfinite(best_anchor)]
            corrections[i] = float(latest[-1]) + line_offset if len(latest) else 0.0
        lows[i], highs[i] = _quantiles(errors, alpha, int(k))
    return (
        np.interp(leads, probe, corrections),
        np.interp(leads, probe, lows),
        np.interp(leads, probe, highs),
        np.array([np.interp(leads, probe, share) for share in shares]).reshape(len(shares), len(leads)),
    )


def _quantiles(errors: np.ndarray, alpha: float, lead: int) -> tuple[float, float]:
    """The band's offsets: quantiles of the errors from the latest quarter of the history (at least 20).

    Volatility drifts; as in conformal calibration, the errors made most
    recently say best how wide the next ones will be. How far out to go in
    the tails is itself checked on the history (see ``tail_share``).
    """
    window = max(len(errors) // RECENT_SHARE, 20)
    tail = tail_share(errors, alpha, lead, window)
    low, high = np.quantile(errors[-window:], [tail, 1 - tail])
    return float(low), float(high)


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
    # One sort of every replayed window at once: far cheaper than a quantile call per window.
    windows = np.sort(sliding_window_view(errors, window)[bounds[:-1] - lead - window], axis=1)
    low, high = _sorted_quantiles(windows, tails), _sorted_quantiles(windows, 1 - tails)
    inside = np.zeros(len(tails))
    for check, (begin, end) in enumerate(itertools.pairwise(bounds)):
        later = errors[begin:end, None]
        inside += ((later >= low[check]) & (later <= high[check])).sum(axis=0)
    covered = inside / (len(errors) - start)
    enough = np.flatnonzero(covered >= 1 - 2 * alpha)
    return float(tails[enough[0]] if len(enough) else tails[-1])


def _sorted_quantiles(rows: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``np.quantile(rows, levels, axis=1).T`` (linear interpolation) for rows that are already sorted."""
    position = levels * (rows.shape[1] - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, rows.shape[1] - 1)
    return np.asarray(rows[:, below] + (position - below) * (rows[:, above] - rows[:, below]))


def load_prophet() -> Any:
    """Import Prophet with its log noise turned down: an ERROR about plotly on import, INFO lines on every fit."""
    logging.getLogger("prophet.plot").disabled = True
    cmdstanpy_log = logging.getLogger("cmdstanpy")
    # cmdstanpy installs its own INFO handler unless the logger already has one.
    if not cmdstanpy_log.handlers:
        cmdstanpy_log.addHandler(logging.NullHandler())
    cmdstanpy_log.setLevel(logging.WARNING)
    from prophet import Prophet

    from forecaster import stan_json

    logging.getLogger("prophet").setLevel(logging.WARNING)
    stan_json.install()
    return Prophet


def _new_prophet(interval_width: float, options: dict[str, Any]) -> Any:
    return load_prophet()(interval_width=interval_width, **options)


def _warm_params(model: Any) -> dict[str, Any]:
    """The parameters Prophet's documented warm start takes (k, m, sigma_obs, delta, beta)."""
    out: dict[str, Any] = {}
    for name in ("k", "m", "sigma_obs"):
        out[name] = float(model.params[name][0][0])
    for name in ("delta", "beta"):
        out[name] = [float(v) for v in model.params[name][0]]
    return out


def _compatible_init(model: Any, history: Any, warm: dict[str, Any] | None) -> dict[str, Any] | None:
    """The previous fit's parameters as Prophet's ``init``, when they fit this model's changepoints.

    A mismatch in the seasonality terms is harmless: Stan then starts from its own
    default, which is what a cold fit does anyway.
    """
    if not warm or not all(key in warm for key in ("k", "m", "sigma_obs", "delta", "beta")):
        return None
    n_changepoints = min(model.n_changepoints, int(np.floor(len(history) * model.changepoint_range)) - 1)
    if len(warm["delta"]) != max(n_changepoints, 1):
        return None
    return {
        "k": warm["k"],
        "m": warm["m"],
        "sigma_obs": warm["sigma_obs"],
        "delta": np.asarray(warm["delta"]),
        "beta": np.asarray(warm["beta"]),
    }
