"""The Prophet wrapper: one fit on a prepared history, warm-started, and its curves read back.

Decides how Prophet is driven, not what it is told: the options come from
``seasonality.prophet_options``. A fit starts from the previous fit's
parameters when they fit this model's shape (Prophet's documented warm
start; several times faster), and Stan's input goes through the faster
JSON writer of ``stan_json``. Prophet is imported lazily and once, with its
log noise turned down, so that importing this module costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from forecaster.model.cleaning import Prepared
from forecaster.model.frame import Frame
from forecaster.model.seasonality import DAY, fourier

_WARM_KEYS = ("k", "m", "sigma_obs", "delta", "beta")


def load_prophet() -> Any:
    """Import Prophet with its log noise turned down: an ERROR about plotly on import, INFO lines on every fit."""
    logging.getLogger("prophet.plot").disabled = True
    cmdstanpy_log = logging.getLogger("cmdstanpy")
    # cmdstanpy installs its own INFO handler unless the logger already has one.
    if not cmdstanpy_log.handlers:
        cmdstanpy_log.addHandler(logging.NullHandler())
    cmdstanpy_log.setLevel(logging.WARNING)
    from prophet import Prophet

    from forecaster.model import stan_json

    logging.getLogger("prophet").setLevel(logging.WARNING)
    stan_json.install()
    return Prophet


def fit(
    prepared: Prepared,
    interval_width: float,
    options: dict[str, Any],
    warm: dict[str, Any] | None,
    timeout: float | None = None,
    events: Sequence[tuple[str, str, int, int]] = (),
    country: str | None = None,
) -> Any:
    """A fitted Prophet model of the prepared history's observed points; TimeoutError after ``timeout`` seconds.

    ``events`` are Prophet's holiday rows (name, ISO date, lower_window,
    upper_window) and ``country`` a country whose public holidays are added;
    each gets a fitted effect that the forecast carries wherever it recurs.
    The timeout goes to cmdstanpy, which stops the solver process itself.
    """
    import pandas as pd

    observed = np.isfinite(prepared.y)
    holidays = None
    if events:
        holidays = pd.DataFrame(list(events), columns=["holiday", "ds", "lower_window", "upper_window"])
        holidays["ds"] = pd.to_datetime(holidays["ds"])
    model = load_prophet()(interval_width=interval_width, holidays=holidays, **options)
    if country:
        model.add_country_holidays(country_name=country)
    history = pd.DataFrame({"ds": pd.to_datetime(prepared.grid[observed], unit="s"), "y": prepared.y[observed]})
    init = _compatible_init(model, len(history), warm)
    extra: dict[str, Any] = {"timeout": timeout} if timeout else {}
    model.fit(history, init=init, **extra) if init else model.fit(history, **extra)
    return model


def warm_params(model: Any) -> dict[str, Any]:
    """The parameters Prophet's documented warm start takes (k, m, sigma_obs, delta, beta)."""
    out: dict[str, Any] = {}
    for name in ("k", "m", "sigma_obs"):
        out[name] = float(model.params[name][0][0])
    for name in ("delta", "beta"):
        out[name] = [float(v) for v in model.params[name][0]]
    return out


def _compatible_init(model: Any, points: int, warm: dict[str, Any] | None) -> dict[str, Any] | None:
    """The previous fit's parameters as Prophet's ``init``, when they fit this model's changepoints.

    A mismatch in the seasonality terms is harmless: Stan then starts from its own
    default, which is what a cold fit does anyway.
    """
    if not warm or not all(key in warm for key in _WARM_KEYS):
        return None
    n_changepoints = min(model.n_changepoints, int(np.floor(points * model.changepoint_range)) - 1)
    if len(warm["delta"]) != max(n_changepoints, 1):
        return None
    return {
        "k": warm["k"],
        "m": warm["m"],
        "sigma_obs": warm["sigma_obs"],
        "delta": np.asarray(warm["delta"]),
        "beta": np.asarray(warm["beta"]),
    }


def components(model: Any, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trend and everything else (seasonality, events) at ``times``, without Prophet's uncertainty sampling.

    Read straight from the fitted parameters with Prophet's own formulas
    (``piecewise_linear``, its Fourier terms, ``trend * (1 + multiplicative) +
    additive``): ``Prophet.predict`` builds data frames and pivot tables to do
    the same and cost a sixth of a warm fit. Models with events, holidays,
    conditional seasonalities, regressors or logistic growth, none of which
    this shortcut evaluates, go through ``Prophet.predict``.
    """
    if not _plain(model):
        return _predicted_components(model, times)
    params = model.params
    k, m = float(np.nanmean(params["k"])), float(np.nanmean(params["m"]))
    if model.growth == "linear":
        t = (times - model.start.timestamp()) / model.t_scale.total_seconds()
        deltas = np.nanmean(params["delta"], axis=0)
        trend = model.piecewise_linear(t, deltas, k, m, np.asarray(model.changepoints_t))
    else:
        trend = np.full(len(times), m)
    trend = trend * model.y_scale + (model.y_min if model.scaling == "minmax" else 0.0)
    columns = [_prophet_fourier(times, p["period"], p["fourier_order"]) for p in model.seasonalities.values()]
    if not columns:
        return trend, np.zeros(len(times))
    features = np.hstack(columns)
    beta = np.nanmean(params["beta"], axis=0)
    modes = model.train_component_cols
    additive = features @ (beta * modes["additive_terms"].to_numpy()) * model.y_scale
    multiplicative = features @ (beta * modes["multiplicative_terms"].to_numpy())
    return trend, np.asarray(trend * multiplicative + additive)


def _plain(model: Any) -> bool:
    """Whether the model holds only a linear or flat trend and unconditional seasonalities."""
    return (
        model.growth in ("linear", "flat")
        and not model.extra_regressors
        and (model.train_holiday_names is None or len(model.train_holiday_names) == 0)
        and all(props["condition_name"] is None for props in model.seasonalities.values())
    )


def _prophet_fourier(times: np.ndarray, period_days: float, order: int) -> np.ndarray:
    """Prophet's Fourier terms (``Prophet.fourier_series``), which put each harmonic's sin and cos side by side."""
    terms = fourier(times, period_days * DAY, order)
    return np.stack((terms[:, :order], terms[:, order:]), axis=2).reshape(len(times), 2 * order)


def _predicted_components(model: Any, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    predicted = model.predict(pd.DataFrame({"ds": pd.to_datetime(times, unit="s")}))
    trend = predicted["trend"].to_numpy(dtype=np.float64)
    return trend, predicted["yhat"].to_numpy(dtype=np.float64) - trend


def simulated_band(model: Any, ds: np.ndarray) -> Frame:
    """``band: prophet``: Prophet's own forecast and its simulated band at ``ds``."""
    import pandas as pd

    predicted = model.predict(pd.DataFrame({"ds": pd.to_datetime(ds, unit="s")}))
    yhat = predicted["yhat"].to_numpy(dtype=np.float64)
    if "yhat_lower" not in predicted:
        return Frame(ds, yhat, yhat.copy(), yhat.copy())
    lower = predicted["yhat_lower"].to_numpy(dtype=np.float64)
    return Frame(ds, yhat, lower, predicted["yhat_upper"].to_numpy(dtype=np.float64))
