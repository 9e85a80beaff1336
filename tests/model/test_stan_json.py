from __future__ import annotations

import json
import math

import numpy as np

from forecaster.model import stan_json


def _write(tmp_path, data):
    from cmdstanpy.utils import filesystem

    stan_json.install()
    path = tmp_path / "data.json"
    filesystem.write_stan_json(str(path), data)
    return path.read_text()


def test_writes_the_numbers_stanio_writes(tmp_path):
    from stanio import write_stan_json

    rng = np.random.default_rng(0)
    data = {"T": 3, "y": rng.normal(size=3).tolist(), "X": rng.normal(size=(3, 2)).tolist(), "tau": 0.05}
    ours = json.loads(_write(tmp_path, data))
    write_stan_json(str(tmp_path / "reference.json"), data)
    reference = json.loads((tmp_path / "reference.json").read_text())
    assert ours == reference


def test_non_finite_values_fall_back_to_stanio_spelling(tmp_path):
    text = _write(tmp_path, {"y": [1.0, math.nan, math.inf]})
    assert "NaN" in text and "Infinity" in text
