"""``benchmarks/backtest.py`` reports the same table whatever minute it is started in."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_the_backtest_table_does_not_depend_on_the_minute_it_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import backtest

    start = datetime.datetime(2025, 3, 1, tzinfo=datetime.UTC).timestamp()
    times = start + np.arange(0, 4 * 86400, 300.0)
    values = 100 + 20 * np.sin(2 * np.pi * times / 86400) + np.random.default_rng(3).normal(0, 2, len(times))
    data = tmp_path / "data"
    data.mkdir()
    stamps = [datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S") for t in times]
    rows = "".join(f"{stamp},{value}\n" for stamp, value in zip(stamps, values, strict=True))
    (data / "daily.csv").write_text("timestamp,value\n" + rows)
    clock = backtest.time.time
    tables = []
    # Three clocks 100 s apart: on a 5-minute grid, at least one of them used to put a range query's grid point
    # within the lookback after the last sample (repeating it) and at least one did not.
    for back in (0.0, 100.0, 200.0):
        monkeypatch.setattr(backtest.time, "time", lambda back=back: clock() - back)
        monkeypatch.setattr(sys, "argv", ["backtest.py", "--data", str(data), "--origins", "2"])
        backtest.main()
        printed = capsys.readouterr().out
        tables.append([line for line in printed.splitlines() if not line.startswith("per fit")])
    assert "daily" in "\n".join(tables[0])
    assert tables[1] == tables[0]
    assert tables[2] == tables[0]
