"""One Prophet model per series: clean the history, fit, predict the forecast frame.

Everything here is a plain function of arrays so that it runs the same in
the service, in ``forecaster forecast`` and in a worker process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Skip reasons, exported as forecaster_series_skipped_total{reason}.
TOO_FEW_POINTS = "too_few_points"
FIT_FAILED = "fit_failed"
PREDICT_FAILED = "predict_failed"
MAX_SERIES = "max_series"


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


@dataclass
class FitSpec:
    """What a fit needs besides the data; built from a config.Forecast."""

    step: float
    horizon: float
    interval_width: float
    min_points: int
    prophet: dict[str, Any] = field(default_factory=dict)


@dataclass
class FitResult:
    frame: Frame
    params: dict[str, Any]
    points: int


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
    return _prophet(ts, ys, ds, spec, warm_start)


def _prophet(
    ts: np.ndarray, ys: np.ndarray, ds: np.ndarray, spec: FitSpec, warm_start: dict[str, Any] | None
) -> FitResult:
    import pandas as pd

    # Stan, cmdstanpy and pandas raise many types; a failing series must not stop the batch.
    try:
        model = _new_prophet(spec)
        history = pd.DataFrame({"ds": pd.to_datetime(ts, unit="s"), "y": ys})
        init = _compatible_init(model, history, warm_start)
        model.fit(history, init=init) if init else model.fit(history)
    except Exception as exc:
        raise Skip(FIT_FAILED, f"Prophet could not fit: {exc.__class__.__name__}: {exc}") from exc
    try:
        predicted = model.predict(pd.DataFrame({"ds": pd.to_datetime(ds, unit="s")}))
        yhat = predicted["yhat"].to_numpy(dtype=np.float64)
        if "yhat_lower" in predicted:
            lower = np.minimum(predicted["yhat_lower"].to_numpy(dtype=np.float64), yhat)
            upper = np.maximum(predicted["yhat_upper"].to_numpy(dtype=np.float64), yhat)
        else:
            lower, upper = yhat.copy(), yhat.copy()
    except Exception as exc:
        raise Skip(PREDICT_FAILED, f"Prophet could not predict: {exc.__class__.__name__}: {exc}") from exc
    if not (np.isfinite(yhat).all() and np.isfinite(lower).all() and np.isfinite(upper).all()):
        raise Skip(PREDICT_FAILED, "the prediction contains NaN or Inf")
    return FitResult(Frame(ds, yhat, lower, upper), _warm_params(model), len(ts))


def _new_prophet(spec: FitSpec) -> Any:
    # Prophet logs an ERROR about plotly on import and INFO lines on every fit; neither helps an operator.
    logging.getLogger("prophet.plot").disabled = True
    from prophet import Prophet

    for name in ("prophet", "cmdstanpy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return Prophet(interval_width=spec.interval_width, **spec.prophet)


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
