"""Rolling-origin evaluation of the model against the forecasts PromQL gives for free.

For each origin, the model is fitted on the history strictly before it (the
same ``fit_predict`` the service runs) and compared, over every actual sample
in ``(origin, origin + horizon]``, with four baselines computed from that same
history:

    last_value         the last sample before the origin
    offset_1d          the value one day earlier (``x offset 1d``; as many days
                       back as needed to stay before the origin)
    offset_1w          the same a week earlier (``x offset 1w``)
    predict_linear_6h  a least-squares line over the last six hours, extrapolated
                       (``predict_linear(x[6h], h)``)

Metrics per series and horizon: MAE, MASE (MAE over the in-sample MAE of the
one-step naive forecast before the first origin) and, for the model, the share
of actual samples inside its band.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from forecaster.model import DAY, WEEK, FitResult, FitSpec, Frame, Skip, clean, fit_predict

BASELINES = ("last_value", "offset_1d", "offset_1w", "predict_linear_6h")
MODEL = "model"
LINEAR_WINDOW = 6 * 3600.0

FitFunction = Callable[[np.ndarray, np.ndarray, float, FitSpec], FitResult]


def _default_fit(ts: np.ndarray, ys: np.ndarray, fit_time: float, spec: FitSpec) -> FitResult:
    return fit_predict(ts, ys, fit_time, spec)


def value_before(ts: np.ndarray, ys: np.ndarray, when: np.ndarray) -> np.ndarray:
    """The latest sample at or before each time in ``when``; NaN when there is none."""
    index = np.searchsorted(ts, when, side="right") - 1
    out = np.where(index >= 0, ys[np.clip(index, 0, None)], np.nan)
    return np.asarray(out, dtype=np.float64)


def baselines(ts: np.ndarray, ys: np.ndarray, origin: float, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Each baseline's forecast at ``targets``, from the samples strictly before ``origin``."""
    before = ts < origin
    ts, ys = ts[before], ys[before]
    out: dict[str, np.ndarray] = {"last_value": np.full(len(targets), ys[-1] if len(ys) else np.nan)}
    for name, period in (("offset_1d", DAY), ("offset_1w", WEEK)):
        # A seasonal naive forecast may only look at the past: step back whole periods until before the origin.
        periods = np.maximum(np.ceil((targets - origin) / period), 1.0)
        out[name] = value_before(ts, ys, targets - periods * period)
    recent = ts >= origin - LINEAR_WINDOW
    if recent.sum() >= 2 and np.ptp(ts[recent]) > 0:
        slope, intercept = np.polyfit(ts[recent] - origin, ys[recent], 1)
        out["predict_linear_6h"] = intercept + slope * (targets - origin)
    else:
        out["predict_linear_6h"] = np.full(len(targets), ys[-1] if len(ys) else np.nan)
    return out


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error over the points where both are known; NaN when there are none."""
    ok = np.isfinite(actual) & np.isfinite(predicted)
    return float(np.mean(np.abs(actual[ok] - predicted[ok]))) if ok.any() else math.nan


def naive_scale(ys: np.ndarray) -> float:
    """In-sample MAE of the one-step naive forecast: the denominator of MASE."""
    return float(np.mean(np.abs(np.diff(ys)))) if len(ys) > 1 else math.nan


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    ok = np.isfinite(actual)
    if not ok.any():
        return math.nan
    inside = (actual[ok] >= lower[ok]) & (actual[ok] <= upper[ok])
    return float(np.mean(inside))


def choose_origins(last: float, count: int, spacing: float, reach: float, step: float) -> list[float]:
    """``count`` step-aligned origins, ``spacing`` apart, the last one ``reach`` before the last sample."""
    final = math.floor((last - reach) / step) * step
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
    fit: FitFunction = _default_fit,
) -> SeriesReport:
    """Fit at every origin on ``[origin - history, origin)`` and score every horizon."""
    ts, ys = clean(timestamps, values)
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
        except Skip as skip:
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
    series: int
    calibrated: int  # series whose band coverage is within [width - 0.1, width + 0.1]


def summarize(reports: Sequence[SeriesReport], width: float) -> Summary:
    scores = [s for r in reports for s in r.scores if s.points and math.isfinite(s.mae[MODEL])]
    wins = {b: sum(1 for s in scores if s.mae[MODEL] < s.mae[b] or not math.isfinite(s.mae[b])) for b in BASELINES}
    ratios = [s.mae[MODEL] / s.mae[s.best_baseline] for s in scores if s.mae[s.best_baseline] > 0]
    best = sum(1 for s in scores if s.mae[MODEL] < s.mae[s.best_baseline])
    covered = [r.coverage for r in reports if math.isfinite(r.coverage)]
    calibrated = sum(1 for c in covered if width - 0.1 <= c <= width + 0.1)
    return Summary(len(scores), wins, best, float(np.median(ratios)) if ratios else math.nan, len(covered), calibrated)


def format_duration(seconds: float) -> str:
    for unit, size in (("w", WEEK), ("d", DAY), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def write_table(reports: Sequence[SeriesReport], width: float, out: TextIO) -> Summary:
    """The per-series table (MAE, MASE, coverage) and the summary lines under it."""
    header = f"{'series':<44}{'horizon':>8}{'points':>8}{'model':>19}"
    header += "".join(f"{b:>19}" for b in BASELINES) + f"{'best':>19}{'coverage':>10}\n"
    out.write("MAE (MASE in brackets); coverage of the model's band\n")
    out.write(header)
    for report in reports:
        for score in report.scores:
            cells = [f"{score.series[:43]:<44}{format_duration(score.horizon):>8}{score.points:>8}"]
            cells.append(f"{_cell(score, MODEL):>19}")
            cells.extend(f"{_cell(score, b):>19}" for b in BASELINES)
            cells.append(f"{score.best_baseline:>19}{_percent(score.coverage):>10}")
            out.write("".join(cells) + "\n")
        for line in report.skipped:
            out.write(f"  {report.series}: skipped {line}\n")
    summary = summarize(reports, width)
    out.write(f"\n(series, horizon) pairs: {summary.pairs}\n")
    for baseline in BASELINES:
        out.write(f"  model MAE below {baseline}: {summary.wins[baseline]} of {summary.pairs}\n")
    out.write(f"  model MAE below the best baseline (per pair, in hindsight): {summary.wins_best} of {summary.pairs}\n")
    out.write(f"  median model MAE / best baseline MAE: {summary.median_ratio:.2f}\n")
    out.write(
        f"series whose {width:.0%} band covers {width - 0.1:.0%}–{width + 0.1:.0%} of what followed: "
        f"{summary.calibrated} of {summary.series}\n"
    )
    return summary


def _cell(score: Score, key: str) -> str:
    return f"{score.mae[key]:.4g} ({score.mase[key]:.2f})"


def _percent(value: float) -> str:
    return f"{value:.0%}" if math.isfinite(value) else "-"


def plot(report: SeriesReport, timestamps: np.ndarray, values: np.ndarray, path: Any) -> None:
    """One PNG: the real series, each origin's forecast and band, the origins as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts, ys = clean(timestamps, values)
    figure, axes = plt.subplots(figsize=(14, 5))
    start = min((run.origin for run in report.runs), default=ts[0]) - 3 * DAY
    shown = ts >= start
    end = float(ts[-1])
    axes.plot((ts[shown] - end) / DAY, ys[shown], color="black", linewidth=0.7, label="actual")
    for i, run in enumerate(report.runs):
        days = (run.frame.ds - end) / DAY
        axes.fill_between(days, run.frame.yhat_lower, run.frame.yhat_upper, color="tab:blue", alpha=0.2)
        axes.plot(days, run.frame.yhat, color="tab:blue", linewidth=1, label="forecast" if i == 0 else None)
        axes.axvline((run.origin - end) / DAY, color="tab:red", linewidth=0.6, linestyle="--")
    axes.set_title(f"{report.series}: origins (dashed), forecast and band")
    axes.set_xlabel("days before the last sample")
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


