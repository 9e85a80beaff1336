"""A throwaway Prometheus on a loopback port, for ``make demo``, benchmarks and tests.

It runs the distribution's ``prometheus`` binary with a temporary data
directory, the remote-write receiver on, and an out-of-order window wide
enough to accept weeks of back-filled history.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx
import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str = "prometheus") -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(
            f"{name!r} is not on PATH. Install it with 'apt-get install -y prometheus' (Debian/Ubuntu, as root)."
        )
    return path


class LocalPrometheus:
    """Start with ``with LocalPrometheus(scrape_targets=[...]) as prom:``; ``prom.url`` is its address."""

    def __init__(
        self,
        *,
        scrape_targets: list[str] | None = None,
        scrape_interval: str = "5s",
        rule_files: list[str] | None = None,
        alertmanagers: list[str] | None = None,
        extra_scrape_configs: list[dict[str, object]] | None = None,
        port: int | None = None,
        data_dir: Path | None = None,
        out_of_order_window: str = "400d",
        extra_args: list[str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.dir = Path(data_dir or tempfile.mkdtemp(prefix="forecaster-prom-"))
        self.url = f"http://127.0.0.1:{self.port}"
        self._scrape_targets = scrape_targets or []
        self._scrape_interval = scrape_interval
        self._rule_files = rule_files or []
        self._alertmanagers = alertmanagers or []
        self._extra_scrape_configs = extra_scrape_configs or []
        self._ooo = out_of_order_window
        self._extra_args = extra_args or []
        self.log_path = log_path or self.dir / "prometheus.log"
        self.query_log = self.dir / "query.log"
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> Path:
        config: dict[str, object] = {
            "global": {
                "scrape_interval": self._scrape_interval,
                "evaluation_interval": self._scrape_interval,
                "query_log_file": str(self.query_log),
            },
            "storage": {"tsdb": {"out_of_order_time_window": self._ooo}},
            # Prometheus scrapes itself so tests can read prometheus_target_scrapes_sample_out_of_bounds_total.
            "scrape_configs": [{"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{self.port}"]}]}],
        }
        if self._scrape_targets:
            config["scrape_configs"].append(  # type: ignore[attr-defined]
                {"job_name": "forecaster", "honor_labels": True, "static_configs": [{"targets": self._scrape_targets}]}
            )
        config["scrape_configs"].extend(self._extra_scrape_configs)  # type: ignore[attr-defined]
        if self._rule_files:
            config["rule_files"] = self._rule_files
        if self._alertmanagers:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": self._alertmanagers}]}]}
        path = self.dir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self, timeout: float = 30.0) -> LocalPrometheus:
        config_path = self.write_config()
        args = [
            find_binary(),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
            # Back-filled history is as old as the out-of-order window allows; the default 15d would delete part of it.
            f"--storage.tsdb.retention.time={self._ooo}",
            "--web.enable-lifecycle",
            *self._extra_args,
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.dir)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"prometheus on {self.url} not ready after {timeout}s; see {self.log_path}")

    def settle(self, quiet: float = 0.1, window: float = 2.0, timeout: float = 300.0) -> float:
        """Wait until Prometheus has stopped working on what was just written to it; the seconds waited.

        Remote-writing days of history puts them in the head block, which
        Prometheus then cuts into 2-hour blocks and merges, on one core, for
        about 12 s after 14 days of 60 or 500 series (measured here). Anything
        timed meanwhile shares the machine with that. Quiet is less than
        ``quiet`` seconds of Prometheus' own CPU (``process_cpu_seconds_total``)
        in ``window`` seconds.
        """
        started = time.monotonic()
        before = self._cpu_seconds()
        while time.monotonic() - started < timeout:
            time.sleep(window)
            now = self._cpu_seconds()
            if now - before < quiet:
                return time.monotonic() - started
            before = now
        raise TimeoutError(f"prometheus on {self.url} still busy after {timeout:g}s; see {self.log_path}")

    def _cpu_seconds(self) -> float:
        for line in httpx.get(f"{self.url}/metrics", timeout=10).text.splitlines():
            if line.startswith("process_cpu_seconds_total "):
                return float(line.split()[1])
        raise RuntimeError(f"prometheus on {self.url} exposes no process_cpu_seconds_total")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir and not os.environ.get("FORECASTER_KEEP_PROMETHEUS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.cleanup()

    # Convenience for callers that assert through PromQL.
    def query(self, promql: str, at: float | None = None) -> list[dict[str, object]]:
        params = {"query": promql}
        if at is not None:
            params["time"] = str(at)
        body = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=30).json()
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body.get('error')}")
        result: list[dict[str, object]] = body["data"]["result"]
        return result

    @property
    def write_url(self) -> str:
        return f"{self.url}/api/v1/write"
