"""Prophet's MAP fit on ``stan_design``'s arrays: solved exactly, or by its compiled Stan model as its backend runs it.

``exact_map`` solves the additive models (all the defaults build) exactly;
Prophet's Stan model solves the rest, and any that solve leaves unsettled,
with the same initial values, warm start, algorithm (Newton below 100 points,
L-BFGS otherwise), iteration limit and fallback to Newton as
``CmdStanPyBackend.fit``, and the same parameters back, shaped (1, n) as
Prophet keeps them. The model's executable is run directly rather than
through ``CmdStanModel.optimize``: on a warm 14-day fit cmdstanpy spent
about as long in Python as Stan did optimising, mostly reading back the
header of the 4,032 ``trend`` columns the model also writes (whose values
nothing here needs) and relaying Stan's console line by line.
"""

from __future__ import annotations

import functools
import logging
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.model import exact_map, stan_json
from forecaster.model.stan_design import StanInput

# Prophet's backend (``CmdStanPyBackend.fit``): Newton on short series, L-BFGS otherwise, for at most this many steps.
_NEWTON_BELOW = 100
_ITERATIONS = 10_000
_WARM_KEYS = ("k", "m", "sigma_obs", "delta", "beta")

log = logging.getLogger(__name__)


class StanFailed(RuntimeError):
    """Stan's optimizer exited with an error; the message holds the end of its console output."""


def compatible_init(changepoints: int, warm: dict[str, Any] | None) -> dict[str, Any] | None:
    """The previous fit's parameters as Prophet's ``init``, when they have this model's number of changepoints.

    A mismatch in the seasonality terms is harmless: Stan then starts from its own
    default, which is what a cold fit does anyway.
    """
    if not warm or not all(key in warm for key in _WARM_KEYS):
        return None
    if len(warm["delta"]) != changepoints:
        return None
    return {
        "k": warm["k"],
        "m": warm["m"],
        "sigma_obs": warm["sigma_obs"],
        "delta": np.asarray(warm["delta"]),
        "beta": np.asarray(warm["beta"]),
    }


def optimize(inputs: StanInput, warm: dict[str, Any] | None, timeout: float | None) -> dict[str, np.ndarray]:
    """The fitted parameters (k, m, delta, sigma_obs, beta, each shaped (1, n)); TimeoutError after ``timeout``."""
    y = inputs.data["y"]
    if y.min() == y.max():
        # Prophet skips Stan for a constant history and keeps its own initial values, not the warm ones.
        values = {**inputs.init, "sigma_obs": 1e-9}
    else:
        init = _initial_values(inputs.init, compatible_init(len(inputs.init["delta"]), warm))
        values = exact_map.solve(inputs.data, init) or _run(inputs.data, init, timeout)
    params = {name: np.asarray(value, dtype=np.float64).reshape((1, -1)) for name, value in values.items()}
    if not inputs.changepoints:
        # As Prophet does: with no changepoints, the one dummy rate change folds into the base rate.
        params["k"] = params["k"] + params["delta"].reshape(-1)
        params["delta"] = np.zeros(params["delta"].shape).reshape((-1, 1))
    return params


def _initial_values(default: dict[str, Any], warm: dict[str, Any] | None) -> dict[str, Any]:
    """Prophet's ``sanitize_custom_inits``: the warm scalars, and each warm vector that has the default's shape."""
    if warm is None:
        return default
    init = dict(default)
    for name in ("k", "m", "sigma_obs"):
        init[name] = float(warm[name])
    for name in ("delta", "beta"):
        if default[name].shape == warm[name].shape:
            init[name] = warm[name]
    return init


def _run(data: dict[str, Any], init: dict[str, Any], timeout: float | None) -> dict[str, np.ndarray]:
    """Stan's optimizer in a directory of its own, removed with everything Stan wrote.

    The directory sits in the temporary directory, which a fit worker points
    at its own scratch directory (``executor._use_own_scratch``), so a
    worker killed mid-fit leaves nothing behind.
    """
    executable = _executable()
    with tempfile.TemporaryDirectory(prefix="fit-") as scratch:
        files = Path(scratch)
        stan_json.write(str(files / "data.json"), data)
        stan_json.write(str(files / "init.json"), init)
        algorithm = "newton" if data["T"] < _NEWTON_BELOW else "lbfgs"
        try:
            return _optimum(executable, files, algorithm, timeout, data)
        except StanFailed as exc:
            if algorithm == "newton":
                raise
            log.warning("Stan's L-BFGS stopped with an error, so Newton's method takes over as in Prophet: %s", exc)
            return _optimum(executable, files, "newton", timeout, data)


def _optimum(
    executable: str, files: Path, algorithm: str, timeout: float | None, data: dict[str, Any]
) -> dict[str, np.ndarray]:
    """One run of Stan's ``optimize`` method, with the arguments cmdstanpy gives it for Prophet, and its result."""
    command = [
        executable,
        "data",
        f"file={files / 'data.json'}",
        f"init={files / 'init.json'}",
        "output",
        f"file={files / 'output.csv'}",
        "method=optimize",
        f"algorithm={algorithm}",
        f"iter={_ITERATIONS}",
    ]
    console = files / "console.txt"
    with open(console, "wb") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        process.kill()

    # A timer rather than wait(timeout): that polls with sleeps of up to 50 ms, and a warm fit's solver takes about as
    # long, so each fit would wait on average some 20 ms after Stan had finished.
    timer = threading.Timer(timeout, stop) if timeout else None
    if timer is not None:
        timer.start()
    try:
        returncode = process.wait()
    finally:
        if timer is not None:
            timer.cancel()
    if expired.is_set():
        raise TimeoutError(f"Stan's optimizer ran past {timeout:g}s and was stopped")
    if returncode != 0:
        tail = console.read_text(errors="replace").strip().splitlines()[-5:]
        raise StanFailed(f"{algorithm} exited with code {returncode}: {' / '.join(tail)}")
    return _read_optimum(files / "output.csv", data["S"], data["K"])


def _read_optimum(path: Path, changepoints: int, features: int) -> dict[str, np.ndarray]:
    """The parameters from Stan's output CSV: its header, then one row of values; ``trend`` columns left unread."""
    with open(path) as handle:
        rows = [line for line in handle if not line.startswith("#")]
    expected = [
        "lp__",
        "k",
        "m",
        *(f"delta.{i}" for i in range(1, changepoints + 1)),
        "sigma_obs",
        *(f"beta.{i}" for i in range(1, features + 1)),
    ]
    if len(rows) < 2 or rows[0].split(",", len(expected))[: len(expected)] != expected:
        raise StanFailed(f"{path} does not hold Prophet's parameters in Prophet's order; is the Stan model Prophet's?")
    values = np.array(rows[1].split(",", len(expected))[: len(expected)], dtype=np.float64)
    return {
        "k": values[1:2],
        "m": values[2:3],
        "delta": values[3 : 3 + changepoints],
        "sigma_obs": values[3 + changepoints : 4 + changepoints],
        "beta": values[4 + changepoints :],
    }


@functools.cache
def _executable() -> str:
    """Prophet's compiled Stan model, where ``CmdStanPyBackend.load_model`` finds it; looked up once per process."""
    import importlib.util

    spec = importlib.util.find_spec("prophet")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise FileNotFoundError("Prophet is not installed: install forecaster with its dependencies")
    path = Path(locations[0], "stan_model", "prophet_model.bin")
    if not path.is_file():
        raise FileNotFoundError(f"Prophet's compiled Stan model is missing at {path}: reinstall prophet")
    return str(path)
