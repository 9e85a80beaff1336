"""Durable per-forecast state in ``state_dir``: what is needed to serve and to refit.

One JSON file per forecast, ``<state_dir>/forecasts/<name>.json``, written
atomically (temporary file, fsync, rename, fsync of the directory) so that a
crash at any moment leaves either the old or the new file, never half of one.
A file that cannot be read, is corrupt, or belongs to another format or
version is moved aside as ``<name>.json.bad-<unix time>`` and the forecast is
refitted; it never stops the service.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from forecaster.errors import StateDirInUse
from forecaster.model.frame import Frame
from forecaster.series import Labels, Recent

log = logging.getLogger(__name__)

FORMAT = "forecaster-state"
VERSION = 1
# A stored fit time this far past the clock is a clock that was wrong when it was written, not a fit to serve.
CLOCK_SKEW = 300.0
_WARM_SCALARS = ("k", "m", "sigma_obs")
_WARM_VECTORS = ("delta", "beta")


@dataclass
class SeriesState:
    labels: Labels
    frame: Frame
    params: dict[str, Any] = field(default_factory=dict)
    points: int = 0
    # From the forecast's breach.threshold_query at fit time; None for a fixed threshold or no match.
    threshold: float | None = None
    # The digest of what it was fitted on (``FitTask.inputs``): a retrain that would fit the same again keeps it.
    inputs: str | None = None
    # The status page's chart of recent values; not stored, so the file format stays and a restart starts without it.
    recent: Recent | None = None


@dataclass
class ForecastState:
    """The latest successful fit of one forecast."""

    forecast: str
    query: str
    fit_time: float
    series: list[SeriesState]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "forecast": self.forecast,
            "query": self.query,
            "fit_time": self.fit_time,
            "series": [
                {
                    "labels": s.labels,
                    "ds": s.frame.ds.tolist(),
                    "yhat": s.frame.yhat.tolist(),
                    "yhat_lower": s.frame.yhat_lower.tolist(),
                    "yhat_upper": s.frame.yhat_upper.tolist(),
                    "params": s.params,
                    "points": s.points,
                    # Optional and additive: files without it (or older readers) stay compatible, so VERSION stays.
                    **({"threshold": s.threshold} if s.threshold is not None else {}),
                    **({"inputs": s.inputs} if s.inputs is not None else {}),
                }
                for s in self.series
            ],
        }

    @classmethod
    def from_json(cls, data: Any, now: float) -> ForecastState:
        """The state in ``data``, checked value by value; ValueError says what is wrong with it.

        A stored fit time must be a real time no later than ``now`` (give or
        take ``CLOCK_SKEW``): one in the future would put off the first
        retrain and hide a stale forecast from the alerts.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a forecaster state file")
        if data.get("version") != VERSION:
            raise ValueError(f"state format version {data.get('version')!r}, this forecaster reads {VERSION}")
        fit_time = data["fit_time"]
        if isinstance(fit_time, bool) or not isinstance(fit_time, int | float) or not math.isfinite(fit_time):
            raise ValueError(f"fit_time {fit_time!r} is not a finite number")
        if not 0 < fit_time <= now + CLOCK_SKEW:
            raise ValueError(f"fit_time {fit_time!r} is not a time before now ({now:.0f})")
        if not isinstance(data["series"], list):
            raise ValueError("series is not a list")
        series = [_series(item) for item in data["series"]]
        return cls(str(data["forecast"]), str(data["query"]), float(fit_time), series)


