"""Imported once by the fit workers' fork server, so that every worker it forks starts with Prophet loaded.

Each worker is one core's worth of fitting: BLAS threads of its own on top
oversubscribe the cores, and OpenBLAS threads spin while they wait (with 2
workers on 2 cores, the model's least-squares steps made a warm cycle 1.7x
slower). OpenBLAS reads this once, when numpy loads it, so it is set here,
before anything imports numpy; a value set in the environment wins.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from forecaster.model.prophet import load_prophet

load_prophet()
