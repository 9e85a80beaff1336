"""Driving Prophet: the curves read straight from the fitted parameters are Prophet's own."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from devtools.synthetic import Signal
from forecaster.duration import DAY
from forecaster.model import exact_map, prophet, stan_design
from forecaster.model.cleaning import Prepared, prepare
from forecaster.model.frame import frame_times
from forecaster.model.options import FitSpec
from forecaster.model.seasonality import prophet_options
from tests.helpers import public_file

STEP = 300.0


@pytest.fixture
def stan_solves(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every lean fit solved by Stan, as the models ``exact_map`` does not cover are (its own tests compare the two)."""
    monkeypatch.setattr(exact_map, "solve", lambda data, init: None)


def _predicted(model: object, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predicted = model.predict(pd.DataFrame({"ds": pd.to_datetime(times, unit="s")}))  # type: ignore[attr-defined]
    trend = predicted["trend"].to_numpy()
    return trend, predicted["yhat"].to_numpy() - trend


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {"daily_seasonality": True, "weekly_seasonality": 14},
        {"daily_seasonality": True, "weekly_seasonality": False, "growth": "flat"},
        {"daily_seasonality": 6, "weekly_seasonality": 3, "seasonality_mode": "multiplicative"},
        {"daily_seasonality": True, "weekly_seasonality": True, "scaling": "minmax", "changepoint_prior_scale": 0.5},
        {"daily_seasonality": False, "weekly_seasonality": False, "yearly_seasonality": False},
    ],
    ids=["daily+weekly", "flat", "multiplicative", "minmax", "none"],
)
def test_the_curves_read_from_the_parameters_are_prophets_own(options):
    t = 1_700_000_000.0 + np.arange(0, 15 * DAY, STEP)
    y = Signal(base=300, daily=60, weekly=25, trend_per_day=4, noise=5).sample(t, 3)
    model = prophet.load_prophet()(uncertainty_samples=0, **options)
    model.fit(pd.DataFrame({"ds": pd.to_datetime(t, unit="s"), "y": y}))
    times = np.concatenate((t, t[-1] + STEP * np.arange(1, 2 * 288 + 1)))
    trend, rest = prophet.components(model, times)
    expected_trend, expected_rest = _predicted(model, times)
    scale = np.abs(y).max()
    np.testing.assert_allclose(trend, expected_trend, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(rest, expected_rest, rtol=0, atol=1e-9 * scale)


@pytest.mark.slow
def test_a_model_with_events_is_read_through_prophets_own_predict():
    t = 1_700_000_000.0 + np.arange(0, 15 * DAY, STEP)
    y = Signal(base=300, daily=60, noise=5).sample(t, 4)
    events = pd.DataFrame(
        {"holiday": "launch", "ds": pd.to_datetime(["2023-11-20"]), "lower_window": 0, "upper_window": 0}
    )
    model = prophet.load_prophet()(uncertainty_samples=0, holidays=events)
    model.fit(pd.DataFrame({"ds": pd.to_datetime(t, unit="s"), "y": y}))
    assert not prophet._plain(model)
    trend, rest = prophet.components(model, t)
    expected_trend, expected_rest = _predicted(model, t)
    np.testing.assert_array_equal(trend, expected_trend)
    np.testing.assert_array_equal(rest, expected_rest)


def test_the_fits_own_fourier_features_serve_its_frame_to_the_bit():
    t = 1_700_000_000.0 + np.arange(0, 3 * DAY, STEP)
    y = Signal(base=300, daily=60, noise=5).sample(t, 5)
    options = {"daily_seasonality": True, "weekly_seasonality": False, "uncertainty_samples": 0}
    model = prophet.fit(Prepared(t, y, y, "none", 0.0, 0), 0.8, options, None)
    assert isinstance(model, prophet.LeanModel) and model.fitted is not None
    future = t[-1] + STEP * np.arange(1, 289)
    # The frame's grid, the fit's times with a gap in them, and times before the fit's: only the first reuses them.
    for times in (np.concatenate((t, future)), np.concatenate((t[:100], t[101:], future)), t - STEP):
        reused = prophet.components(model, times)
        computed = model.terms.components(model.params, times)
        for got, expected in zip(reused, computed, strict=True):
            np.testing.assert_array_equal(got, expected)


def _prophets_own_input(times: np.ndarray, y: np.ndarray, options: dict) -> tuple[dict, dict]:
    """What ``Prophet.fit`` hands its Stan backend for this history: the data and the initial values."""
    model = prophet.load_prophet()(**options)
    inputs = model.preprocess(pd.DataFrame({"ds": pd.to_datetime(times, unit="s"), "y": y}))
    return dataclasses.asdict(inputs), dataclasses.asdict(model.calculate_initial_params(inputs.K))


_SHAPES = {
    # 15 days at 5m with a trend: the service's usual case.
    "5m": (1_700_000_000.0 + np.arange(0, 15 * DAY, STEP), Signal(base=300, daily=60, weekly=25, trend_per_day=4)),
    # 60 points: Newton instead of L-BFGS, and fewer changepoints than asked for.
    "short": (1_700_000_000.0 + np.arange(0, 60 * 3600.0, 3600.0), Signal(base=5, daily=2, noise=0.3)),
    # Daily points over three years: yearly terms, and no daily ones under ``auto``.
    "daily": (1_600_000_000.0 + np.arange(0, 3 * 365 * DAY, DAY), Signal(base=-20, daily=0, weekly=3, noise=1)),
}


@pytest.mark.parametrize("shape", list(_SHAPES))
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"daily_seasonality": True, "weekly_seasonality": 14, "changepoint_range": 0.9},
        {"growth": "flat", "weekly_seasonality": False},
        {"seasonality_mode": "multiplicative", "daily_seasonality": 6, "seasonality_prior_scale": 3.0},
        {"scaling": "minmax", "changepoint_prior_scale": 0.5, "n_changepoints": 7},
        {"daily_seasonality": False, "weekly_seasonality": False, "yearly_seasonality": False, "n_changepoints": 0},
    ],
    ids=["defaults", "service", "flat", "multiplicative", "minmax", "bare"],
)
def test_the_lean_stan_input_is_prophets_own_to_the_bit(shape, options):
    times, signal = _SHAPES[shape]
    # Gaps, as a history with missing samples has.
    keep = np.random.default_rng(1).random(len(times)) > 0.1
    times, y = times[keep], signal.sample(times, 2)[keep]
    options = {**options, "uncertainty_samples": 0}
    ours = stan_design.stan_input(times, y, options)
    assert ours is not None
    data, init = _prophets_own_input(times, y, options)
    assert set(ours.data) == set(data)
    for name, value in data.items():
        np.testing.assert_array_equal(np.asarray(ours.data[name]), np.asarray(value), err_msg=name)
    for name, value in init.items():
        np.testing.assert_array_equal(np.asarray(ours.init[name]), np.asarray(value), err_msg=name)


