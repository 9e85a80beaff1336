"""The lean design computes what Prophet's own code would, to the bit."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.model import prophet, stan_design


@pytest.mark.parametrize(
    "changepoints",
    [
        np.array([0]),
        np.array([0.4]),
        np.linspace(0, 0.8, 26)[1:],
        np.array([0.1, 0.1, 0.3, 0.3, 0.3, 0.7]),
    ],
    ids=["dummy", "one", "prophet's 25", "repeated"],
)
def test_the_trend_is_prophets_piecewise_linear_to_the_bit(changepoints):
    rng = np.random.default_rng(len(changepoints))
    # Before the first changepoint, on each of them, between and past the last, in and out of order.
    t = np.concatenate((np.linspace(-0.2, 1.3, 997), changepoints, rng.uniform(-0.2, 1.3, 200)))
    reference = prophet.load_prophet().piecewise_linear
    for scale in (1e-4, 1.0, 30.0):
        deltas = rng.standard_normal(len(changepoints)) * scale
        k, m = float(rng.standard_normal()), float(rng.standard_normal())
        expected = reference(t, deltas, k, m, changepoints)
        assert stan_design.piecewise_linear(t, deltas, k, m, changepoints).tobytes() == expected.tobytes()
