"""The benchmarks' local Prometheus: ``settle`` waits out the work a bulk load leaves it."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from devtools.local_prometheus import LocalPrometheus
from devtools.remote_write import TimeSeries, push

pytestmark = pytest.mark.integration


def test_settle_waits_until_a_loaded_history_is_compacted_and_gives_up_on_one_never_quiet():
    with LocalPrometheus(scrape_targets=[]) as prometheus:
        end = time.time() - 60
        times = np.arange(end - 3 * 86400, end, 300.0)
        push(
            prometheus.write_url,
            [
                TimeSeries(
                    {"__name__": "load", "i": str(i)}, (times * 1000).astype(np.int64).tolist(), [1.0] * len(times)
                )
                for i in range(20)
            ],
        )
        waited = prometheus.settle(window=0.5)
        assert waited >= 0.5
        # Three days in the head are more than it keeps: once quiet, they have been cut into blocks.
        compactions = [line for line in _metrics(prometheus) if line.startswith("prometheus_tsdb_compactions_total ")]
        assert float(compactions[0].split()[1]) >= 1
        with pytest.raises(TimeoutError, match=f"{prometheus.url} still busy after 1s"):
            prometheus.settle(quiet=-1.0, window=0.3, timeout=1.0)


def _metrics(prometheus: LocalPrometheus) -> list[str]:
    return httpx.get(f"{prometheus.url}/metrics", timeout=10).text.splitlines()
