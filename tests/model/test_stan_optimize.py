"""Running Prophet's Stan model directly: its failures, its timeout, and the files it leaves (none).

The model here has multiplicative seasonality, which ``exact_map`` leaves to Stan.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from devtools.synthetic import Signal
from forecaster.duration import DAY
from forecaster.model import stan_design, stan_optimize

OPTIONS = {
    "daily_seasonality": True,
    "weekly_seasonality": False,
    "seasonality_mode": "multiplicative",
    "uncertainty_samples": 0,
}


def _inputs(days: float, step: float) -> stan_design.StanInput:
    t = 1_700_000_000.0 + np.arange(0, days * DAY, step)
    inputs = stan_design.stan_input(t, Signal(base=50, daily=10, trend_per_day=1, noise=1).sample(t, 7), OPTIONS)
    assert inputs is not None
    return inputs


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory, where Stan's files go, pointed at an empty one (as a fit worker does)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_a_fit_returns_prophets_parameters_and_leaves_no_files(scratch: Path):
    inputs = _inputs(3, 3600.0)
    params = stan_optimize.optimize(inputs, None, None)
    assert set(params) == {"k", "m", "delta", "sigma_obs", "beta"}
    assert params["delta"].shape == (1, inputs.data["S"]) and params["beta"].shape == (1, inputs.data["K"])
    assert params["sigma_obs"][0, 0] > 0
    assert list(scratch.iterdir()) == []


def test_a_solver_past_its_timeout_is_stopped(scratch: Path):
    with pytest.raises(TimeoutError, match=r"ran past 0\.001s"):
        stan_optimize.optimize(_inputs(28, 300.0), None, 0.001)
    assert list(scratch.iterdir()) == []


def test_a_failing_lbfgs_falls_back_to_newton_as_prophet_does(scratch: Path, monkeypatch: pytest.MonkeyPatch):
    real = stan_optimize._optimum
    algorithms = []

    def lbfgs_fails(executable, files, algorithm, timeout, data):
        algorithms.append(algorithm)
        if algorithm == "lbfgs":
            raise stan_optimize.StanFailed("lbfgs exited with code 70: Line search failed")
        return real(executable, files, algorithm, timeout, data)

    monkeypatch.setattr(stan_optimize, "_optimum", lbfgs_fails)
    params = stan_optimize.optimize(_inputs(2, 600.0), None, None)
    assert algorithms == ["lbfgs", "newton"]
    assert np.isfinite(params["k"]).all()


def test_stan_errors_name_the_algorithm_and_what_stan_said(scratch: Path):
    # Data Stan refuses (a negative changepoint prior scale) makes both algorithms fail.
    inputs = _inputs(2, 600.0)
    inputs.data["tau"] = -1.0
    with pytest.raises(stan_optimize.StanFailed, match=r"newton exited with code \d+: .*tau"):
        stan_optimize.optimize(inputs, None, None)


def test_an_output_without_prophets_parameters_is_refused(tmp_path: Path):
    path = tmp_path / "output.csv"
    path.write_text("# comment\nlp__,k,m,sigma_obs\n1,2,3,4\n")
    with pytest.raises(stan_optimize.StanFailed, match="Prophet's parameters"):
        stan_optimize._read_optimum(path, 1, 1)
