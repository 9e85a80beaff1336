"""Where fits run: worker processes on this machine, or an existing Dask cluster.

Each fit is a task (one series' history plus its fit spec), sent to a local
worker in a batch of one forecast's series; the answer is one ``FitOutcome``
per task, never an exception (a failure is a ``SkipReason`` and a detail),
so one series that fails, crashes its worker or hangs past ``fit_timeout``
loses only that series.

    LocalExecutor   one long-lived process per worker, started from a fork
                    server that has already imported the model (a new worker
                    costs a fork, not a second of imports); a hung or crashed
                    worker is killed and replaced.
    DaskExecutor    ``executor: {type: dask, address: tcp://host:8786}``: the
                    same tasks on a ``dask.distributed`` cluster.
    InlineExecutor  ``workers: 0``: fits in the calling thread, for debugging.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from forecaster import __version__
from forecaster.errors import ForecasterError, MissingExtra, SeriesSkipped, SkipReason, Stopped

if TYPE_CHECKING:
    import numpy as np

    from forecaster.config import Config
    from forecaster.model.frame import FitResult
    from forecaster.model.options import FitSpec

log = logging.getLogger(__name__)

# How often a waiting dispatcher looks at the stop flag; bounds shutdown latency.
_POLL_SECONDS = 0.2
# Most tasks in one batch: 64 of 14 days at 5m are about 4 MB in the pipe.
_MAX_BATCH = 64


@dataclass
class FitTask:
    index: int
    timestamps: np.ndarray
    values: np.ndarray
    fit_time: float
    spec: FitSpec
    warm_start: dict[str, Any] | None

    def inputs(self) -> str:
        """A digest of everything the fit's result depends on: equal digests, the same fit (see ``Trainer._fit_all``).

        The warm start is left out: it makes a refit cheaper, and either way
        the result is a fit of the same history at the same time. The version
        is in, so that an upgraded forecaster refits.
        """
        digest = hashlib.blake2b(digest_size=16)
        header = f"{__version__}\0{self.fit_time!r}\0{self.spec!r}\0{self.timestamps.dtype}\0{self.values.dtype}\0"
        digest.update(header.encode())
        digest.update(self.timestamps.tobytes())
        digest.update(self.values.tobytes())
        return digest.hexdigest()


@dataclass
class FitOutcome:
    """A fit's result, or why there is none."""

    index: int
    result: FitResult | None
    reason: SkipReason | None = None
    detail: str = ""
    seconds: float = 0.0


def execute(task: FitTask, timeout: float | None = None) -> FitOutcome:
    """Run one fit, Stan's solver stopped after ``timeout`` seconds; every failure becomes an outcome."""
    # Imported here: the service imports this module to start the fork server, which imports the model itself.
    from forecaster.model.fit import fit_predict

    started = time.perf_counter()
    try:
        result = fit_predict(task.timestamps, task.values, task.fit_time, task.spec, task.warm_start, timeout)
    except SeriesSkipped as skip:
        return FitOutcome(task.index, None, skip.reason, str(skip), time.perf_counter() - started)
    except Exception as exc:  # a bug or a library error must cost one series, not the batch
        detail = f"{exc.__class__.__name__}: {exc}"
        return FitOutcome(task.index, None, SkipReason.FIT_FAILED, detail, time.perf_counter() - started)
    return FitOutcome(task.index, result, seconds=time.perf_counter() - started)


class Executor(Protocol):
    def run(self, tasks: Sequence[FitTask], stop: threading.Event) -> Iterator[FitOutcome]: ...

    def close(self) -> None: ...


class InlineExecutor:
    """Fits in the calling thread. Only Stan's solver can be stopped there: it is, after ``fit_timeout``."""

    def __init__(self, fit_timeout: float | None = None) -> None:
        self._timeout = fit_timeout

    def run(self, tasks: Sequence[FitTask], stop: threading.Event) -> Iterator[FitOutcome]:
        for task in tasks:
            if stop.is_set():
                raise Stopped
            yield execute(task, self._timeout)

    def close(self) -> None:
        pass


def scratch_dir(pid: int) -> Path:
    """Where the fit worker ``pid`` writes Stan's input and output files."""
    return Path(tempfile.gettempdir()) / f"forecaster-fit-{pid}"


def _use_own_scratch(scratch: Path) -> None:
    """Make ``scratch`` this worker's temporary directory, removed with the worker.

    Every fit's Stan files go there (``model.stan_optimize``), and so does
    the directory cmdstanpy makes when a fit that needs Prophet's own code
    imports it; a worker killed mid-fit leaves nothing elsewhere.
    """
    scratch.mkdir(exist_ok=True)
    tempfile.tempdir = str(scratch)


