"""Forecasts as of a past time: ``forecast --at`` and the data behind ``backtest``.

Both read Prometheus directly through the source, never through the history
cache or the stored state: a fit as of a past time must neither see data from
after that time nor leave anything behind that the service would pick up.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from forecaster import plot
from forecaster.backtest import FitFunction, SeriesReport, choose_origins, evaluate_series
from forecaster.duration import DAY
from forecaster.errors import ConfigError, SeriesSkipped
from forecaster.model.fit import fit_predict
from forecaster.series import Series, SeriesSource, format_labels
from forecaster.settings import Forecast
from forecaster.state import ForecastState, SeriesState


def parse_time(text: str) -> float:
    """Unix seconds, or an RFC 3339 time with a zone (``2024-05-01T12:00:00Z``)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            [f"--at: {text!r} is neither unix seconds nor an RFC 3339 time (2024-05-01T12:00:00Z)"]
        ) from None
    if parsed.tzinfo is None:
        raise ConfigError([f"--at: {text!r} has no time zone; add Z for UTC or an offset such as +02:00"])
    return parsed.timestamp()


def history_before(source: SeriesSource, forecast: Forecast, start: float, before: float) -> list[Series]:
    """Every series of ``forecast`` on its step grid in ``[start, before)``; nothing at or after ``before``."""
    step = forecast.step.seconds
    # The range ends on the last grid point strictly before ``before``; the filter below guards the rest.
    end = math.ceil(before / step) * step - step
    series = source.query_range(forecast.query, start, end, step, forecast=forecast.name)
    out = []
    for item in series:
        keep = item.timestamps < before
        out.append(Series(item.labels, item.timestamps[keep], item.values[keep]))
    return out


def forecast_at(source: SeriesSource, forecast: Forecast, at: float) -> tuple[ForecastState, list[str]]:
    """Fit every series on the history strictly before ``at``; the frame starts at ``at``.

    Returns the state (never saved) and one line per series that could not be fitted.
    """
    spec = forecast.fit_spec()
    fitted, skipped = [], []
    for item in history_before(source, forecast, at - forecast.history.seconds, at):
        try:
            result = fit_predict(item.timestamps, item.values, at, spec)
        except SeriesSkipped as skip:
            skipped.append(
                f"forecast {forecast.name!r}: series {format_labels(item.labels)} skipped ({skip.reason}): {skip}"
            )
            continue
        fitted.append(SeriesState(item.labels, result.frame, result.params, result.points))
    return ForecastState(forecast.name, forecast.query, at, fitted), skipped


def backtest(
    source: SeriesSource,
    forecast: Forecast,
    *,
    origins: int,
    horizons: Sequence[float],
    now: float,
    plot_dir: Path | None = None,
    fit: FitFunction = fit_predict,
) -> list[SeriesReport]:
    """Rolling-origin evaluation of every series of ``forecast``, ``max(horizons)`` between origins.

    With ``plot_dir``, one PNG per series goes there (the ``plot`` extra).
    """
    if plot_dir is not None:
        plot.pyplot()  # refuse before any query when the plot extra is missing

    step = forecast.step.seconds
    reach = max(horizons)
    if reach > forecast.horizon.seconds:
        raise ConfigError(
            [f"forecast {forecast.name!r}: backtest horizon {reach:.0f}s exceeds horizon {forecast.horizon.text!r}"]
        )
    spacing = max(reach, step)
    first = choose_origins(now, origins, spacing, reach, step)[0]
    series = history_before(source, forecast, first - forecast.history.seconds, now)
    spec = forecast.fit_spec()
    reports = []
    progress = _progress(len(series), forecast.name)
    for item in series:
        if len(item.timestamps) == 0:
            progress.update()
            continue
        # An origin needs some history behind it: min_points samples, and two days for the daily terms.
        needed = max(forecast.min_points * step, min(2 * DAY, forecast.history.seconds))
        earliest = float(np.min(item.timestamps)) + needed
        chosen = choose_origins(float(np.max(item.timestamps)), origins, spacing, reach, step, earliest)
        name = f"{forecast.name}{format_labels(item.labels)}"
        report = evaluate_series(
            name, item.timestamps, item.values, spec, forecast.history.seconds, horizons, chosen, fit
        )
        reports.append(report)
        if plot_dir is not None:
            plot_dir.mkdir(parents=True, exist_ok=True)
            plot.plot(report, item.timestamps, item.values, plot_dir / f"{_file_name(name)}.png")
        progress.update()
    progress.close()
    return reports


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_=." else "_" for c in name).strip("_")[:150]


class _NoProgress:
    def update(self) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, name: str) -> Any:
    """A progress bar on a terminal when tqdm (the ``plot`` extra) is installed; otherwise nothing."""
    if not sys.stderr.isatty():
        return _NoProgress()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoProgress()
    return tqdm(total=total, desc=name, unit="series")
