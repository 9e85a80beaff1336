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


def demand(t: np.ndarray, seed: int = 0, base: float = 5000.0) -> np.ndarray:
    """Electricity-demand-like load: a weekday and a weekend daily shape, a level that follows the weather.

    Weekdays ramp up at 7:00 to a working-day plateau and peak at 18:00;
    weekends wake two hours later, stay lower and peak less. The daily level
    drifts with a mean-reverting "temperature" (a day's level is 0.7 of the
    previous day's departure plus fresh weather), so last week's value is a
    fair forecast but never an exact one.
    """
    rng = np.random.default_rng(seed)
    t = np.asarray(t, dtype=np.float64)
    hour = (t % DAY) / 3600.0
    days = np.floor((t - t[0]) / DAY).astype(np.int64)
    weekend = (np.floor(t / DAY) + 3) % 7 >= 5  # 1970-01-01 was a Thursday: day 0 + 3 is weekday 3
    weekday_shape = (
        0.55
        + 0.45 / (1 + np.exp(-(hour - 7.0) * 3.0))
        - 0.45 / (1 + np.exp(-(hour - 22.0) * 2.0))
        + 0.15 * np.exp(-0.5 * ((hour - 18.0) / 1.0) ** 2)
    )
    weekend_shape = (
        0.55
        + 0.25 / (1 + np.exp(-(hour - 10.0) * 1.5))
        - 0.25 / (1 + np.exp(-(hour - 22.5) * 2.0))
        + 0.08 * np.exp(-0.5 * ((hour - 18.5) / 1.5) ** 2)
    )
    weather = np.zeros(days[-1] + 2)
    for day in range(1, len(weather)):
        weather[day] = 0.8 * weather[day - 1] + rng.normal(0.0, 0.02)
    # Interpolated between days, so the level moves through the day rather than jumping at midnight.
    level = 1.0 + np.interp((t - t[0]) / DAY, np.arange(len(weather)), weather)
    shape = np.where(weekend, weekend_shape, weekday_shape)
    return np.asarray(base * level * shape * (1 + rng.normal(0.0, 0.01, len(t))))