@pytest.mark.parametrize(
    ("options", "events"),
    [
        ({"uncertainty_samples": 1000}, ()),
        ({"uncertainty_samples": 0, "growth": "logistic"}, ()),
        ({"uncertainty_samples": 0, "holidays_prior_scale": 1.0}, ()),
        ({"uncertainty_samples": 0}, (("launch", "2023-11-20", 0, 0),)),
    ],
    ids=["simulated band", "logistic", "unknown option", "events"],
)
def test_models_the_lean_path_does_not_cover_go_through_prophet(options, events):
    t = 1_700_000_000.0 + np.arange(0, 3 * DAY, 3600.0)
    y = Signal(base=10, daily=2).sample(t, 1)
    assert events or stan_design.stan_input(t, y, options) is None
    if not events:
        return
    model = prophet.fit(Prepared(t, y, y, "none", 0.0, 0), 0.8, options, None, events=events)
    assert not isinstance(model, prophet.LeanModel)


def _assert_lean_matches_prophet(times: np.ndarray, y: np.ndarray, options: dict, future: np.ndarray) -> None:
    """The lean fit's curves against ``Prophet.fit`` then ``Prophet.predict``, cold and warm-started.

    Within 1e-6 of the series' scale: Stan receives the same numbers either
    way (see the test above) and optimises deterministically, so the fits
    agree to the last bit and only the curves' float rounding differs
    (about 1e-12); a fit that stopped elsewhere within L-BFGS's tolerances
    would differ by 1e-5 or more.
    """
    prepared = Prepared(times, y, y, "none", 0.0, 0)
    at = np.concatenate((times, future))
    scale = np.abs(y).max()
    warm = None
    for _ in ("cold", "warm"):
        lean = prophet.fit(prepared, 0.8, options, warm)
        assert isinstance(lean, prophet.LeanModel)
        reference = prophet.fit(prepared, 0.8, options, warm, lean=False)
        trend, rest = prophet.components(lean, at)
        expected_trend, expected_rest = _predicted(reference, at)
        np.testing.assert_allclose(trend, expected_trend, rtol=0, atol=1e-6 * scale)
        np.testing.assert_allclose(rest, expected_rest, rtol=0, atol=1e-6 * scale)
        expected = prophet.warm_params(reference)
        for name, value in prophet.warm_params(lean).items():
            np.testing.assert_allclose(value, expected[name], rtol=1e-9, atol=1e-12, err_msg=name)
        # The next fit starts from this one, as a retrain does, on data that moved a little.
        warm, y = prophet.warm_params(lean), y * 1.01 + 0.5
        prepared = Prepared(times, y, y, "none", 0.0, 0)
        scale = np.abs(y).max()


