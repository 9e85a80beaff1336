"""The exact MAP solve is Prophet's model: Stan, started at its answer, stays there, and nowhere scores higher."""

from __future__ import annotations

import numpy as np
import pytest

from devtools.synthetic import Signal
from forecaster.duration import DAY
from forecaster.model import exact_map, stan_design, stan_optimize
from forecaster.model.cleaning import prepare
from forecaster.model.options import FitSpec
from forecaster.model.seasonality import prophet_options
from tests.helpers import public_file

_T0 = 1_700_000_000.0
_SHAPES = {
    "5m": (_T0 + np.arange(0, 15 * DAY, 300.0), Signal(base=300, daily=60, weekly=25, trend_per_day=4, noise=5)),
    "noisy": (_T0 + np.arange(0, 14 * DAY, 300.0), Signal(base=5, daily=0.1, noise=2)),
    "short": (_T0 + np.arange(0, 60 * 3600.0, 3600.0), Signal(base=5, daily=2, noise=0.3)),
    "daily": (1_600_000_000.0 + np.arange(0, 3 * 365 * DAY, DAY), Signal(base=-20, weekly=3, noise=1)),
}
_OPTIONS = {
    "defaults": {},
    "service": {"daily_seasonality": True, "weekly_seasonality": 14, "changepoint_range": 0.9},
    "flat": {"growth": "flat", "weekly_seasonality": False},
    "minmax": {"scaling": "minmax", "changepoint_prior_scale": 0.5, "n_changepoints": 7},
    "bare": {"daily_seasonality": False, "weekly_seasonality": False, "yearly_seasonality": False, "n_changepoints": 0},
}


def _curve(inputs: stan_design.StanInput, params: dict) -> np.ndarray:
    """The fitted curve over the history and a fifth of its span beyond, in the scaled units Stan sees."""
    terms = inputs.terms
    times = terms.start + terms.t_scale * np.concatenate((inputs.data["t"], 1 + np.linspace(0, 0.2, 200)))
    shaped = {name: np.asarray(value, dtype=np.float64).reshape(1, -1) for name, value in params.items()}
    trend, rest = terms.components(shaped, times)
    return (trend + rest) / terms.y_scale


def _assert_exact(inputs: stan_design.StanInput) -> None:
    cold = exact_map.solve(inputs.data, inputs.init)
    assert cold is not None
    from_prophets_init = stan_optimize._run(inputs.data, inputs.init, None)
    # Where L-BFGS stopped from Prophet's initial values scores no higher than the exact answer (on a 14-day series it
    # stopped 0.03-67 lower), so the answer is at least as good a fit of Prophet's model.
    lp = exact_map.log_posterior(inputs.data, cold)
    assert lp >= exact_map.log_posterior(inputs.data, from_prophets_init) - 1e-9 * abs(lp)
    # Stan started at the answer finds nothing better and ends where it started: its own optimality test agrees.
    start = {**cold, **{name: float(cold[name][0]) for name in ("k", "m", "sigma_obs")}}
    confirmed = stan_optimize._run(inputs.data, start, None)
    np.testing.assert_allclose(_curve(inputs, confirmed), _curve(inputs, cold), rtol=0, atol=1e-5)
    assert exact_map.log_posterior(inputs.data, confirmed) <= lp + 1e-9 * abs(lp)
    # A warm start (the previous fit's active changepoints) reaches the same answer.
    warm = exact_map.solve(inputs.data, {**start, "delta": from_prophets_init["delta"]})
    assert warm is not None
    np.testing.assert_allclose(_curve(inputs, warm), _curve(inputs, cold), rtol=0, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("shape", list(_SHAPES))
@pytest.mark.parametrize("options", list(_OPTIONS))
def test_the_exact_answer_is_prophets_optimum(shape, options):
    times, signal = _SHAPES[shape]
    keep = np.random.default_rng(3).random(len(times)) > 0.1
    times, y = times[keep], signal.sample(times, 4)[keep]
    inputs = stan_design.stan_input(times, y, {**_OPTIONS[options], "uncertainty_samples": 0})
    assert inputs is not None
    _assert_exact(inputs)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["nab_ec2_cpu_utilization_825cc2.csv", "nab_rds_cpu_utilization_e47b3b.csv", "nab_nyc_taxi.csv"]
)
def test_the_exact_answer_is_prophets_optimum_on_public_files(name):
    ts, ys, step = public_file(name)
    keep = ts >= ts[-1] - 14 * DAY
    spec = FitSpec(step=step, horizon=DAY, interval_width=0.8, min_points=10)
    prepared = prepare(ts[keep], ys[keep], spec)
    observed = np.isfinite(prepared.y)
    inputs = stan_design.stan_input(prepared.grid[observed], prepared.y[observed], prophet_options(prepared, spec))
    assert inputs is not None
    _assert_exact(inputs)