@dataclass(frozen=True)
class Skill:
    """How the previous forecast of one series did on the samples that arrived since it was made."""

    mae: float
    coverage: float
    skill: float  # 1 - model MAE / best baseline MAE; above 0 beats every baseline
    points: int


def score_previous(
    frame: Frame, made_at: float, timestamps: np.ndarray, values: np.ndarray, now: float
) -> Skill | None:
    """Score a forecast made at ``made_at`` against the samples in ``(made_at, now]``.

    The baselines are computed from the same history as of ``made_at``, so
    the comparison is the one the backtest makes, on live data, for free.
    None when no sample arrived inside the frame.
    """
    ts, ys = clean(timestamps, values)
    arrived = (ts > made_at) & (ts <= min(now, float(frame.ds[-1])))
    if not arrived.any() or not (ts < made_at).any():
        return None
    targets, actual = ts[arrived], ys[arrived]
    model_mae = mae(actual, np.interp(targets, frame.ds, frame.yhat))
    band = coverage(
        actual, np.interp(targets, frame.ds, frame.yhat_lower), np.interp(targets, frame.ds, frame.yhat_upper)
    )
    errors = [mae(actual, predicted) for predicted in baselines(ts, ys, made_at, targets).values()]
    best = min((e for e in errors if math.isfinite(e)), default=math.nan)
    # A baseline that was exactly right cannot be beaten; only an exact model ties it.
    tie = 0.0 if model_mae == 0 else -math.inf
    skill = 1 - model_mae / best if best > 0 else tie
    return Skill(model_mae, band, skill, int(arrived.sum()))