def _worker_main(conn: Connection, timeout: float) -> None:
    # The service handles Ctrl-C and SIGTERM itself and then closes the pipes; workers just follow.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # A group of its own, so that killing the worker kills the Stan solver it started too.
    os.setpgid(0, 0)
    scratch = scratch_dir(os.getpid())
    _use_own_scratch(scratch)
    try:
        _serve(conn, timeout)
    finally:
        # Also when the service died without stopping its workers: the pipe closes and this worker ends here.
        shutil.rmtree(scratch, ignore_errors=True)


def _serve(conn: Connection, timeout: float) -> None:
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        # Each task arrives pickled on its own and is unpickled only when its turn comes: a task that kills its worker
        # on the way in then costs its own series, which the service counts as the one running.
        for payload in batch:
            try:
                conn.send(execute(pickle.loads(payload), timeout))
            except (BrokenPipeError, OSError):
                return


class _Worker:
    def __init__(self, context: Any, timeout: float) -> None:
        parent, child = context.Pipe()
        self.conn: Connection = parent
        self.process = context.Process(target=_worker_main, args=(child, timeout), name="forecaster-fit", daemon=True)
        self.process.start()
        child.close()
        # Sent and not answered yet, in the order the worker fits them: the first is the one running.
        self.tasks: deque[FitTask] = deque()
        self.deadline = 0.0

    def assign(self, tasks: list[FitTask], timeout: float) -> None:
        """Send an idle worker a batch; it answers each task in turn."""
        self.tasks.extend(tasks)
        self.deadline = time.monotonic() + timeout
        self.conn.send([pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL) for task in tasks])

    def kill(self) -> None:
        """Kill the worker and everything it started (its Stan solver), and remove their files."""
        pid = self.process.pid
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                # Killed before it made its group (or already gone): the worker alone.
                if self.process.is_alive():
                    self.process.kill()
        self.process.join(5)
        self.conn.close()
        self._remove_scratch()

    def ask_to_stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)

    def stop(self) -> None:
        """Wait for the worker asked to stop to end; kill it if it has not within 2 s."""
        self.process.join(2)
        if self.process.is_alive():
            self.kill()
            return
        self.conn.close()  # the worker removed its own scratch directory on the way out

    def _remove_scratch(self) -> None:
        if self.process.pid is not None:
            shutil.rmtree(scratch_dir(self.process.pid), ignore_errors=True)


