"""Backtest plots: one PNG per series with its origins, forecasts and bands (the ``plot`` extra).

matplotlib is not a dependency of the service: ``pip install 'forecaster[plot]'``
brings it. ``pyplot()`` says so, naming the extra, when it is missing, so
``forecaster backtest --plot`` can refuse before any work is done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from forecaster.backtest import SeriesReport
from forecaster.duration import DAY
from forecaster.errors import MissingExtra
from forecaster.series import finite


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend; MissingExtra when the ``plot`` extra is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise MissingExtra("backtest --plot", "plot", "matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(report: SeriesReport, timestamps: np.ndarray, values: np.ndarray, path: Path) -> None:
    """One PNG: the real series, each origin's forecast and band, the origins as vertical lines."""
    plt = pyplot()
    ts, ys = finite(timestamps, values)
    figure, axes = plt.subplots(figsize=(14, 5))
    start = min((run.origin for run in report.runs), default=ts[0]) - 3 * DAY
    shown = ts >= start
    end = float(ts[-1])
    axes.plot((ts[shown] - end) / DAY, ys[shown], color="black", linewidth=0.7, label="actual")
    for i, run in enumerate(report.runs):
        days = (run.frame.ds - end) / DAY
        band = "band (interval_width)" if i == 0 else None
        axes.fill_between(days, run.frame.yhat_lower, run.frame.yhat_upper, color="tab:blue", alpha=0.2, label=band)
        axes.plot(days, run.frame.yhat, color="tab:blue", linewidth=1, label="forecast" if i == 0 else None)
        origin = "origins" if i == 0 else None
        axes.axvline((run.origin - end) / DAY, color="tab:red", linewidth=0.6, linestyle="--", label=origin)
    axes.set_title(f"{report.series}: origins (dashed), forecast and band")
    axes.set_xlabel("days before the last sample")
    axes.set_ylabel(f"{report.series.split('{', 1)[0]} (value)")
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
