"""The forecast of one series: a frame of step-spaced times with a value and a band at each.

The frame is what is served, stored and scored. It starts at the fit time, so
the forecast for "now" is served right after a fit, and ends ``horizon``
later; nothing outside it is ever extrapolated, so a forecast that has not
been refitted for longer than its horizon disappears instead of going stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
class FitResult:
    """A fit's frame, the parameters the next fit of the series starts from, and how many points it was fitted on.

    Defined here, with the frame, and not beside the fit: a worker sends it to
    the service, and unpickling it there must not import the model's code
    (a tenth of a second of imports, on a core the workers are fitting on).
    """

    frame: Frame
    params: dict[str, Any]
    points: int
    # What the defaults decided for this series, for logs and the backtest.
    choices: dict[str, Any] = field(default_factory=dict)


def frame_times(fit_time: float, step: float, horizon: float) -> np.ndarray:
    """``fit_time``, then every ``step`` up to ``horizon`` past it."""
    count = int(np.floor(horizon / step + 1e-9))
    return fit_time + step * np.arange(count + 1, dtype=np.float64)
