"""Replicas of one config, each with its ``--shard``, serve every series exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.local_prometheus import LocalPrometheus, free_port
from devtools.remote_write import push
from devtools.synthetic import Signal
from forecaster.shard import Shard
from tests.helpers import Service, history, wait_for, write_config
from tests.integration.scrape import scrape, served, value

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NODES = 12


@pytest.fixture
def prom(tmp_path: Path):
    (tmp_path / "prom").mkdir()
    with LocalPrometheus(data_dir=tmp_path / "prom") as started:
        yield started


def test_two_replicas_of_one_config_serve_every_series_exactly_once(tmp_path, prom):
    fleet = [{"instance": f"node-{i}:9100", "job": "node"} for i in range(NODES)]
    push(
        prom.write_url,
        [
            history({"__name__": "fleet_load", **labels}, Signal(base=10 + i, daily=2, noise=0.2), span=86400, step=300)
            for i, labels in enumerate(fleet)
        ],
    )
    # Both replicas read the same file, state_dir included: each keeps its state in a folder of its shard.
    config = write_config(
        tmp_path / "forecaster.yml",
        {
            "prometheus": {"url": prom.url, "timeout": "10s"},
            "state_dir": str(tmp_path / "state"),
            "workers": 0,
            "defaults": {"history": "1d", "step": "5m", "horizon": "1h", "retrain_every": "1h"},
            "forecasts": [
                {"name": "load", "query": "fleet_load"},
                {"name": "lonely", "query": 'fleet_load{instance="node-0:9100"}'},
            ],
        },
    )
    replicas = [
        Service(config, free_port(), tmp_path / f"replica-{i}.log", "--shard", f"{i}/2").start() for i in range(2)
    ]
    try:

        def fitted(replica: Service) -> bool:
            samples = scrape(replica)
            return all(
                value(samples, "forecaster_last_success_timestamp_seconds", forecast=f) for f in ("load", "lonely")
            )

        wait_for(lambda: all(fitted(r) for r in replicas), 120, "both replicas to fit both forecasts")
        scraped = [scrape(r) for r in replicas]
        shares = [set(served(samples, "load")) for samples in scraped]
        everyone = {tuple(sorted(labels.items())) for labels in fleet}
        assert shares[0] | shares[1] == everyone
        assert not shares[0] & shares[1]
        assert all(len(share) >= 2 for share in shares)  # 12 series hash to both sides
        for i, share in enumerate(shares):
            assert all(Shard(i, 2).owns(dict(labels)) for labels in share)
        # The one series of "lonely" is served once; its other replica fitted it with nothing to serve.
        assert sorted(len(served(samples, "lonely")) for samples in scraped) == [0, 1]
        assert sorted(value(samples, "forecaster_series", forecast="lonely") for samples in scraped) == [0, 1]
        assert {p.name for p in (tmp_path / "state").iterdir()} == {"shard-0-of-2", "shard-1-of-2"}
    finally:
        for replica in replicas:
            replica.stop()
