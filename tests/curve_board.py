"""A small board for the query API's unit tests: two forecasts, three series, frames with known values."""

from __future__ import annotations

import numpy as np

from forecaster import config as config_module
from forecaster.exporter import Board
from forecaster.model.frame import Frame
from forecaster.state import ForecastState, SeriesState

T0 = 1_700_000_000.0  # every fit time
STEP = 300.0
POINTS = 13  # one hour of frame: T0 .. T0 + 3600


def frame(base: float) -> Frame:
    """yhat = base + steps since T0, with a band of ±1."""
    ds = T0 + STEP * np.arange(float(POINTS))
    yhat = base + np.arange(float(POINTS))
    return Frame(ds, yhat, yhat - 1, yhat + 1)


def make_board(states: list[ForecastState], names: tuple[str, ...] = ()) -> Board:
    """A board with each state published; ``names`` adds forecasts that have no fit yet."""
    forecasts = [{"name": name, "query": "q"} for name in (*(s.forecast for s in states), *names)]
    config = config_module.parse({"prometheus": {"url": "http://127.0.0.1:9090"}, "forecasts": forecasts})
    board = Board(config.forecasts)
    for state in states:
        board.publish(state)
    return board


def board() -> Board:
    """http (two series), disk (one, whose empty job must not be served as job="") and idle (not fitted yet)."""
    http = [SeriesState({"job": "api", "instance": "a-1"}, frame(10)), SeriesState({"job": "web"}, frame(100))]
    disk = [SeriesState({"job": "", "instance": "db-1"}, frame(1000))]
    return make_board([ForecastState("http", "q", T0, http), ForecastState("disk", "d", T0, disk)], ("idle",))
