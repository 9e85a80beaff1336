"""The executors: same answers everywhere, and one bad fit costs only its own series."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from devtools.synthetic import Signal, grid
from forecaster import executor as executor_module
from forecaster.errors import SkipReason, Stopped
from forecaster.executor import FitTask, InlineExecutor, LocalExecutor
from forecaster.model.options import FitSpec

SPEC = FitSpec(step=300, horizon=3600, interval_width=0.8, min_points=20)
FIT_TIME = 1_800_000_000.0


class _KillsWorker:
    """Unpickling this in a worker ends the worker, as a segfault in Stan would."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os._exit, (3,))


class _HangsWorker:
    """Unpickling this in a worker blocks it far past any sane fit timeout."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (time.sleep, (3600,))


def _constant(index: int, value: float, warm: object = None) -> FitTask:
    t = grid(FIT_TIME, 86400, 300)
    return FitTask(index, t, np.full(len(t), value), FIT_TIME, SPEC, warm)  # type: ignore[arg-type]


def _seasonal(index: int, seed: int) -> FitTask:
    t = grid(FIT_TIME, 3 * 86400, 300)
    return FitTask(index, t, Signal(phase=seed).sample(t, seed), FIT_TIME, SPEC, None)


@pytest.fixture
def pool():
    executor = LocalExecutor(workers=2, fit_timeout=5)
    yield executor
    executor.close()


def test_inline_and_process_pool_agree_and_report_skips(pool):
    tasks = [_constant(0, 7.0), _constant(1, 9.0), _constant(2, 1.0)]
    tasks[2] = FitTask(2, tasks[2].timestamps[:5], tasks[2].values[:5], FIT_TIME, SPEC, None)
    inline = {o.index: o for o in InlineExecutor().run(tasks, threading.Event())}
    pooled = {o.index: o for o in pool.run(tasks, threading.Event())}
    assert inline.keys() == pooled.keys() == {0, 1, 2}
    for index in (0, 1):
        assert pooled[index].result is not None
        np.testing.assert_array_equal(pooled[index].result.frame.yhat, inline[index].result.frame.yhat)
    assert pooled[0].result.frame.yhat[0] == 7.0
    assert pooled[2].result is None and pooled[2].reason == SkipReason.TOO_FEW_POINTS


def test_a_crashing_worker_costs_only_its_series(pool):
    tasks = [_constant(0, 1.0), _constant(1, 2.0, warm=_KillsWorker()), _constant(2, 3.0), _constant(3, 4.0)]
    outcomes = {o.index: o for o in pool.run(tasks, threading.Event())}
    assert outcomes[1].result is None and outcomes[1].reason == SkipReason.FIT_FAILED
    assert "died" in outcomes[1].detail
    assert [outcomes[i].result.frame.yhat[0] for i in (0, 2, 3)] == [1.0, 3.0, 4.0]
    again = list(pool.run([_constant(0, 5.0)], threading.Event()))
    assert again[0].result is not None, "the pool replaces the dead worker"


def test_a_hanging_fit_is_killed_at_the_timeout(pool):
    tasks = [_constant(0, 1.0, warm=_HangsWorker()), _constant(1, 2.0), _constant(2, 3.0)]
    started = time.monotonic()
    outcomes = {o.index: o for o in pool.run(tasks, threading.Event())}
    assert time.monotonic() - started < 30
    assert outcomes[0].reason == SkipReason.FIT_TIMEOUT and "fit_timeout" in outcomes[0].detail
    assert outcomes[1].result is not None and outcomes[2].result is not None


class _SlowsWorker:
    """Unpickling this takes 0.8 s and gives no warm start: a fit that takes most of a short fit_timeout."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (time.sleep, (0.8,))


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The indexes of each batch the pool sends, in order."""
    sent: list[list[int]] = []
    real = executor_module._Worker.assign

    def assign(self, tasks, timeout):  # type: ignore[no-untyped-def]
        sent.append([task.index for task in tasks])
        real(self, tasks, timeout)

    monkeypatch.setattr(executor_module._Worker, "assign", assign)
    return sent


def test_a_worker_gets_shrinking_batches_and_one_that_kills_it_costs_only_its_series(batches):
    pool = LocalExecutor(workers=1, fit_timeout=5)
    try:
        tasks = [_constant(i, float(i), warm=_KillsWorker() if i == 2 else None) for i in range(8)]
        outcomes = {o.index: o for o in pool.run(tasks, threading.Event())}
    finally:
        pool.close()
    # Half of what is left per worker, then less: the killer was third in the first batch.
    assert batches[0] == [0, 1, 2, 3]
    assert outcomes[2].reason == SkipReason.FIT_FAILED and "died" in outcomes[2].detail
    assert {i: outcomes[i].result.frame.yhat[0] for i in range(8) if i != 2} == {
        i: float(i) for i in range(8) if i != 2
    }
    assert batches[1][0] == 3, "the rest of the dead worker's batch goes to its replacement"


def test_each_fit_of_a_batch_gets_the_whole_timeout_and_a_hung_one_costs_only_itself(batches):
    pool = LocalExecutor(workers=1, fit_timeout=2)
    try:
        # Three fits of 0.8 s in one batch take longer than fit_timeout together, not one by one.
        slow = [_constant(i, float(i), warm=_SlowsWorker()) for i in range(6)]
        outcomes = {o.index: o for o in pool.run(slow, threading.Event())}
        assert len(batches[0]) == 3
        assert all(outcomes[i].result is not None for i in range(6))
        hung = [_constant(i, float(i), warm=_HangsWorker() if i == 1 else None) for i in range(6)]
        outcomes = {o.index: o for o in pool.run(hung, threading.Event())}
    finally:
        pool.close()
    assert outcomes[1].reason == SkipReason.FIT_TIMEOUT
    assert all(outcomes[i].result is not None for i in (0, 2, 3, 4, 5))


def test_stop_abandons_running_fits_promptly(pool):
    stop = threading.Event()
    tasks = [_constant(0, 1.0, warm=_HangsWorker()), _constant(1, 1.0, warm=_HangsWorker())]
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Stopped):
        list(pool.run(tasks, stop))
    assert time.monotonic() - started < 5


def test_the_fork_server_and_a_default_fit_load_neither_pandas_nor_cmdstanpy():
    # What the fork server imports, then a fit with the defaults, as a worker forked from it runs one.
    probe = (
        "import sys\n"
        "import forecaster._preload\n"
        "from devtools.synthetic import Signal, grid\n"
        "from forecaster.executor import FitTask, execute\n"
        "from forecaster.model.options import FitSpec\n"
        "t = grid(1.8e9, 15 * 86400, 300)\n"
        "spec = FitSpec(step=300, horizon=3600, interval_width=0.8, min_points=20)\n"
        "outcome = execute(FitTask(0, t, Signal(noise=2).sample(t, 3), 1.8e9, spec, None))\n"
        "assert outcome.result is not None, outcome.detail\n"
        "print(sorted(m for m in ('pandas', 'cmdstanpy', 'prophet', 'yaml') if m in sys.modules), file=sys.stderr)\n"
    )
    # To standard error: the fork server lets go of standard output, and so does this process once it imported as much.
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert result.stderr.strip() == "[]"


def test_the_service_reads_a_fit_outcome_without_importing_the_model():
    # The service's process unpickles every outcome; the model's code (and bottleneck) would cost it a tenth of a
    # second of imports on a core the workers fit on, and it needs none of it.
    fitted = (
        "import pickle, sys\n"
        "from devtools.synthetic import Signal, grid\n"
        "from forecaster.executor import FitTask, execute\n"
        "from forecaster.model.options import FitSpec\n"
        "t = grid(1.8e9, 3 * 86400, 300)\n"
        "spec = FitSpec(step=300, horizon=3600, interval_width=0.8, min_points=20)\n"
        "outcome = execute(FitTask(0, t, Signal(noise=2).sample(t, 3), 1.8e9, spec, None))\n"
        "assert outcome.result is not None, outcome.detail\n"
        "sys.stdout.buffer.write(pickle.dumps(outcome))\n"
    )
    outcome = subprocess.run([sys.executable, "-c", fitted], capture_output=True, timeout=120, check=True).stdout
    service = (
        "import pickle, sys\n"
        "import forecaster.service\n"
        "outcome = pickle.loads(sys.stdin.buffer.read())\n"
        "assert len(outcome.result.frame.yhat) == 13\n"
        "print(sorted(m for m in sys.modules if m.startswith(('forecaster.model.fit', 'forecaster.model.cleaning', "
        "'forecaster.model.seasonality', 'bottleneck'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", service], input=outcome, capture_output=True, timeout=120, check=True
    )
    assert result.stdout.decode().strip() == "[]"


@pytest.mark.slow
def test_dask_cluster_gives_the_same_forecasts_as_the_local_pool(pool):
    distributed = pytest.importorskip("distributed")
    from forecaster.executor import DaskExecutor

    tasks = [_seasonal(i, i) for i in range(3)]
    local = {o.index: o for o in pool.run(tasks, threading.Event())}
    # Loopback only, and a free port for its HTTP server: 8787 may be taken by another cluster on this machine.
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
    ) as cluster:
        dask = DaskExecutor(cluster.scheduler_address, fit_timeout=60)
        try:
            remote = {o.index: o for o in dask.run(tasks, threading.Event())}
        finally:
            dask.close()
    assert remote.keys() == local.keys() == {0, 1, 2}
    for index in local:
        a, b = local[index].result, remote[index].result
        assert a is not None and b is not None
        np.testing.assert_allclose(b.frame.yhat, a.frame.yhat, rtol=1e-6)
        np.testing.assert_allclose(b.frame.yhat_lower, a.frame.yhat_lower, rtol=1e-6)
        np.testing.assert_allclose(b.frame.yhat_upper, a.frame.yhat_upper, rtol=1e-6)


def _solvers() -> list[int]:
    """PIDs of Stan solver processes (Prophet's compiled model) of this test process' fits, running now.

    Those it started, and orphans of any fit worker (a solver whose worker was
    killed first); fits that anything else on the machine runs meanwhile are
    none of these tests' business.
    """
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"prophet_model.bin" not in command:
                continue
            orphan = _parent(int(entry)) == 1 and b"forecaster-fit-" in command
            if orphan or _descends_from_us(int(entry)):
                found.append(int(entry))
    return found


def _parent(pid: int) -> int:
    try:
        # The parent is the field after the command name, which is in parentheses and may hold spaces.
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _descends_from_us(pid: int) -> bool:
    while pid > 1:
        pid = _parent(pid)
        if pid == os.getpid():
            return True
    return False


def scratch_root() -> Path:
    return Path(tempfile.gettempdir())


def _slow() -> FitTask:
    """A series whose fit takes far longer than a second: 2,000 changepoints over 20,000 points."""
    t = grid(FIT_TIME, 20_000 * 60.0, 60.0)
    spec = FitSpec(step=60, horizon=3600, interval_width=0.8, min_points=20, prophet={"n_changepoints": 2000})
    return FitTask(0, t, Signal(noise=5).sample(t, 1), FIT_TIME, spec, None)


@pytest.mark.slow
def test_a_timed_out_fit_in_the_pool_leaves_no_solver_and_no_files_behind():
    before = set(_solvers())
    other_dirs = set(scratch_root().glob("forecaster-fit-*"))
    pool = LocalExecutor(workers=1, fit_timeout=2)
    try:
        (outcome,) = list(pool.run([_slow()], threading.Event()))
    finally:
        pool.close()
    assert outcome.reason == SkipReason.FIT_TIMEOUT
    time.sleep(0.5)
    assert set(_solvers()) - before == set()
    assert set(scratch_root().glob("forecaster-fit-*")) - other_dirs == set()


@pytest.mark.slow
def test_inline_fits_stop_the_solver_at_the_timeout_too():
    before = set(_solvers())
    started = time.monotonic()
    (outcome,) = list(InlineExecutor(fit_timeout=2).run([_slow()], threading.Event()))
    assert outcome.reason == SkipReason.FIT_TIMEOUT and "fit_timeout" in outcome.detail
    assert time.monotonic() - started < 30
    time.sleep(0.5)
    assert set(_solvers()) - before == set()
