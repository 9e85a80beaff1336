"""What Prophet's fit hands Stan, built with numpy, and the curves its parameters describe.

For a small series, ``Prophet.fit`` spends about as long building pandas
frames (``setup_dataframe``, a data frame per Fourier block, a crosstab of
which column belongs to which component) as Stan spends optimising. For the
models this service builds (a linear or flat trend and Fourier
seasonalities) ``stan_input`` computes the same arrays with Prophet's own
formulas, in its order of operations, so that Stan receives the same numbers
and returns the same parameters: y and t scaling (``scaling`` absmax or
minmax), changepoint placement (``changepoint_range``, and fewer changepoints
on a short history), the Fourier feature matrix with its prior scales and
additive/multiplicative masks, and Prophet's initial values. Anything else
(events, holidays, logistic growth, Prophet's simulated band) is None here
and goes through Prophet itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from forecaster.duration import DAY

# Prophet's defaults (``Prophet.__init__``) for the options this module reads.
DEFAULTS: dict[str, Any] = {
    "growth": "linear",
    "n_changepoints": 25,
    "changepoint_range": 0.8,
    "yearly_seasonality": "auto",
    "weekly_seasonality": "auto",
    "daily_seasonality": "auto",
    "seasonality_mode": "additive",
    "seasonality_prior_scale": 10.0,
    "changepoint_prior_scale": 0.05,
    "uncertainty_samples": 1000,
    "scaling": "absmax",
}

# Prophet's built-in seasonalities in the order it adds them: name, period in days, default order, and the
# history (in days) below which ``auto`` leaves it out; ``auto`` also leaves out a period the sampling cannot see.
_BUILT_IN = (("yearly", 365.25, 10, 730.0), ("weekly", 7, 3, 14.0), ("daily", 1, 4, 2.0))
_TREND_INDICATOR = {"linear": 0, "flat": 2}


@dataclass(frozen=True)
class Seasonality:
    """One Fourier block: ``period`` in days (Prophet's), ``order`` harmonics, ``additive`` or multiplicative."""

    name: str
    period: float
    order: int
    additive: bool
    prior_scale: float


@dataclass(frozen=True)
class Terms:
    """A model's trend and seasonal terms and the scales Stan's parameters are in (Prophet's fitted attributes).

    ``floor`` is added back to the scaled curves (Prophet's ``y_min`` under
    minmax scaling, 0 otherwise); ``start`` and ``t_scale`` are in seconds.
    """

    growth: str
    floor: float
    y_scale: float
    start: float
    t_scale: float
    changepoints_t: np.ndarray
    seasonalities: tuple[Seasonality, ...]

    def components(
        self, params: dict[str, np.ndarray], times: np.ndarray, known: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Trend and seasonality at ``times`` from Prophet-shaped ``params``, by Prophet's predict formulas.

        ``piecewise_linear`` for the trend, Prophet's Fourier terms, and
        ``trend * (1 + multiplicative) + additive``, with Prophet's mean over
        parameter draws (a single draw for a MAP fit). ``known``: times and
        their features already computed (the fit's), taken as they are where
        ``times`` starts with them; each row depends on its time alone.
        """
        k, m = float(np.nanmean(params["k"])), float(np.nanmean(params["m"]))
        if self.growth == "linear":
            t = (times - self.start) / self.t_scale
            deltas = np.nanmean(params["delta"], axis=0)
            trend = piecewise_linear(t, deltas, k, m, self.changepoints_t)
        else:
            trend = np.full(len(times), m)
        trend = trend * self.y_scale + self.floor
        if not self.seasonalities:
            return trend, np.zeros(len(times))
        fitted_times, fitted_features = known if known is not None else (times[:0], None)
        head = len(fitted_times)
        if fitted_features is not None and np.array_equal(times[:head], fitted_times):
            features = np.vstack((fitted_features, fourier_features(times[head:], self.seasonalities)))
        else:
            features = fourier_features(times, self.seasonalities)
        beta = np.nanmean(params["beta"], axis=0)
        additive_mask = additive_columns(self.seasonalities)
        additive = features @ (beta * additive_mask) * self.y_scale
        multiplicative = features @ (beta * (1 - additive_mask))
        return trend, np.asarray(trend * multiplicative + additive)


@dataclass(frozen=True)
class StanInput:
    """Prophet's ``dat`` and ``stan_init`` for one fit, and the terms the fitted parameters belong to."""

    terms: Terms
    data: dict[str, Any]
    init: dict[str, Any]

    @property
    def changepoints(self) -> bool:
        """Whether the trend has changepoints; without, ``t_change`` holds Prophet's dummy one at 0."""
        return bool(self.data["t_change"][0] > 0)


def stan_input(times: np.ndarray, y: np.ndarray, options: dict[str, Any]) -> StanInput | None:
    """What ``Prophet(**options).fit`` would hand Stan for this history; None for a model it does not cover.

    ``times`` are the observed points' unix seconds, strictly increasing,
    and ``y`` their finite values. Covered: the options in ``DEFAULTS``
    with linear or flat growth and no uncertainty sampling (a simulated band
    needs Prophet's own predict).
    """
    if set(options) - set(DEFAULTS):
        return None
    opts = {**DEFAULTS, **options}
    if opts["growth"] not in _TREND_INDICATOR or opts["uncertainty_samples"] != 0:
        return None
    if len(times) < 2:
        raise ValueError("Dataframe has less than 2 non-NaN rows.")
    if opts["scaling"] == "absmax":
        floor = 0.0
        y_scale = float(np.abs(y).max())
    else:
        floor = float(y.min())
        y_scale = float(y.max() - floor)
    if y_scale == 0:
        y_scale = 1.0
    start = float(times[0])
    t_scale = float(times[-1] - start)
    t = (times - start) / t_scale
    y_scaled = (y - floor) / y_scale
    changepoints_t = _changepoints_t(t, int(opts["n_changepoints"]), float(opts["changepoint_range"]))
    seasonalities = _seasonalities(times, opts)
    if seasonalities:
        x = _grid_features(times, tuple(seasonalities))
        sigmas = [s.prior_scale for s in seasonalities for _ in range(2 * s.order)]
        additive = additive_columns(seasonalities).astype(np.int64)
        multiplicative = 1 - additive
    else:
        # With no seasonal terms Prophet hands Stan one all-zero column, so that Stan never sees an empty matrix.
        x = np.zeros((len(times), 1))
        sigmas = [1.0]
        additive = multiplicative = np.zeros(1, dtype=np.int64)
    terms = Terms(opts["growth"], floor, y_scale, start, t_scale, np.asarray(changepoints_t), tuple(seasonalities))
    data = {
        "T": len(times),
        "S": len(changepoints_t),
        "K": x.shape[1],
        "tau": float(opts["changepoint_prior_scale"]),
        "trend_indicator": _TREND_INDICATOR[opts["growth"]],
        "y": y_scaled,
        "t": t,
        "cap": np.zeros(len(times)),
        "t_change": changepoints_t,
        "s_a": additive,
        "s_m": multiplicative,
        "X": x,
        "sigmas": sigmas,
    }
    if opts["growth"] == "linear":
        # Prophet's ``linear_growth_init``: the line through the first and last points.
        k = (y_scaled[-1] - y_scaled[0]) / (t[-1] - t[0])
        m = y_scaled[0] - k * t[0]
    else:
        k, m = 0, y_scaled.mean()
    init = {"k": k, "m": m, "delta": np.zeros_like(changepoints_t), "beta": np.zeros(x.shape[1]), "sigma_obs": 1.0}
    return StanInput(terms, data, init)


def _changepoints_t(t: np.ndarray, n_changepoints: int, changepoint_range: float) -> np.ndarray:
    """Prophet's ``set_changepoints``: evenly through the first ``changepoint_range`` of the points.

    Fewer when the history is short; a single dummy changepoint at 0 when there are none.
    """
    hist_size = int(np.floor(len(t) * changepoint_range))
    n_changepoints = min(n_changepoints, hist_size - 1)
    if n_changepoints <= 0:
        return np.array([0])
    indexes = np.linspace(0, hist_size - 1, n_changepoints + 1).round().astype(int)
    return np.sort(t[indexes[1:]])


def _seasonalities(times: np.ndarray, opts: dict[str, Any]) -> list[Seasonality]:
    """Prophet's ``set_auto_seasonalities``: each built-in seasonality's order from its option."""
    span_days = (times[-1] - times[0]) / DAY
    min_step_days = float(np.diff(times).min()) / DAY
    out = []
    for name, period, default_order, min_span_days in _BUILT_IN:
        arg = opts[f"{name}_seasonality"]
        if arg == "auto":
            # Prophet never disables yearly terms for coarse sampling, only for a short history.
            too_coarse = name != "yearly" and min_step_days >= period
            order = 0 if span_days < min_span_days or too_coarse else default_order
        elif arg is True:
            order = default_order
        elif arg is False:
            order = 0
        else:
            order = int(arg)
        if order > 0:
            additive = opts["seasonality_mode"] == "additive"
            out.append(Seasonality(name, period, order, additive, float(opts["seasonality_prior_scale"])))
    return out


def fourier_features(times: np.ndarray, seasonalities: tuple[Seasonality, ...] | list[Seasonality]) -> np.ndarray:
    """Prophet's feature matrix: per block, sin and cos of each harmonic side by side (``Prophet.fourier_series``).

    Computed as Prophet does, from days since the epoch, so that the matrix
    Stan receives matches Prophet's to the last bit.
    """
    x_t = np.pi * 2 * (times / DAY)
    columns = []
    for s in seasonalities:
        block = np.empty((len(times), 2 * s.order))
        for i in range(s.order):
            c = (i + 1) / s.period * x_t
            block[:, 2 * i] = np.sin(c)
            block[:, 2 * i + 1] = np.cos(c)
        columns.append(block)
    return np.hstack(columns)


class _LastGrid:
    """The last history's times and Fourier features, handed out again for a history on the same times.

    A forecast's series come from one range query, so they share its grid
    (all of them, unless samples are missing), and a fit worker fits them one
    after another: computing the features once per grid instead of once per
    series saves a tenth of a warm fit. The arrays are read-only, so a caller
    cannot change what the next fit receives; the entry is replaced whole, so
    threads fitting side by side (``workers: 0``) each see one consistent entry.
    """

    def __init__(self) -> None:
        self._last: tuple[np.ndarray, tuple[Seasonality, ...], np.ndarray] | None = None

    def features(self, times: np.ndarray, seasonalities: tuple[Seasonality, ...]) -> np.ndarray:
        last = self._last
        if last is not None and last[1] == seasonalities and np.array_equal(last[0], times):
            return last[2]
        features = fourier_features(times, seasonalities)
        kept = np.array(times, dtype=np.float64)
        kept.flags.writeable = features.flags.writeable = False
        self._last = (kept, seasonalities, features)
        return features


_grid_features = _LastGrid().features


def additive_columns(seasonalities: tuple[Seasonality, ...] | list[Seasonality]) -> np.ndarray:
    """1.0 for each feature column of an additive block, 0.0 for a multiplicative one."""
    return np.concatenate([np.full(2 * s.order, 1.0 if s.additive else 0.0) for s in seasonalities])


def piecewise_linear(t: np.ndarray, deltas: np.ndarray, k: float, m: float, changepoints_t: np.ndarray) -> np.ndarray:
    """Prophet's ``piecewise_linear``: the rate changes by ``deltas`` at each changepoint, continuously.

    To the bit, at a thirtieth of the cost. Prophet sums, for every time,
    the row of deltas whose changepoints it has passed. The changepoints are
    sorted (Prophet sorts them), so that row is the first c deltas and zeros,
    and there are only as many different rows as changepoints plus one: each
    is summed once, by the same reduction, and every time takes its own.
    """
    passed = np.tri(len(changepoints_t) + 1, len(changepoints_t), -1, dtype=bool) * deltas
    rate = passed.sum(axis=1) + k
    offset = (passed * -changepoints_t).sum(axis=1) + m
    row = np.searchsorted(changepoints_t, t, side="right")
    return np.asarray(rate[row] * t + offset[row])