@pytest.mark.slow
@pytest.mark.parametrize("shape", list(_SHAPES))
@pytest.mark.parametrize(
    "options",
    [
        {"daily_seasonality": True, "weekly_seasonality": 14, "changepoint_range": 0.9},
        {"growth": "flat", "weekly_seasonality": 3},
        {"seasonality_mode": "multiplicative", "scaling": "minmax", "n_changepoints": 7},
        {"daily_seasonality": False, "weekly_seasonality": False, "yearly_seasonality": False, "n_changepoints": 0},
    ],
    ids=["service", "flat", "multiplicative-minmax", "bare"],
)
def test_lean_and_prophet_fits_forecast_the_same(shape, options, stan_solves):
    times, signal = _SHAPES[shape]
    y = signal.sample(times, 5)
    step = float(times[1] - times[0])
    future = times[-1] + step * np.arange(1, 100)
    _assert_lean_matches_prophet(times, y, {**options, "uncertainty_samples": 0}, future)


_FILES = [
    "nab_ec2_cpu_utilization_825cc2.csv",
    "nab_nyc_taxi.csv",
    "nab_speed_6005.csv",
    "prophet_wp_log_peyton_manning.csv",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", _FILES)
def test_lean_and_prophet_fits_forecast_the_same_on_public_files(name, stan_solves):
    ts, ys, step = public_file(name)
    spec = FitSpec(step=step, horizon=DAY, interval_width=0.8, min_points=10)
    # The service's own preparation and options, so that the options compared are those it fits with.
    prepared = prepare(ts, ys, spec)
    options = prophet_options(prepared, spec)
    observed = np.isfinite(prepared.y)
    future = frame_times(float(prepared.grid[-1]) + step, step, spec.horizon)
    _assert_lean_matches_prophet(prepared.grid[observed], prepared.y[observed], options, future)


@pytest.mark.slow
def test_prophets_band_of_a_lean_fit_without_samples_is_its_forecast(stan_solves):
    # ``band: prophet`` with ``uncertainty_samples: 0``: Prophet's predict then has no band either.
    t = 1_700_000_000.0 + np.arange(0, 3 * DAY, STEP)
    y = Signal(base=40, daily=8, noise=1).sample(t, 6)
    prepared = Prepared(t, y, y, "none", 0.0, 0)
    options = {"daily_seasonality": True, "uncertainty_samples": 0}
    lean = prophet.fit(prepared, 0.8, options, None)
    assert isinstance(lean, prophet.LeanModel)
    ds = t[-1] + STEP * np.arange(1, 50)
    band = prophet.simulated_band(lean, ds)
    expected = prophet.simulated_band(prophet.fit(prepared, 0.8, options, None, lean=False), ds)
    np.testing.assert_allclose(band.yhat, expected.yhat, rtol=0, atol=1e-6 * np.abs(y).max())
    np.testing.assert_array_equal(band.yhat_lower, band.yhat)
    np.testing.assert_array_equal(band.yhat_upper, band.yhat)
