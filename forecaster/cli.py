"""The ``forecaster`` command: parses arguments and hands each command to the module that does it.

run       forecaster.service.Service.serve
check     forecaster.config.load
forecast  forecaster.service.Service.retrain, or forecaster.asof.forecast_at with --at
backtest  forecaster.asof.backtest, printed by forecaster.backtest.write_table
rules     forecaster.recording_rules.render
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from forecaster.errors import ConfigError, ForecasterError, MissingExtra, StateDirInUse
from forecaster.executor import local_workers, start_fork_server, stop_fork_server

if TYPE_CHECKING:
    from forecaster.config import Config
    from forecaster.service import Service
    from forecaster.settings import Forecast
    from forecaster.state import ForecastState

log = logging.getLogger("forecaster")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
# How long a stopping service waits for a retrain stuck in a request before it exits without it.
SHUTDOWN_GRACE = 3.0


def main(argv: Sequence[str] | None = None) -> int:
    # Importing the config's validators, numpy and the service allocates hundreds of thousands of objects, none of
    # them garbage, and each allocation threshold crossed runs a collection over them all. Collection resumes once
    # they are in place (``_service``, or in ``_main`` for the commands without one), frozen out of later collections.
    gc.disable()
    # This process fits only inline (workers: 0, backtest), where BLAS threads made a warm fit no faster and took 60-90%
    # more CPU; at start-up OpenBLAS's second thread alone cost about 0.1 s of CPU, against the fork server importing
    # the model on the other core. numpy reads this when it loads; a value set in the environment wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        return _main(argv)
    finally:
        gc.enable()


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # One line per HTTP request or scheduled run drowns the service's own log.
    for noisy in ("httpx", "apscheduler.executors.default", "apscheduler.scheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    fits_here = args.handler in (_run, _forecast) and not getattr(args, "at", None)
    if fits_here:
        # Importing the model takes the fit workers' fork server about half a second. Started before the config is
        # even read, it does so while this process imports the config's validation and the service and queries
        # Prometheus, which is why those imports wait until here and inside the commands. A config whose fits run
        # elsewhere (Dask, or inline with workers: 0) stops it again below.
        start_fork_server()
    from forecaster import config as config_module
    from forecaster.shard import Shard

    try:
        config = config_module.load(args.config)
    except ConfigError as exc:
        print(f"{args.config}: invalid configuration", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_INVALID
    if getattr(args, "shard", None):
        try:
            config = dataclasses.replace(config, shard=Shard.parse(args.shard))
        except ValueError as exc:
            print(f"--shard: {exc}", file=sys.stderr)
            return EXIT_INVALID
    if fits_here and not local_workers(config):
        stop_fork_server()
    if not fits_here:
        gc.enable()
    try:
        command: int = args.handler(config, args)
        # Leaving, the interpreter collects garbage over every object it holds; with the config's validators, numpy
        # and the service that took a fifth of a second of a 60-series forecast's two, and nothing is left to collect.
        gc.freeze()
        return command
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_INVALID
    except (MissingExtra, StateDirInUse) as exc:
        print(f"forecaster: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except ForecasterError as exc:
        print(f"forecaster: {exc}", file=sys.stderr)
        return EXIT_FAILURE


_SHARD_HELP = "fit and serve only shard I of N (0-based) of every forecast's series; overrides shard in the config"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forecaster", description="Prophet forecasts of Prometheus series, exposed for Prometheus to scrape."
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="serve forecasts on /metrics and retrain on schedule")
    run.add_argument("-c", "--config", required=True, metavar="FILE")
    run.add_argument("--listen", metavar="HOST:PORT", help="overrides server.listen")
    run.add_argument("--shard", metavar="I/N", help=_SHARD_HELP)
    run.set_defaults(handler=_run)

    check = commands.add_parser("check", help="validate a config file; exit 0 when valid, 2 when not")
    check.add_argument("-c", "--config", required=True, metavar="FILE")
    check.set_defaults(handler=_check)

    forecast = commands.add_parser("forecast", help="run one retrain cycle in the foreground and print it")
    forecast.add_argument("-c", "--config", required=True, metavar="FILE")
    forecast.add_argument("--name", help="only this forecast")
    forecast.add_argument("--format", choices=["table", "jsonl"], default="table")
    forecast.add_argument("--shard", metavar="I/N", help=_SHARD_HELP)
    forecast.add_argument(
        "--full", action="store_true", help="with --format table: every point of each frame, not a line per series"
    )
    forecast.add_argument(
        "--at",
        action="append",
        metavar="TIME",
        help="fit on the history strictly before TIME (RFC 3339 or unix seconds) instead of now; repeatable; "
        "reads Prometheus directly and stores nothing",
    )
    forecast.set_defaults(handler=_forecast)

    backtest = commands.add_parser(
        "backtest", help="rolling-origin evaluation against last value, offset 1d/1w and predict_linear"
    )
    backtest.add_argument("-c", "--config", required=True, metavar="FILE")
    backtest.add_argument("--name", help="only this forecast")
    backtest.add_argument("--origins", type=int, default=6, metavar="N", help="rolling origins per series (default 6)")
    backtest.add_argument(
        "--horizons",
        metavar="DURATIONS",
        help="comma-separated horizons to score (default: the forecast's horizons and its horizon)",
    )
    backtest.add_argument("--plot", metavar="DIR", help="write one PNG per series into DIR")
    backtest.set_defaults(handler=_backtest)

    rules = commands.add_parser(
        "rules", help="print the forecast:actual recording rules (each forecast's query) for Prometheus"
    )
    rules.add_argument("-c", "--config", required=True, metavar="FILE")
    rules.set_defaults(handler=_rules)
    return parser


def _rules(config: Config, args: argparse.Namespace) -> int:
    from forecaster import recording_rules

    sys.stdout.write(recording_rules.render(config, args.config))
    return EXIT_OK


def _check(config: Config, args: argparse.Namespace) -> int:
    from forecaster.prometheus import build_http_client

    try:
        # Reads the secret and CA files the service would: one that cannot be used fails here, not at the first query.
        build_http_client(config.prometheus).close()
    except ForecasterError as exc:
        raise ConfigError([f"{args.config}: {exc}"]) from None
    names = ", ".join(f.name for f in config.forecasts)
    print(f"{args.config}: valid, {len(config.forecasts)} forecast(s): {names}")
    return EXIT_OK


def _run(config: Config, args: argparse.Namespace) -> int:
    from forecaster.config import parse_listen

    listen = args.listen or config.server.listen
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise ConfigError([f"--listen: {exc}"]) from None
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service = _service(config)
    try:
        service.serve(host, port, stopping)
    finally:
        if not service.wait_for_retrains(SHUTDOWN_GRACE):
            # Nothing is lost: state files are replaced atomically, and the retrain's result was to be dropped anyway.
            log.info("a retrain is still waiting for Prometheus; exiting without it")
            logging.shutdown()
            os._exit(EXIT_OK)
        service.close()
    return EXIT_OK


def _forecast(config: Config, args: argparse.Namespace) -> int:
    forecasts = [config.forecast(args.name)] if args.name else list(config.forecasts)
    if args.at:
        # Only here: the as-of module brings the model and the backtest, which a retrain runs in its workers.
        from forecaster import asof

        return _forecast_at(config, forecasts, [asof.parse_time(text) for text in args.at], args.format, args.full)
    service = _service(config)
    failed = 0
    try:
        service.load_state()
        for forecast in forecasts:
            state = service.retrain(forecast)
            if state is None:
                failed += 1
                continue
            print_state(state, args.format, sys.stdout, full=args.full)
    finally:
        service.close()
    return EXIT_FAILURE if failed else EXIT_OK


def _service(config: Config) -> Service:
    from prometheus_client import disable_created_metrics

    from forecaster.service import Service

    disable_created_metrics()  # type: ignore[no-untyped-call]
    service = Service(config)
    gc.freeze()
    gc.enable()
    return service


def _forecast_at(config: Config, forecasts: list[Forecast], times: list[float], fmt: str, full: bool) -> int:
    from forecaster import asof
    from forecaster.prometheus import PrometheusSource

    # No Service: nothing here may read or write the history cache or the stored state.
    source = PrometheusSource.from_config(config.prometheus)
    failed = 0
    try:
        for at in times:
            for forecast in forecasts:
                state, skipped = asof.forecast_at(source, forecast, at)
                for line in skipped:
                    log.warning("%s", line)
                if not state.series:
                    log.error("forecast %r: no series could be fitted as of %s", forecast.name, _utc(at))
                    failed += 1
                    continue
                print_state(state, fmt, sys.stdout, at=at, full=full)
    finally:
        source.close()
    return EXIT_FAILURE if failed else EXIT_OK


def _backtest(config: Config, args: argparse.Namespace) -> int:
    from forecaster import asof
    from forecaster.backtest import write_table
    from forecaster.prometheus import PrometheusSource

    forecasts = [config.forecast(args.name)] if args.name else list(config.forecasts)
    if args.origins < 1:
        raise ConfigError([f"--origins: {args.origins} must be at least 1"])
    source = PrometheusSource.from_config(config.prometheus)
    now = time.time()
    try:
        for forecast in forecasts:
            horizons = _backtest_horizons(forecast, args.horizons)
            reports = asof.backtest(
                source,
                forecast,
                origins=args.origins,
                horizons=horizons,
                now=now,
                plot_dir=Path(args.plot) if args.plot else None,
            )
            print(f"forecast {forecast.name}: {len(reports)} series, {args.origins} origins")
            write_table(reports, forecast.interval_width, sys.stdout)
    finally:
        source.close()
    return EXIT_OK


def _backtest_horizons(forecast: Forecast, text: str | None) -> list[float]:
    from forecaster.duration import Duration

    if text is None:
        return sorted({h.seconds for h in forecast.horizons} | {forecast.horizon.seconds})
    horizons = []
    for part in text.split(","):
        try:
            horizons.append(Duration.parse(part.strip()).seconds)
        except ValueError as exc:
            raise ConfigError([f"--horizons: {exc}"]) from None
    return sorted(set(horizons))


def _utc(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def print_state(state: ForecastState, fmt: str, out: TextIO, at: float | None = None, full: bool = False) -> None:
    """One line per series (``table``), every frame point (``table`` with ``full``) or one JSON object a point.

    ``at`` (the origin of an as-of forecast) adds an ``at`` key to each jsonl record.
    """
    import numpy as np
    import orjson

    from forecaster.series import format_labels

    if fmt == "jsonl":
        # orjson and whole-array conversions: a record at a time through json.dumps took 0.5 s for 60 series a day.
        extra = {"at": int(at)} if at is not None else {}
        for series in state.series:
            frame = series.frame
            rows = zip(
                frame.ds.astype(np.int64).tolist(),
                frame.yhat.tolist(),
                frame.yhat_lower.tolist(),
                frame.yhat_upper.tolist(),
                strict=True,
            )
            out.write(
                "".join(
                    orjson.dumps(
                        {
                            "forecast": state.forecast,
                            "labels": series.labels,
                            "ds": ds,
                            "yhat": yhat,
                            "yhat_lower": lower,
                            "yhat_upper": upper,
                            **extra,
                        }
                    ).decode()
                    + "\n"
                    for ds, yhat, lower, upper in rows
                )
            )
        return
    out.write(
        f"forecast {state.forecast}: {len(state.series)} series, fit at "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(state.fit_time))}\n"
    )
    if not full:
        _summary(state, out)
        return
    out.write(f"{'time (UTC)':<22}{'yhat':>14}{'yhat_lower':>14}{'yhat_upper':>14}\n")
    for series in state.series:
        out.write(f"{format_labels(series.labels)}\n")
        frame = series.frame
        for i in range(len(frame.ds)):
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(frame.ds[i]))
            out.write(f"  {when:<20}{frame.yhat[i]:>14.6g}{frame.yhat_lower[i]:>14.6g}{frame.yhat_upper[i]:>14.6g}\n")


def _summary(state: ForecastState, out: TextIO) -> None:
    """Per series: the forecast at the fit time and at the end of the frame, each with its band."""
    from forecaster.series import format_labels

    if not state.series:
        return
    names = [format_labels(series.labels) for series in state.series]
    width = max(len("series"), *(len(name) for name in names)) + 2
    end = state.series[0].frame.ds[-1] - state.fit_time
    ahead = f"in {end / 3600:g}h" if end < 2 * 86400 else f"in {end / 86400:g}d"
    out.write(f"{'series':<{width}}{'now (band)':>34}{ahead + ' (band)':>34}\n")
    for name, series in zip(names, state.series, strict=True):
        frame = series.frame
        cells = [f"{frame.yhat[i]:.4g} ({frame.yhat_lower[i]:.4g} .. {frame.yhat_upper[i]:.4g})" for i in (0, -1)]
        out.write(f"{name:<{width}}{cells[0]:>34}{cells[1]:>34}\n")
    out.write("every point of each frame: --full, or --format jsonl\n")