def _series(item: Any) -> SeriesState:
    labels = item["labels"]
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ValueError(f"series labels {labels!r} are not an object of strings")
    arrays = [np.asarray(item[k], dtype=np.float64) for k in ("ds", "yhat", "yhat_lower", "yhat_upper")]
    if len({len(a) for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise ValueError(f"series {labels}: frame arrays differ in length")
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError(f"series {labels}: frame holds NaN or Inf")
    threshold = item.get("threshold")
    if threshold is not None and (not isinstance(threshold, int | float) or not math.isfinite(threshold)):
        raise ValueError(f"series {labels}: threshold {threshold!r} is not a finite number")
    params = item.get("params", {})
    if not _warm_params_ok(params):
        raise ValueError(f"series {labels}: warm-start params are not finite numbers")
    inputs = item.get("inputs")
    if inputs is not None and not isinstance(inputs, str):
        raise ValueError(f"series {labels}: inputs {inputs!r} is not a digest string")
    return SeriesState(
        dict(labels),
        Frame(*arrays),
        dict(params),
        int(item.get("points", 0)),
        None if threshold is None else float(threshold),
        inputs,
    )


def _warm_params_ok(params: Any) -> bool:
    """Empty (a constant series), or the five finite parameters Prophet's warm start takes."""
    if not isinstance(params, dict):
        return False
    if not params:
        return True
    try:
        scalars = [float(params[k]) for k in _WARM_SCALARS]
        vectors = [np.asarray(params[k], dtype=np.float64) for k in _WARM_VECTORS]
    except (KeyError, TypeError, ValueError):
        return False
    return all(math.isfinite(v) for v in scalars) and all(v.ndim == 1 and np.isfinite(v).all() for v in vectors)


def atomic_write(path: Path, payload: bytes) -> None:
    """Replace ``path`` with ``payload`` so that readers see the old or the new file, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def set_aside(path: Path, forecast: str, problem: object, consequence: str) -> None:
    """Move an unusable file out of the way (as ``<name>.bad-<unix time>``) so the next write starts clean."""
    aside = path.with_name(f"{path.name}.bad-{int(time.time())}")
    log.error("forecast %r: %s is unusable (%s); moved it to %s and %s", forecast, path, problem, aside, consequence)
    try:
        os.replace(path, aside)
    except OSError as move_error:
        log.error("forecast %r: could not move %s aside: %s", forecast, path, move_error)


def remove_temporaries(directory: Path) -> None:
    """Remove the temporary files that a crash left behind in the middle of ``atomic_write``."""
    if directory.is_dir():
        for leftover in directory.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)


class StateStore:
    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir)
        self.forecasts_dir = self.root / "forecasts"

    def path(self, forecast: str) -> Path:
        return self.forecasts_dir / f"{forecast}.json"

    def save(self, state: ForecastState) -> None:
        # orjson: the stdlib's encoder took 1.4 s for 2,000 series and held the GIL throughout, stalling /metrics.
        atomic_write(self.path(state.forecast), orjson.dumps(state.to_json(), option=orjson.OPT_SERIALIZE_NUMPY))

    def load(self, forecast: str, query: str, now: float | None = None) -> ForecastState | None:
        """The stored state of ``forecast``, or None when there is none usable (an unusable file is set aside)."""
        path = self.path(forecast)
        if not path.exists():
            return None
        try:
            state = ForecastState.from_json(orjson.loads(path.read_bytes()), time.time() if now is None else now)
            if state.forecast != forecast:
                raise ValueError(f"the file holds forecast {state.forecast!r}")
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            set_aside(path, forecast, exc, "will refit")
            return None
        if state.query != query:
            log.info("forecast %r: the query changed since the stored fit; ignoring the stored forecast", forecast)
            return None
        return state

    def clean_temporaries(self) -> None:
        remove_temporaries(self.forecasts_dir)


class StateDirLock:
    """One service per ``state_dir``: an advisory lock on ``<state_dir>/.lock``, held until ``release``.

    Two services on one directory both retrain and write, and each removes the
    other's temporary files as crash leftovers. The lock file holds the
    holder's PID for the error message; the kernel drops the lock when the
    holder exits, however it exits, so a stale file never blocks a restart.
    A directory where no lock file can be written (read-only) is used
    unlocked, as the service serves from memory there anyway.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            log.warning("cannot create the lock file %s (%s); running without it", self.path, exc.strerror)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateDirInUse(
                f"state_dir {self.path.parent} is in use by another forecaster (PID {holder}); "
                "stop it, or give this one its own state_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
