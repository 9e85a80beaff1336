from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.local_prometheus import LocalPrometheus, free_port
from tests.helpers import Service, write_config


@pytest.fixture
def service_port() -> int:
    return free_port()


@pytest.fixture
def prometheus(tmp_path: Path, service_port: int) -> Iterator[LocalPrometheus]:
    prom = LocalPrometheus(
        scrape_targets=[f"127.0.0.1:{service_port}"], scrape_interval="1s", data_dir=tmp_path / "prom"
    )
    (tmp_path / "prom").mkdir()
    prom.start()
    yield prom
    prom.stop()


@pytest.fixture
def run_service(tmp_path: Path, service_port: int) -> Iterator[Callable[[dict[str, object]], Service]]:
    started: list[Service] = []

    def start(config: dict[str, object]) -> Service:
        path = write_config(tmp_path / f"forecaster-{len(started)}.yml", config)
        service = Service(path, service_port, tmp_path / "forecaster.log").start()
        started.append(service)
        return service

    yield start
    for service in started:
        if service.process is not None and service.process.poll() is None:
            service.process.kill()
            service.process.wait()
    if os.environ.get("FORECASTER_TEST_LOGS"):
        for service in started:
            print(service.log())
