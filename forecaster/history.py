"""The per-forecast history cache in ``state_dir``, so a retrain pulls only what is new.

A forecast's last pulled history is kept in ``<state_dir>/history/<name>.npz``:
every series' labels, timestamps and values, plus the query, the step and the
time range the history covers. A retrain asks Prometheus only for the range
after the cached end, starting ``overlap_steps`` steps earlier so that samples
that arrived late (or rates over them) are read again and replace the cached
values. The merged history is trimmed to the forecast's ``history`` window,
so a series that vanished drops out once its last sample is older than that,
and a series that appears simply joins.

The result equals what one full ``query_range`` over the window would return,
as long as Prometheus does not rewrite samples older than the overlap.

The cache reads a forecast's file once, at its first retrain after start-up,
and keeps what it last saved in memory after that: a retrain never re-reads
the file the same process wrote one cycle earlier.

The file is written atomically (``state.atomic_write``) and carries a format
name and version. A cache that is unreadable, corrupt or foreign is logged,
moved aside as ``<name>.npz.bad-<unix time>`` and the whole window is pulled
again; a cache for another query, another step, or one that does not reach
back far enough (``history`` grew) is ignored the same way, without moving it.
"""

from __future__ import annotations

import io
import json
import logging
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forecaster.series import Series, series_key
from forecaster.state import atomic_write, remove_temporaries, set_aside

log = logging.getLogger(__name__)

FORMAT = "forecaster-history"
VERSION = 1
# Steps pulled again at the end of the cached range: late samples and rate() windows over them settle by then.
OVERLAP_STEPS = 5


@dataclass
class History:
    """The samples of every series of ``query`` at ``step`` over [start, end]."""

    query: str
    step: float
    start: float
    end: float
    series: list[Series]

    @property
    def points(self) -> int:
        return sum(len(s.timestamps) for s in self.series)


@dataclass(frozen=True)
class Plan:
    """What to ask Prometheus for: [start, end], and the cached history it extends (None for a full pull)."""

    start: float
    end: float
    cached: History | None


def plan(cached: History | None, window_start: float, end: float, step: float, overlap_steps: int) -> Plan:
    """The range to pull for a window of [window_start, end], given what the cache holds."""
    # The first step the window holds: a cache that starts there covers it, whatever the window's own alignment.
    first = math.ceil(window_start / step) * step
    if cached is None or cached.start > first or cached.end < first:
        return Plan(window_start, end, None)
    # Aligned to the step grid because cached.end is, so the pulled steps coincide with the cached ones.
    start = min(max(window_start, cached.end - overlap_steps * step), end)
    return Plan(start, end, cached)


def merge(pulled: list[Series], fetch: Plan, query: str, step: float, window_start: float) -> History:
    """The cached history up to ``fetch.start``, then what was pulled, trimmed to [window_start, fetch.end]."""
    by_key: dict[tuple[tuple[str, str], ...], tuple[list[np.ndarray], list[np.ndarray], Series]] = {}
    if fetch.cached is not None:
        for old in fetch.cached.series:
            keep = (old.timestamps >= window_start) & (old.timestamps < fetch.start)
            by_key[series_key(old.labels)] = ([old.timestamps[keep]], [old.values[keep]], old)
    for new in pulled:
        keep = (new.timestamps >= window_start) & (new.timestamps <= fetch.end)
        entry = by_key.setdefault(series_key(new.labels), ([], [], new))
        entry[0].append(new.timestamps[keep])
        entry[1].append(new.values[keep])
    series = []
    for ts_parts, ys_parts, origin in by_key.values():
        ts = np.concatenate(ts_parts)
        if len(ts):
            series.append(Series(origin.labels, ts, np.concatenate(ys_parts)))
    first = math.ceil(window_start / step) * step
    return History(query, step, first, fetch.end, series)


class HistoryCache:
    """The history files under ``<state_dir>/history``, each read once and then kept in memory."""

    def __init__(self, state_dir: Path, overlap_steps: int = OVERLAP_STEPS) -> None:
        self.dir = Path(state_dir) / "history"
        self.overlap_steps = overlap_steps
        self._memory: dict[str, History] = {}

    def path(self, forecast: str) -> Path:
        return self.dir / f"{forecast}.npz"

    def save(self, forecast: str, history: History) -> None:
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "forecast": forecast,
            "query": history.query,
            "step": history.step,
            "start": history.start,
            "end": history.end,
            "labels": [s.labels for s in history.series],
        }
        lengths = np.fromiter((len(s.timestamps) for s in history.series), dtype=np.int64, count=len(history.series))
        empty = np.empty(0, dtype=np.float64)
        buffer = io.BytesIO()
        np.savez(
            buffer,
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            lengths=lengths,
            timestamps=np.concatenate([empty, *(s.timestamps for s in history.series)]).astype(np.float64),
            values=np.concatenate([empty, *(s.values for s in history.series)]).astype(np.float64),
        )
        # Kept before the write: a full disk costs the next restart a full pull, not the next retrain.
        self._memory[forecast] = history
        atomic_write(self.path(forecast), buffer.getvalue())

    def load(self, forecast: str, query: str, step: float) -> History | None:
        """The cached history of ``forecast``, or None when there is none usable for this query and step."""
        history = self._memory.get(forecast) or self._read_file(forecast)
        if history is None:
            return None
        if history.query != query or history.step != step:
            log.info("forecast %r: query or step changed since the cached history; pulling the whole history", forecast)
            return None
        return history

    def _read_file(self, forecast: str) -> History | None:
        path = self.path(forecast)
        if not path.exists():
            return None
        try:
            return _read(path, forecast)
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            set_aside(path, forecast, exc, "will pull the whole history")
            return None

    def clean_temporaries(self) -> None:
        remove_temporaries(self.dir)


def _read(path: Path, forecast: str) -> History:
    # From bytes, not the path: np.load leaks its file handle when the archive is truncated.
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as data:
        meta = json.loads(data["meta"].tobytes())
        lengths = data["lengths"]
        timestamps = data["timestamps"]
        values = data["values"]
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError("not a forecaster history file")
    if meta.get("version") != VERSION:
        raise ValueError(f"history format version {meta.get('version')!r}, this forecaster reads {VERSION}")
    if meta.get("forecast") != forecast:
        raise ValueError(f"the file holds forecast {meta.get('forecast')!r}")
    labels = meta["labels"]
    if len(labels) != len(lengths) or int(lengths.sum()) != len(timestamps) or len(timestamps) != len(values):
        raise ValueError("series lengths do not match the stored samples")
    series = []
    offset = 0
    for item, length in zip(labels, lengths.tolist(), strict=True):
        own = {str(k): str(v) for k, v in item.items()}
        series.append(Series(own, timestamps[offset : offset + length], values[offset : offset + length]))
        offset += length
    return History(str(meta["query"]), float(meta["step"]), float(meta["start"]), float(meta["end"]), series)
