"""The Prophet wrapper: one fit on a prepared history, warm-started, and its curves read back.

Decides how Prophet is driven, not what it is told: the options come from
``seasonality.prophet_options``. A fit starts from the previous fit's
parameters when they fit this model's shape (Prophet's documented warm
start; several times faster). The models this service builds by default (a
linear or flat trend, Fourier seasonalities, no simulated band) skip
Prophet's data frames: ``stan_design`` builds the arrays Prophet would hand
Stan, and ``stan_optimize`` solves Prophet's model on them (exactly with
numpy where it can, otherwise with Prophet's compiled Stan model as
Prophet's backend runs it). Events, holidays and Prophet's own band go
through ``Prophet.fit``. Prophet is imported lazily and once, with its log
noise turned down, so that importing this module costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from forecaster.model import stan_design, stan_optimize
from forecaster.model.cleaning import Prepared
from forecaster.model.frame import Frame


@dataclass(frozen=True)
class LeanModel:
    """A model fitted on ``stan_design``'s arrays: Prophet-shaped ``params`` and the terms they belong to."""

    terms: stan_design.Terms
    params: dict[str, np.ndarray]
    # The times it was fitted at and their Fourier features (Stan's X), which ``components`` takes instead of computing
    # them again where it is asked for the same times.
    fitted: tuple[np.ndarray, np.ndarray] | None = None


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
    lean: bool = True,
) -> Any:
    """A fitted model of the prepared history's observed points; TimeoutError after ``timeout`` seconds.

    A ``LeanModel`` when ``stan_design`` covers the options, a fitted
    ``Prophet`` otherwise or with ``lean=False`` (the reference the lean
    path is tested against); ``components``, ``warm_params`` and
    ``simulated_band`` take either. ``events`` are Prophet's holiday rows
    (name, ISO date, lower_window, upper_window) and ``country`` a country
    whose public holidays are added; each gets a fitted effect that the
    forecast carries wherever it recurs. Either way the timeout stops the
    solver process itself.
    """
    observed = np.isfinite(prepared.y)
    times, values = prepared.grid[observed], prepared.y[observed]
    inputs = stan_design.stan_input(times, values, options) if lean and not events and not country else None
    if inputs is not None:
        params = stan_optimize.optimize(inputs, warm, timeout)
        return LeanModel(inputs.terms, params, (times, inputs.data["X"]) if inputs.terms.seasonalities else None)
    import pandas as pd

    holidays = None
    if events:
        holidays = pd.DataFrame(list(events), columns=["holiday", "ds", "lower_window", "upper_window"])
        holidays["ds"] = pd.to_datetime(holidays["ds"])
    model = load_prophet()(interval_width=interval_width, holidays=holidays, **options)
    if country:
        model.add_country_holidays(country_name=country)
    history = pd.DataFrame({"ds": pd.to_datetime(times, unit="s"), "y": values})
    n_changepoints = min(model.n_changepoints, int(np.floor(len(history) * model.changepoint_range)) - 1)
    init = stan_optimize.compatible_init(max(n_changepoints, 1), warm)
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


def components(model: Any, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trend and everything else (seasonality, events) at ``times``, without Prophet's uncertainty sampling.

    Read straight from the fitted parameters with Prophet's own formulas
    (see ``stan_design.Terms.components``): ``Prophet.predict`` builds data
    frames and pivot tables to do the same and cost a sixth of a warm fit.
    Models with events, holidays, conditional seasonalities, regressors or
    logistic growth, none of which this shortcut evaluates, go through
    ``Prophet.predict``.
    """
    if isinstance(model, LeanModel):
        return model.terms.components(model.params, times, model.fitted)
    if not _plain(model):
        return _predicted_components(model, times)
    return _terms(model).components(model.params, times)


def _plain(model: Any) -> bool:
    """Whether the model holds only a linear or flat trend and unconditional seasonalities."""
    return (
        model.growth in ("linear", "flat")
        and not model.extra_regressors
        and (model.train_holiday_names is None or len(model.train_holiday_names) == 0)
        and all(props["condition_name"] is None for props in model.seasonalities.values())
    )


def _terms(model: Any) -> stan_design.Terms:
    """A fitted plain Prophet model's terms and scales, as ``stan_design`` describes its own fits."""
    return stan_design.Terms(
        growth=model.growth,
        floor=float(model.y_min) if model.scaling == "minmax" else 0.0,
        y_scale=float(model.y_scale),
        start=model.start.timestamp(),
        t_scale=model.t_scale.total_seconds(),
        changepoints_t=np.asarray(model.changepoints_t),
        seasonalities=tuple(
            stan_design.Seasonality(
                name, props["period"], props["fourier_order"], props["mode"] == "additive", props["prior_scale"]
            )
            for name, props in model.seasonalities.items()
        ),
    )


def _predicted_components(model: Any, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    predicted = model.predict(pd.DataFrame({"ds": pd.to_datetime(times, unit="s")}))
    trend = predicted["trend"].to_numpy(dtype=np.float64)
    return trend, predicted["yhat"].to_numpy(dtype=np.float64) - trend


def simulated_band(model: Any, ds: np.ndarray) -> Frame:
    """``band: prophet``: Prophet's own forecast and its simulated band at ``ds``.

    A model fitted without uncertainty samples (always so for a ``LeanModel``)
    has no band: its edges are the forecast, as in ``Prophet.predict``.
    """
    import pandas as pd

    if isinstance(model, LeanModel):
        trend, rest = components(model, ds)
        yhat = trend + rest
        return Frame(ds, yhat, yhat.copy(), yhat.copy())

    predicted = model.predict(pd.DataFrame({"ds": pd.to_datetime(ds, unit="s")}))
    yhat = predicted["yhat"].to_numpy(dtype=np.float64)
    if "yhat_lower" not in predicted:
        return Frame(ds, yhat, yhat.copy(), yhat.copy())
    lower = predicted["yhat_lower"].to_numpy(dtype=np.float64)
    return Frame(ds, yhat, lower, predicted["yhat_upper"].to_numpy(dtype=np.float64))
