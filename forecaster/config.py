"""The configuration file: parsed and validated once, at start-up.

Every problem in a file is gathered and reported together, each with its
path (``forecasts[1].horizon: '1x' is not a duration``), so a user fixes a
broken config in one pass instead of one error per restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from forecaster.duration import Duration
from forecaster.errors import ConfigError
from forecaster.settings import (
    DurationField,
    Forecast,
    ForecastEntry,
    Settings,
    StrictModel,
    at_least,
    message,
    positive,
    resolve,
)
from forecaster.shard import WHOLE, Shard


class BasicAuth(StrictModel):
    username: str
    password_file: Path


class TLSConfig(StrictModel):
    ca_file: Path | None = None
    insecure_skip_verify: bool = False


class PrometheusConfig(StrictModel):
    url: str
    timeout: DurationField = Duration.parse("30s")
    bearer_token_file: Path | None = None
    basic_auth: BasicAuth | None = None
    tls: TLSConfig = TLSConfig()
    headers: dict[str, str] = Field(default_factory=dict)
    retries: int = Field(default=3, ge=0, le=10)
    max_concurrency: int = Field(default=4, ge=1, le=64)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: Duration) -> Duration:
        positive(value)
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for name, text in value.items():
            if not re.match(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", name):
                problems.append(f"{name!r} is not an HTTP header name")
            elif not is_header_safe(text):
                # The value is not quoted: a header may hold a secret.
                problems.append(f"the value of {name} holds a control or non-ASCII character")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusConfig:
        if self.bearer_token_file is not None and self.basic_auth is not None:
            raise ValueError("set bearer_token_file or basic_auth, not both")
        return self


def is_header_safe(value: str) -> bool:
    """Printable ASCII only: anything else httpx refuses per request, quoting the whole header in its error."""
    return all(" " <= c <= "~" or c == "\t" for c in value)


class ServerConfig(StrictModel):
    listen: str = "0.0.0.0:9095"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:9095`` for IPv6) into host and port."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (for example 0.0.0.0:9095)")
    return host.strip("[]") or "0.0.0.0", int(port)


class ExecutorConfig(StrictModel):
    """Where fits run: ``local`` worker processes (the default) or an existing Dask cluster."""

    type: Literal["local", "dask"] = "local"
    address: str | None = None

    @model_validator(mode="after")
    def _address_for_dask(self) -> ExecutorConfig:
        if self.type == "dask" and not self.address:
            raise ValueError("type dask needs address, e.g. tcp://dask-scheduler:8786")
        if self.type == "local" and self.address:
            raise ValueError("address is only used with type: dask")
        return self


class ShardConfig(StrictModel):
    """``shard: {index, count}``: this replica fits and serves the series whose label hash modulo count is index."""

    index: int = Field(ge=0)
    count: int = Field(ge=1)

    @model_validator(mode="after")
    def _index_below_count(self) -> ShardConfig:
        if self.index >= self.count:
            raise ValueError(f"index {self.index} must be below count {self.count} (indexes run 0 to count-1)")
        return self


class _File(StrictModel):
    prometheus: PrometheusConfig
    server: ServerConfig = ServerConfig()
    state_dir: Path = Path("./forecaster-state")
    workers: int | None = Field(default=None, ge=0, le=256)
    fit_timeout: DurationField = Duration.parse("5m")
    executor: ExecutorConfig = ExecutorConfig()
    shard: ShardConfig | None = None
    defaults: Settings = Settings()
    forecasts: list[ForecastEntry] = Field(min_length=1)

    @field_validator("fit_timeout")
    @classmethod
    def _fit_timeout(cls, value: Duration) -> Duration:
        at_least(value, 1.0)
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> _File:
        seen: set[str] = set()
        for entry in self.forecasts:
            if entry.name in seen:
                raise ValueError(f"forecast name {entry.name!r} is used more than once")
            seen.add(entry.name)
        return self


@dataclass(frozen=True)
class Config:
    prometheus: PrometheusConfig
    server: ServerConfig
    state_dir: Path
    forecasts: tuple[Forecast, ...]
    workers: int | None
    fit_timeout: Duration
    executor: ExecutorConfig
    shard: Shard = WHOLE

    @property
    def replica_state_dir(self) -> Path:
        """Where this replica keeps its state: ``state_dir``, or a folder of it per shard.

        Replicas of one config may then share a volume, and a replica moved
        to another shard count starts fresh instead of reading series that
        are no longer its own.
        """
        if self.shard == WHOLE:
            return self.state_dir
        return self.state_dir / f"shard-{self.shard.index}-of-{self.shard.count}"

    def forecast(self, name: str) -> Forecast:
        for forecast in self.forecasts:
            if forecast.name == name:
                return forecast
        names = ", ".join(f.name for f in self.forecasts)
        raise ConfigError([f"no forecast named {name!r}; the config has: {names}"])


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith("function-") or part in ("str", "int", "float", "bool", "literal"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def parse(data: object, source: str = "config") -> Config:
    """Validate a loaded YAML document; raise ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: expected a mapping with prometheus and forecasts, got {type(data).__name__}"])
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path = _path(error["loc"])
            line = f"{path}: {message(error)}" if path else message(error)
            if line not in problems:
                problems.append(line)
        raise ConfigError(problems) from None
    forecasts, problems = [], []
    for index, entry in enumerate(parsed.forecasts):
        forecast, found = resolve(entry, parsed.defaults, index)
        problems.extend(found)
        if forecast is not None:
            forecasts.append(forecast)
    if problems:
        raise ConfigError(problems)
    return Config(
        parsed.prometheus,
        parsed.server,
        parsed.state_dir,
        tuple(forecasts),
        workers=parsed.workers,
        fit_timeout=parsed.fit_timeout,
        executor=parsed.executor,
        shard=Shard(parsed.shard.index, parsed.shard.count) if parsed.shard else WHOLE,
    )


def load(path: str | Path) -> Config:
    """Read and validate a config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror}"]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader that refuses duplicate keys
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    return parse(data, str(path))


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice (line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
