"""A faster writer for the JSON files Stan reads its data and initial values from.

cmdstanpy writes every fit's data and initial values to temporary JSON files
through ``stanio.write_stan_json``, a pure-Python encoder. On a 4,032-point
series with daily and weekly seasonality that was about 40% of a warm-started
fit (profiled with cProfile; figures in the README). orjson writes the same
numbers (shortest round-trip representation, as ``repr`` does) in a fraction
of the time. Stan's JSON needs NaN and Infinity spelled out, which orjson
cannot do, so any payload holding them goes to stanio's writer.
"""

from __future__ import annotations

from typing import Any

import orjson

_installed = False


def write(path: str, data: Any) -> None:
    """``data`` (numbers, lists, numpy arrays) as Stan's JSON at ``path``."""
    try:
        payload = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        payload = b"null"
    # orjson writes non-finite floats (and anything it cannot encode) as null: let stanio spell them.
    if b"null" in payload:
        from stanio import write_stan_json

        write_stan_json(path, data)
        return
    with open(path, "wb") as handle:
        handle.write(payload)


def install() -> None:
    """Route cmdstanpy's data and init files (Prophet's own fits) through ``write``; idempotent."""
    global _installed
    if _installed:
        return
    from cmdstanpy.utils import filesystem

    filesystem.write_stan_json = write  # type: ignore[attr-defined]
    _installed = True
