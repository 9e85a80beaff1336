"""The model options as the config layer validates and merges them."""

from __future__ import annotations

import pytest

from forecaster.config import parse
from forecaster.errors import ConfigError
from forecaster.model.options import ModelOptions


def test_model_keys_are_validated_with_their_path():
    base = {"prometheus": {"url": "http://127.0.0.1:9090"}}
    config = parse(
        {**base, "forecasts": [{"name": "a", "query": "up", "model": {"outliers": "none", "trend": "flat"}}]}
    )
    assert config.forecasts[0].model == ModelOptions(outliers=None, trend="flat")
    bad = {"name": "b", "query": "up", "model": {"transform": "sqrt", "outliers": -1, "colour": 1}}
    with pytest.raises(ConfigError) as raised:
        parse({**base, "forecasts": [bad]})
    text = "\n".join(raised.value.problems)
    assert "forecasts[0].model.transform" in text
    assert "forecasts[0].model.outliers" in text
    assert "forecasts[0].model.colour: unknown key" in text
