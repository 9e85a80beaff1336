"""Imported once by the fit workers' fork server, so that every worker it forks starts with Prophet loaded."""

from forecaster.model import load_prophet

load_prophet()
