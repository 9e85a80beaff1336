"""Retrains each forecast every ``retrain_every`` with APScheduler 3.x.

Job semantics are explicit: a run never overlaps itself (``max_instances=1``),
runs missed while the process was busy collapse into one (``coalesce``), and a
late run still happens within one retrain interval (``misfire_grace_time``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from forecaster.settings import Forecast
from forecaster.trainer import Trainer

log = logging.getLogger(__name__)


def first_run(forecast: Forecast, fit_time: float | None, now: float) -> float:
    """When a forecast should first retrain: now, unless a stored fit is still fresh."""
    if fit_time is None:
        return now
    return max(now, fit_time + forecast.retrain_every.seconds)


class Scheduler:
    def __init__(self, trainer: Trainer, forecasts: Sequence[Forecast], clock: Callable[[], float] = time.time) -> None:
        self._trainer = trainer
        self._forecasts = forecasts
        self._clock = clock
        workers = max(1, min(len(forecasts), 4))
        self._scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(workers)}, timezone=UTC)

    def start(self) -> None:
        now = self._clock()
        for forecast in self._forecasts:
            current = self._trainer.current(forecast.name)
            start_at = first_run(forecast, current.fit_time if current else None, now)
            self._scheduler.add_job(
                self._trainer.run,
                IntervalTrigger(seconds=forecast.retrain_every.seconds, timezone=UTC),
                args=[forecast],
                id=forecast.name,
                name=f"retrain {forecast.name}",
                next_run_time=datetime.fromtimestamp(start_at, UTC),
                coalesce=True,
                max_instances=1,
                misfire_grace_time=max(1, int(forecast.retrain_every.seconds)),
            )
            log.info(
                "forecast %r: first retrain at %s, then every %s",
                forecast.name,
                datetime.fromtimestamp(start_at, UTC).isoformat(timespec="seconds"),
                forecast.retrain_every,
            )
        self._scheduler.start()

    def next_run(self, name: str) -> float | None:
        """When forecast ``name`` next retrains (unix seconds) as its job has it; None while it has no job.

        The job's own time, not fit time + retrain_every: it knows about the first run after a
        restart, a failed retrain (which leaves the fit time as it was) and a run that is overdue.
        """
        job = self._scheduler.get_job(name)
        return None if job is None or job.next_run_time is None else float(job.next_run_time.timestamp())

    def shutdown(self) -> None:
        self._scheduler.shutdown(wait=False)
