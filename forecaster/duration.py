"""Durations in Prometheus syntax (``30s``, ``5m``, ``1h30m``, ``1d``, ``1w``), as the config and the CLI take them."""

from __future__ import annotations

import re
from dataclasses import dataclass

# In seconds, for the modules that reason in days and weeks; here so that they need not import the model for them.
DAY = 86400.0
WEEK = 7 * DAY

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": DAY, "w": WEEK, "y": 365 * DAY}
_DURATION_RE = re.compile(r"^((\d+)(ms|s|m|h|d|w|y))+$")
_DURATION_PART_RE = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_LONGEST = 1000 * _DURATION_UNITS["y"]


@dataclass(frozen=True)
class Duration:
    """A Prometheus-style duration that remembers how the user wrote it.

    The text matters: a ``horizons`` entry is exposed as the ``horizon`` label
    exactly as written, so ``1h`` and ``60m`` stay what the user chose.
    """

    text: str
    seconds: float

    @classmethod
    def parse(cls, value: object) -> Duration:
        if isinstance(value, Duration):
            return value
        if not isinstance(value, str) or not _DURATION_RE.match(value):
            raise ValueError(f"{value!r} is not a duration (use Prometheus syntax: 30s, 5m, 1h, 1d, 1w)")
        seconds = sum(int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART_RE.findall(value))
        if seconds > _LONGEST:
            raise ValueError(f"{value!r} is longer than any duration that makes sense here (1000y at most)")
        return cls(value, float(seconds))

    def __str__(self) -> str:
        return self.text
