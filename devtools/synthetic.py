"""Synthetic-but-realistic series: trend, daily and weekly seasonality, noise.

Feeds the demo, the benchmarks and the tests; every value is a plain function
of time, so a test can compute what the forecast ought to say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DAY = 86400.0
WEEK = 7 * DAY


@dataclass(frozen=True)
class Signal:
    base: float = 100.0
    daily: float = 20.0
    weekly: float = 0.0
    trend_per_day: float = 0.0
    noise: float = 1.0
    phase: float = 0.0
    # Where the trend passes through ``base`` (unix seconds); a demo sets it to "now" so that base is today's level.
    origin: float = 20000 * DAY

    def clean(self, t: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        return np.asarray(
            self.base
            + self.trend_per_day * (t - self.origin) / DAY
            + self.daily * np.sin(2 * math.pi * t / DAY + self.phase)
            + self.weekly * np.sin(2 * math.pi * t / WEEK + self.phase)
        )

    def sample(self, t: np.ndarray, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return self.clean(t) + rng.normal(0.0, self.noise, size=len(t))


def grid(end: float, span: float, step: float) -> np.ndarray:
    """Step-aligned timestamps covering ``span`` seconds up to ``end`` (never after it)."""
    last = math.floor(end / step) * step
    return np.arange(last - span + step, last + step / 2, step, dtype=np.float64)
