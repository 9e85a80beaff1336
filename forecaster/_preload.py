"""Imported once by the fit workers' fork server, so that every worker it forks starts with the model loaded.

The model's code, pandas, and cmdstanpy (whose temporary directory each
worker moves to its own scratch directory) are what a default fit runs on:
it builds Prophet's Stan input itself and runs the compiled model directly
(``model.stan_optimize``). Prophet's own module, with its plotting and
holiday imports (half of the fork server's start), loads in a worker only
when a fit needs it (events, holidays, logistic growth, ``band: prophet``).

Each worker is one core's worth of fitting: BLAS threads of its own on top
oversubscribe the cores, and OpenBLAS threads spin while they wait (with 2
workers on 2 cores, the model's least-squares steps made a warm cycle 1.7x
slower). OpenBLAS reads this once, when numpy loads it, so it is set here,
before anything imports numpy; a value set in the environment wins.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cmdstanpy  # noqa: F401

import forecaster.model.fit  # noqa: F401