def _inputs(**options) -> stan_design.StanInput:
    t = _T0 + np.arange(0, 3 * DAY, 600.0)
    y = Signal(base=50, daily=10, noise=1).sample(t, 2)
    inputs = stan_design.stan_input(t, y, {**options, "uncertainty_samples": 0})
    assert inputs is not None
    return inputs


def test_multiplicative_seasonality_is_left_to_stan():
    assert exact_map.solve(_inputs(seasonality_mode="multiplicative").data, _inputs().init) is None


def test_a_model_with_hundreds_of_changepoints_is_left_to_stan():
    inputs = _inputs(n_changepoints=300)
    assert inputs.data["S"] == 300
    assert exact_map.solve(inputs.data, inputs.init) is None


def test_a_solve_that_does_not_settle_is_left_to_stan(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(exact_map, "_MIN_STEPS", 1)
    monkeypatch.setattr(exact_map, "_STEPS_PER_CHANGEPOINT", 0)
    inputs = _inputs(daily_seasonality=True)
    assert exact_map.solve(inputs.data, inputs.init) is None
    ran = []
    real = stan_optimize._run
    monkeypatch.setattr(stan_optimize, "_run", lambda *args: ran.append(args) or real(*args))
    params = stan_optimize.optimize(inputs, None, None)
    assert len(ran) == 1 and np.isfinite(params["beta"]).all()


def test_a_fit_is_solved_without_stan_where_it_can_be(monkeypatch: pytest.MonkeyPatch):
    def no_stan(*args):
        raise AssertionError("Stan ran for a model the exact solve covers")

    monkeypatch.setattr(stan_optimize, "_run", no_stan)
    params = stan_optimize.optimize(_inputs(daily_seasonality=True), None, None)
    assert params["delta"].shape[0] == 1 and params["sigma_obs"][0, 0] > 0


def _fresh_solve(monkeypatch: pytest.MonkeyPatch, inputs: stan_design.StanInput) -> dict:
    """The solve with nothing remembered from earlier fits."""
    with monkeypatch.context() as patched:
        patched.setattr(exact_map, "_last_design", exact_map._LastDesign())
        params = exact_map.solve(inputs.data, inputs.init)
    assert params is not None
    return params


@pytest.mark.parametrize(
    "second",
    [
        {},
        {"n_changepoints": 10},
        {"changepoint_range": 0.5},
        {"growth": "flat"},
        {"weekly_seasonality": 3},
        {"daily_seasonality": 2},
    ],
    ids=["same model", "fewer changepoints", "other range", "flat", "weekly terms", "fewer daily terms"],
)
def test_a_fit_on_the_same_grid_reuses_the_design_and_gets_the_same_answer(monkeypatch: pytest.MonkeyPatch, second):
    # A forecast's series share their query's grid; the next series' fit must not inherit anything but the columns.
    times = _T0 + np.arange(0, 4 * DAY, 300.0)
    base = {"daily_seasonality": True, "uncertainty_samples": 0}
    first = stan_design.stan_input(times, Signal(base=50, daily=10, noise=1).sample(times, 1), base)
    other = stan_design.stan_input(
        times, Signal(base=-3, daily=1, trend_per_day=2, noise=0.5).sample(times, 2), {**base, **second}
    )
    assert first is not None and other is not None
    assert exact_map.solve(first.data, first.init) is not None
    params = exact_map.solve(other.data, other.init)
    assert params is not None
    for name, value in _fresh_solve(monkeypatch, other).items():
        np.testing.assert_array_equal(params[name], value, err_msg=name)
    # The same model on the same times shares one feature matrix, which no caller can change.
    if not second:
        assert other.data["X"] is first.data["X"]
        with pytest.raises(ValueError, match="read-only"):
            other.data["X"][0, 0] = 1.0


def test_a_fit_on_other_times_builds_its_own_design(monkeypatch: pytest.MonkeyPatch):
    times = _T0 + np.arange(0, 4 * DAY, 300.0)
    signal = Signal(base=50, daily=10, trend_per_day=3, noise=1)
    options = {"daily_seasonality": True, "uncertainty_samples": 0}
    whole = stan_design.stan_input(times, signal.sample(times, 1), options)
    # One sample missing, as when a scrape failed: same length of history, other times.
    gappy_times = np.delete(_T0 + np.arange(0, 4 * DAY + 300.0, 300.0), 500)
    gappy = stan_design.stan_input(gappy_times, signal.sample(gappy_times, 1), options)
    assert whole is not None and gappy is not None and len(gappy_times) == len(times)
    assert gappy.data["X"] is not whole.data["X"]
    assert exact_map.solve(whole.data, whole.init) is not None
    params = exact_map.solve(gappy.data, gappy.init)
    assert params is not None
    for name, value in _fresh_solve(monkeypatch, gappy).items():
        np.testing.assert_array_equal(params[name], value, err_msg=name)
