"""The backtest report: rolling-origin evaluation of the model against the PromQL baselines.

For each origin, the model is fitted on the history strictly before it (the
same ``fit_predict`` the service runs) and compared, over every actual sample
in ``(origin, origin + horizon]``, with the four baselines of
``forecaster.skill`` computed from that same history.

Metrics per series and horizon: MAE, MASE (MAE over the in-sample MAE of the
one-step naive forecast before the first origin) and, for the model, the share
of actual samples inside its band; then a summary over every (series,
horizon) pair. Plots are ``forecaster.plot``'s, an optional extra.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from forecaster.duration import DAY, WEEK
from forecaster.errors import SeriesSkipped
from forecaster.model.fit import fit_predict
from forecaster.model.frame import FitResult, Frame
from forecaster.model.options import FitSpec
from forecaster.series import finite
from forecaster.skill import BASELINES, baselines, coverage, mae

MODEL = "model"
# A pair where the model errs this many times the best baseline is listed: one such series on a dashboard is
# enough for a user to stop reading the forecasts.
LOSING_RATIO = 1.25

FitFunction = Callable[[np.ndarray, np.ndarray, float, FitSpec], FitResult]


def naive_scale(ys: np.ndarray) -> float:
    """In-sample MAE of the one-step naive forecast: the denominator of MASE."""
    return float(np.mean(np.abs(np.diff(ys)))) if len(ys) > 1 else math.nan


def choose_origins(
    last: float, count: int, spacing: float, reach: float, step: float, earliest: float = -math.inf
) -> list[float]:
    """``count`` step-aligned origins, ``spacing`` apart, the last one ``reach`` before the last sample.

    Where that would put the first origin before ``earliest`` (the first time
    with enough history behind it to fit), the origins move closer together
    instead, so a short history is backtested at every origin rather than
    skipped at most of them.
    """
    final = math.floor((last - reach) / step) * step
    if count > 1 and final - spacing * (count - 1) < earliest < final:
        spacing = max(step, math.floor((final - earliest) / (count - 1) / step) * step)
    return [final - spacing * (count - 1 - i) for i in range(count)]


@dataclass
class Run:
    """One fit at one origin: the frame, and the samples that followed it."""

    origin: float
    frame: Frame
    targets: np.ndarray
    actual: np.ndarray
    predictions: dict[str, np.ndarray]


@dataclass
class Score:
    """One series at one horizon, pooled over its origins."""

    series: str
    horizon: float
    mae: dict[str, float]
    mase: dict[str, float]
    coverage: float
    points: int

    @property
    def best_baseline(self) -> str:
        known = {name: self.mae[name] for name in BASELINES if math.isfinite(self.mae[name])}
        return min(known, key=known.__getitem__) if known else BASELINES[0]

    @property
    def ratio_to_best(self) -> float:
        """The model's MAE over the best baseline's (in hindsight); NaN when that baseline made no error."""
        best = self.mae[self.best_baseline]
        return self.mae[MODEL] / best if best > 0 else math.nan


@dataclass
class SeriesReport:
    series: str
    runs: list[Run]
    scores: list[Score]
    coverage: float  # over every sample within the longest horizon
    skipped: list[str] = field(default_factory=list)


def evaluate_series(
    name: str,
    timestamps: np.ndarray,
    values: np.ndarray,
    spec: FitSpec,
    history: float,
    horizons: Sequence[float],
    origins: Sequence[float],
    fit: FitFunction = fit_predict,
) -> SeriesReport:
    """Fit at every origin on ``[origin - history, origin)`` and score every horizon."""
    ts, ys = finite(timestamps, values)
    reach = max(horizons)
    runs: list[Run] = []
    skipped: list[str] = []
    for origin in origins:
        window = (ts >= origin - history) & (ts < origin)
        following = (ts > origin) & (ts <= origin + reach)
        if not following.any():
            continue
        try:
            result = fit(ts[window], ys[window], origin, spec)
        except SeriesSkipped as skip:
            skipped.append(f"origin {origin:.0f}: {skip.reason}: {skip}")
            continue
        targets = ts[following]
        frame = result.frame
        predictions = {
            MODEL: np.interp(targets, frame.ds, frame.yhat),
            "lower": np.interp(targets, frame.ds, frame.yhat_lower),
            "upper": np.interp(targets, frame.ds, frame.yhat_upper),
        }
        predictions.update(baselines(ts[window], ys[window], origin, targets))
        runs.append(Run(origin, frame, targets, ys[following], predictions))
    scale = naive_scale(ys[ts < min(origins)]) if len(origins) else math.nan
    scores = [_score(name, runs, h, scale) for h in horizons]
    overall = _pooled(runs, reach)
    band = coverage(overall["actual"], overall["lower"], overall["upper"]) if runs else math.nan
    return SeriesReport(name, runs, scores, band, skipped)


def _pooled(runs: Iterable[Run], horizon: float) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for run in runs:
        keep = run.targets <= run.origin + horizon
        parts.setdefault("actual", []).append(run.actual[keep])
        for key, values in run.predictions.items():
            parts.setdefault(key, []).append(values[keep])
    return {key: np.concatenate(chunks) for key, chunks in parts.items()}


def _score(name: str, runs: list[Run], horizon: float, scale: float) -> Score:
    pooled = _pooled(runs, horizon)
    if not pooled:
        nan = {key: math.nan for key in (MODEL, *BASELINES)}
        return Score(name, horizon, nan, dict(nan), math.nan, 0)
    actual = pooled["actual"]
    errors = {key: mae(actual, pooled[key]) for key in (MODEL, *BASELINES)}
    scaled = {key: value / scale if scale and scale > 0 else math.nan for key, value in errors.items()}
    return Score(name, horizon, errors, scaled, coverage(actual, pooled["lower"], pooled["upper"]), len(actual))


@dataclass
class Summary:
    """How the model did against the baselines over many (series, horizon) pairs."""

    pairs: int
    wins: dict[str, int]  # baseline → pairs where the model's MAE is lower
    wins_best: int
    median_ratio: float  # model MAE / best baseline MAE
    # (series, horizon, ratio) where the model erred LOSING_RATIO times the best baseline or more, worst first
    losing: list[tuple[str, float, float]]
    series: int
    calibrated: int  # series whose band coverage is within [width - 0.1, width + 0.1]


def summarize(reports: Sequence[SeriesReport], width: float) -> Summary:
    scores = [s for r in reports for s in r.scores if s.points and math.isfinite(s.mae[MODEL])]
    wins = {b: sum(1 for s in scores if s.mae[MODEL] < s.mae[b] or not math.isfinite(s.mae[b])) for b in BASELINES}
    ratios = [s.ratio_to_best for s in scores if math.isfinite(s.ratio_to_best)]
    best = sum(1 for s in scores if s.mae[MODEL] < s.mae[s.best_baseline])
    losing = sorted(
        ((s.series, s.horizon, s.ratio_to_best) for s in scores if s.ratio_to_best >= LOSING_RATIO),
        key=lambda pair: -pair[2],
    )
    covered = [r.coverage for r in reports if math.isfinite(r.coverage)]
    calibrated = sum(1 for c in covered if width - 0.1 <= c <= width + 0.1)
    median = float(np.median(ratios)) if ratios else math.nan
    return Summary(len(scores), wins, best, median, losing, len(covered), calibrated)


def format_duration(seconds: float) -> str:
    for unit, size in (("w", WEEK), ("d", DAY), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def write_table(reports: Sequence[SeriesReport], width: float, out: TextIO) -> Summary:
    """The per-series table (MAE, MASE, coverage) and the summary lines under it."""
    # As wide as the longest series name: a label set cut short no longer says which series a row is.
    names = max([len("series"), *(len(score.series) for report in reports for score in report.scores)]) + 2
    header = f"{'series':<{names}}{'horizon':>8}{'points':>8}{'model':>19}"
    header += "".join(f"{b:>19}" for b in BASELINES) + f"{'best':>19}{'vs best':>9}{'coverage':>10}\n"
    out.write("MAE (MASE in brackets); the model's MAE over the best baseline's; coverage of the model's band\n")
    out.write(header)
    for report in reports:
        for score in report.scores:
            cells = [f"{score.series:<{names}}{format_duration(score.horizon):>8}{score.points:>8}"]
            cells.append(f"{_cell(score, MODEL):>19}")
            cells.extend(f"{_cell(score, b):>19}" for b in BASELINES)
            cells.append(f"{score.best_baseline:>19}{score.ratio_to_best:>8.2f}x{_percent(score.coverage):>10}")
            out.write("".join(cells) + "\n")
        for line in report.skipped:
            out.write(f"  {report.series}: skipped {line}\n")
    summary = summarize(reports, width)
    out.write(f"\n(series, horizon) pairs: {summary.pairs}\n")
    for baseline in BASELINES:
        out.write(f"  model MAE below {baseline}: {summary.wins[baseline]} of {summary.pairs}\n")
    out.write(f"  model MAE below the best baseline (per pair, in hindsight): {summary.wins_best} of {summary.pairs}\n")
    out.write(f"  median model MAE / best baseline MAE: {summary.median_ratio:.2f}\n")
    out.write(f"  pairs at {LOSING_RATIO:g}x the best baseline or worse: {len(summary.losing)}\n")
    for series, horizon, ratio in summary.losing:
        out.write(f"    {series} at {format_duration(horizon)}: {ratio:.2f}x\n")
    out.write(
        f"series whose {width:.0%} band covers {width - 0.1:.0%}–{width + 0.1:.0%} of what followed: "
        f"{summary.calibrated} of {summary.series}\n"
    )
    return summary


def _cell(score: Score, key: str) -> str:
    return f"{score.mae[key]:.4g} ({score.mase[key]:.2f})"


def _percent(value: float) -> str:
    return f"{value:.0%}" if math.isfinite(value) else "-"
