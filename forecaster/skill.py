"""How a forecast did against what PromQL gives for free, on the samples that followed it.

The four baselines a PromQL user gets without a model, from the history
before an origin:

    last_value         the last sample before the origin (``x``)
    offset_1d          the value one day earlier (``x offset 1d``; as many days
                       back as needed to stay before the origin)
    offset_1w          the same a week earlier (``x offset 1w``)
    predict_linear_6h  a least-squares line over the last six hours, extrapolated
                       (``predict_linear(x[6h], h)``)

Pure functions of arrays. The trainer scores each replaced forecast with
``score_previous`` after every retrain (``forecaster_model_*``); the backtest
report (``forecaster.backtest``) builds its tables from the same pieces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from forecaster.duration import DAY, WEEK
from forecaster.model.frame import Frame
from forecaster.series import finite

BASELINES = ("last_value", "offset_1d", "offset_1w", "predict_linear_6h")
LINEAR_WINDOW = 6 * 3600.0


def value_before(ts: np.ndarray, ys: np.ndarray, when: np.ndarray) -> np.ndarray:
    """The latest sample at or before each time in ``when``; NaN when there is none."""
    index = np.searchsorted(ts, when, side="right") - 1
    out = np.where(index >= 0, ys[np.clip(index, 0, None)], np.nan)
    return np.asarray(out, dtype=np.float64)


def baselines(ts: np.ndarray, ys: np.ndarray, origin: float, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Each baseline's forecast at ``targets``, from the samples strictly before ``origin``."""
    before = ts < origin
    ts, ys = ts[before], ys[before]
    out: dict[str, np.ndarray] = {"last_value": np.full(len(targets), ys[-1] if len(ys) else np.nan)}
    for name, period in (("offset_1d", DAY), ("offset_1w", WEEK)):
        # A seasonal naive forecast may only look at the past: step back whole periods until before the origin.
        periods = np.maximum(np.ceil((targets - origin) / period), 1.0)
        out[name] = value_before(ts, ys, targets - periods * period)
    recent = ts >= origin - LINEAR_WINDOW
    if recent.sum() >= 2 and np.ptp(ts[recent]) > 0:
        slope, intercept = np.polyfit(ts[recent] - origin, ys[recent], 1)
        out["predict_linear_6h"] = intercept + slope * (targets - origin)
    else:
        out["predict_linear_6h"] = np.full(len(targets), ys[-1] if len(ys) else np.nan)
    return out


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error over the points where both are known; NaN when there are none."""
    ok = np.isfinite(actual) & np.isfinite(predicted)
    return float(np.mean(np.abs(actual[ok] - predicted[ok]))) if ok.any() else math.nan


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    ok = np.isfinite(actual)
    if not ok.any():
        return math.nan
    inside = (actual[ok] >= lower[ok]) & (actual[ok] <= upper[ok])
    return float(np.mean(inside))


@dataclass(frozen=True)
class Skill:
    """How the previous forecast of one series did on the samples that arrived since it was made."""

    mae: float
    coverage: float
    skill: float  # 1 - model MAE / best baseline MAE; above 0 beats every baseline
    points: int


def score_previous(
    frame: Frame, made_at: float, timestamps: np.ndarray, values: np.ndarray, now: float
) -> Skill | None:
    """Score a forecast made at ``made_at`` against the samples in ``(made_at, now]``.

    The baselines are computed from the same history as of ``made_at``, so
    the comparison is the one the backtest makes, on live data, for free.
    None when no sample arrived inside the frame.
    """
    ts, ys = finite(timestamps, values)
    arrived = (ts > made_at) & (ts <= min(now, float(frame.ds[-1])))
    if not arrived.any() or not (ts < made_at).any():
        return None
    targets, actual = ts[arrived], ys[arrived]
    model_mae = mae(actual, np.interp(targets, frame.ds, frame.yhat))
    band = coverage(
        actual, np.interp(targets, frame.ds, frame.yhat_lower), np.interp(targets, frame.ds, frame.yhat_upper)
    )
    errors = [mae(actual, predicted) for predicted in baselines(ts, ys, made_at, targets).values()]
    best = min((e for e in errors if math.isfinite(e)), default=math.nan)
    # A baseline that was exactly right cannot be beaten; only an exact model ties it.
    tie = 0.0 if model_mae == 0 else -math.inf
    skill = 1 - model_mae / best if best > 0 else tie
    return Skill(model_mae, band, skill, int(arrived.sum()))
