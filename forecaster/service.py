"""The composition root: the running service's parts, built from a config in one place.

``Service(config)`` wires the Prometheus source, the fit executor, the state
store and history cache, the scrape board and self-metrics into a
``Trainer``; ``serve`` adds the HTTP server with its status page and the
scheduler, and runs until told to stop. ``forecaster run`` and ``forecaster
forecast`` both start here, so they retrain exactly alike. Nothing is built at import time.
"""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client import CollectorRegistry

from forecaster.config import Config
from forecaster.errors import ForecasterError
from forecaster.executor import build_executor
from forecaster.exporter import Board, ForecastCollector, SelfMetrics
from forecaster.history import HistoryCache
from forecaster.prometheus import PrometheusSource
from forecaster.settings import Forecast
from forecaster.state import ForecastState, StateDirLock, StateStore
from forecaster.trainer import Trainer

log = logging.getLogger(__name__)


class Service:
    """Everything ``run`` and ``forecast`` share. Call ``close`` when done."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.lock = StateDirLock(config.replica_state_dir)
        self.lock.acquire()
        self.registry = CollectorRegistry()
        self.metrics = SelfMetrics(self.registry, config.forecasts)
        self.board = Board(config.forecasts)
        self.forecast_text = ForecastCollector(self.board)
        self.store = StateStore(config.replica_state_dir)
        self.history = HistoryCache(config.replica_state_dir)
        # One event stops both the fits and any query backing off between retries.
        self.stop = threading.Event()
        self.source = PrometheusSource.from_config(config.prometheus, stop=self.stop)
        self.executor = build_executor(config)
        self.trainer = Trainer(
            self.source,
            self.store,
            self.board,
            self.metrics,
            stop=self.stop,
            history=self.history,
            executor=self.executor,
            shard=config.shard,
        )

    def close(self) -> None:
        self.executor.close()
        self.source.close()
        self.lock.release()

    def load_state(self) -> int:
        """Serve every usable stored forecast; returns how many there were. Asks Prometheus nothing."""
        self.store.clean_temporaries()
        self.history.clean_temporaries()
        loaded = 0
        for forecast in self.config.forecasts:
            state = self.store.load(forecast.name, forecast.query)
            if state is not None:
                self.trainer.adopt(state)
                loaded += 1
        return loaded

    def wait_for_retrains(self, timeout: float) -> bool:
        """Give retrains still running (a query Prometheus has not answered) up to ``timeout`` to end.

        The stop flag ends a retrain between requests and between fits, but
        not inside a request that hangs until ``prometheus.timeout``.
        """
        return self.trainer.wait_idle(timeout)

    def retrain(self, forecast: Forecast) -> ForecastState | None:
        """One retrain of ``forecast`` now; None when it kept its previous forecast (the log says why)."""
        return self.trainer.run(forecast)

    def serve(self, host: str, port: int, stopping: threading.Event) -> None:
        """Serve ``/metrics`` and retrain on schedule until ``stopping`` is set; stored forecasts are served first."""
        # Only serving needs these (APScheduler and asyncio among them): ``forecaster forecast`` starts without them.
        from forecaster.query_api import QueryAPI
        from forecaster.scheduler import Scheduler
        from forecaster.server import MetricsServer
        from forecaster.status_page import StatusPage

        ready = threading.Event()
        scheduler = Scheduler(self.trainer, self.config.forecasts)
        page = StatusPage(self.board, self.metrics, self.config.forecasts, scheduler.next_run, shard=self.config.shard)
        try:
            server = MetricsServer(
                self.registry,
                host,
                port,
                ready,
                page.render,
                QueryAPI(self.board, time.time),
                forecasts=self.forecast_text.render,
            )
        except OSError as exc:
            raise ForecasterError(
                f"cannot listen on {host}:{port}: {exc.strerror}; choose another with --listen"
            ) from None
        server.start()
        log.info("serving /metrics and the query API (/api/v1/) on http://%s:%d", *server.address)
        loaded = self.load_state()
        ready.set()
        log.info("loaded %d stored forecast(s) from %s", loaded, self.config.replica_state_dir)
        scheduler.start()
        while not stopping.wait(1.0):
            pass
        self.stop.set()
        scheduler.shutdown()
        server.stop()
        log.info("stopped")