class LocalExecutor:
    """A pool of worker processes; forecasts take turns, each spreading its series over all workers.

    A worker gets its series in batches, not one at a time: between two fits
    of a batch it waits for nothing, where a task per series waited about
    1.5 ms for each answer to reach the service and the next task to come
    back (a tenth of a warm 5-minute fit). The batches shrink as the
    forecast's series run out (half an even share of what is left), so that
    the workers finish together.
    """

    def __init__(self, workers: int, fit_timeout: float) -> None:
        if workers < 1:
            raise ValueError("a LocalExecutor needs at least one worker")
        self._size = workers
        self._timeout = fit_timeout
        self._context = multiprocessing.get_context("forkserver")
        start_fork_server()
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()

    def run(self, tasks: Sequence[FitTask], stop: threading.Event) -> Iterator[FitOutcome]:
        with self._lock:
            yield from self._run(tasks, stop)

    def _run(self, tasks: Sequence[FitTask], stop: threading.Event) -> Iterator[FitOutcome]:
        pending = deque(tasks)
        busy: list[_Worker] = []
        try:
            while pending or busy:
                if stop.is_set():
                    raise Stopped
                while pending and len(busy) < self._size:
                    worker = self._idle.pop() if self._idle else _Worker(self._context, self._timeout)
                    size = min(_MAX_BATCH, max(1, len(pending) // (2 * self._size)))
                    worker.assign([pending.popleft() for _ in range(size)], self._timeout)
                    busy.append(worker)
                nearest = min(w.deadline for w in busy)
                wait_for = max(0.0, min(_POLL_SECONDS, nearest - time.monotonic()))
                wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=wait_for)
                for worker in list(busy):
                    outcomes = self._collect(worker, pending)
                    if not worker.tasks:
                        busy.remove(worker)
                    yield from outcomes
        except BaseException:
            # Whatever was running is abandoned: kill it so no stale answer is read later.
            for worker in busy:
                worker.kill()
            raise

    def _collect(self, worker: _Worker, pending: deque[FitTask]) -> list[FitOutcome]:
        """The answers the worker has sent; if it died or overran, its running task's outcome too.

        A worker that died or was killed takes only its running task with it:
        the rest of its batch goes back to the front of ``pending``. A worker
        that has answered its whole batch is idle again.
        """
        outcomes: list[FitOutcome] = []
        while worker.tasks and worker.conn.poll():
            try:
                outcome: FitOutcome = worker.conn.recv()
            except (EOFError, OSError):
                break
            worker.tasks.popleft()
            # Each fit gets fit_timeout of its own, from when the one before it ended.
            worker.deadline = time.monotonic() + self._timeout
            outcomes.append(outcome)
        if not worker.tasks:
            self._idle.append(worker)
            return outcomes
        if not worker.process.is_alive():
            code = worker.process.exitcode
            failed = FitOutcome(
                worker.tasks[0].index,
                None,
                SkipReason.FIT_FAILED,
                f"the fit process died (exit code {code}); it was replaced",
            )
        elif time.monotonic() > worker.deadline:
            failed = FitOutcome(
                worker.tasks[0].index,
                None,
                SkipReason.FIT_TIMEOUT,
                f"the fit took longer than fit_timeout ({self._timeout:g}s) and was killed; "
                "shorten history, coarsen step, or raise fit_timeout",
            )
        else:
            return outcomes
        worker.kill()
        worker.tasks.popleft()
        pending.extendleft(reversed(worker.tasks))
        worker.tasks.clear()
        return [*outcomes, failed]

    def close(self) -> None:
        with self._lock:
            # All are asked first, so that they wind down together rather than one after the other.
            for worker in self._idle:
                worker.ask_to_stop()
            for worker in self._idle:
                worker.stop()
            self._idle.clear()


class DaskExecutor:
    """Sends fits to an existing ``dask.distributed`` scheduler."""

    def __init__(self, address: str, fit_timeout: float) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise MissingExtra("executor type dask", "dask", "dask.distributed") from None
        self._address = address
        self._timeout = fit_timeout
        try:
            self._client = Client(address, timeout=f"{max(1, int(fit_timeout))}s", set_as_default=False)
        except OSError as exc:
            raise ForecasterError(f"executor.address: cannot reach the Dask scheduler at {address}: {exc}") from None

    def run(self, tasks: Sequence[FitTask], stop: threading.Event) -> Iterator[FitOutcome]:
        from distributed import as_completed

        futures = self._client.map(functools.partial(execute, timeout=self._timeout), list(tasks), pure=False)
        index_of = {future.key: task.index for future, task in zip(futures, tasks, strict=True)}
        answered: set[int] = set()
        # as_completed finds its client through the "current" one; this client is not the process default.
        with self._client.as_current():
            try:
                for future in as_completed(futures, timeout=self._timeout * max(1, len(tasks))):
                    if stop.is_set():
                        raise Stopped
                    outcome = self._outcome(future, index_of[future.key])
                    answered.add(outcome.index)
                    yield outcome
            except TimeoutError:
                log.error("Dask at %s did not finish %d fits in time", self._address, len(tasks) - len(answered))
            finally:
                self._client.cancel([f for f in futures if not f.done()])
        for task in tasks:
            if task.index not in answered:
                yield FitOutcome(
                    task.index, None, SkipReason.FIT_TIMEOUT, f"no answer from the Dask cluster at {self._address}"
                )

    @staticmethod
    def _outcome(future: Any, index: int) -> FitOutcome:
        try:
            outcome: FitOutcome = future.result()
        except Exception as exc:  # a killed Dask worker raises here; it costs this series only
            return FitOutcome(index, None, SkipReason.FIT_FAILED, f"Dask task failed: {exc.__class__.__name__}: {exc}")
        return outcome

    def close(self) -> None:
        self._client.close()


def default_workers() -> int:
    """One worker per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def start_fork_server() -> None:
    """Start the fork server the fit workers come from, if it is not running yet.

    It imports the model once, so every worker forked from it starts warm; started
    early, it does so while the service is still starting and querying Prometheus.
    This module imports nothing heavy itself, so that starting it costs nothing first.
    """
    multiprocessing.get_context("forkserver").set_forkserver_preload(["forecaster._preload"])
    forkserver.ensure_running()


def stop_fork_server() -> None:
    """Stop the fork server again, for a config whose fits run elsewhere; it ends once its imports are done.

    The standard library stops it this way between its own tests; there is
    no public call, and the server otherwise lives as long as this process.
    """
    forkserver._forkserver._stop()  # type: ignore[attr-defined]


def local_workers(config: Config) -> int:
    """How many fit worker processes the config asks of this machine (0: fits inline, or on a Dask cluster)."""
    if config.executor.type == "dask":
        return 0
    return default_workers() if config.workers is None else config.workers


def build_executor(config: Config) -> Executor:
    if config.executor.type == "dask":
        assert config.executor.address is not None
        return DaskExecutor(config.executor.address, config.fit_timeout.seconds)
    workers = local_workers(config)
    if workers == 0:
        return InlineExecutor(config.fit_timeout.seconds)
    return LocalExecutor(workers, config.fit_timeout.seconds)
