"""Imported once by the fit workers' fork server, so that every worker it forks starts with the model loaded.

What a default fit runs on, and no more: the model's code, numpy and
bottleneck, and the executor that unpickles the tasks. A default fit builds
Prophet's Stan input itself and runs the compiled model directly
(``model.stan_optimize``), so neither pandas nor cmdstanpy loads here: with
them the fork server took about a second to start on a 2-core machine,
which the first fits waited for. Prophet's own module, pandas and
cmdstanpy load in a worker only when a fit needs them (events, holidays,
logistic growth, ``band: prophet``).

Each worker is one core's worth of fitting: BLAS threads of its own on top
oversubscribe the cores, and OpenBLAS threads spin while they wait (with 2
workers on 2 cores, the model's least-squares steps made a warm cycle 1.7x
slower). OpenBLAS reads this once, when numpy loads it, so it is set here,
before anything imports numpy; a value set in the environment wins.

``np.median`` looks up ``numpy.ma``, which numpy imports only when first
asked: here, rather than in each worker's first fit (20-25 ms each).
"""

import gc
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy.ma  # noqa: F401

import forecaster.executor
import forecaster.model.fit  # noqa: F401

# Standard output is the command's (``forecaster forecast`` prints its forecasts there), and whoever reads it through a
# pipe sees its end only once every process holding it has gone: without this, the fork server, which ends last, after
# its parent. Nothing a fit runs prints there (Stan's console goes to a file); anything that did would corrupt it.
_devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(_devnull, 1)
os.close(_devnull)

# What is imported here lives as long as each worker: their collections need not go over it again and again.
gc.freeze()
