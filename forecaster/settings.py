"""One forecast's settings: the keys ``defaults`` sets and a forecast overrides, resolved into a ``Forecast``.

Each forecast's value of a key is its own, else the one in ``defaults``, else
the built-in default (``BUILTIN_DEFAULTS``); ``prophet`` and ``model`` merge
key by key. A ``breach`` is resolved here, once, into the ``BreachRule`` the
trainer and the exporter read. Problems are returned with their paths, for
``config`` to report together with every other one in the file.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from forecaster.duration import Duration
from forecaster.model.options import FitSpec, ModelOptions, ProphetOptions

NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Bounds that keep one series' history (16 bytes a point) and frame to a few MB, and Prometheus unhammered.
MAX_HISTORY_POINTS = 250_000
MAX_FRAME_POINTS = 20_000
MIN_STEP = 1.0
MIN_RETRAIN_EVERY = 10.0


def promql(value: str) -> str:
    """``value`` if it parses as PromQL (syntax only, as Prometheus' own parser would); else ValueError."""
    import promql_parser

    if not value.strip():
        raise ValueError("must not be empty")
    try:
        promql_parser.parse(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not valid PromQL: {exc}") from None
    return value


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)


DurationField = Annotated[Duration, BeforeValidator(Duration.parse)]


def at_least(value: Duration | None, seconds: float) -> Duration | None:
    if value is not None and value.seconds < seconds:
        raise ValueError(f"{value.text!r} is shorter than the smallest that runs, {seconds:g}s")
    return value


def positive(value: Duration | None) -> Duration | None:
    if value is not None and value.seconds <= 0:
        raise ValueError(f"{value.text!r} must be longer than zero")
    return value


class BreachConfig(StrictModel):
    """When a forecast band crossing a threshold counts as a breach; exposed as forecast_breach_seconds.

    A fixed threshold says its direction (``above: 1200`` or ``below: 0``); a
    per-series threshold from ``threshold_query`` needs ``direction``.
    """

    above: float | None = Field(default=None, allow_inf_nan=False)
    below: float | None = Field(default=None, allow_inf_nan=False)
    threshold_query: str | None = None
    direction: Literal["above", "below"] | None = None
    band: Literal["yhat", "yhat_lower", "yhat_upper"] | None = None

    @field_validator("threshold_query")
    @classmethod
    def _threshold_query(cls, value: str | None) -> str | None:
        return None if value is None else promql(value)

    @model_validator(mode="after")
    def _one_threshold(self) -> BreachConfig:
        given = [key for key in ("above", "below", "threshold_query") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of above: N, below: N or threshold_query: QUERY (with direction: above|below)"
                + (f"; got {', '.join(given)}" if given else "")
            )
        if self.threshold_query is not None:
            if self.direction is None:
                raise ValueError("threshold_query needs direction: above or below")
        elif self.direction is not None:
            raise ValueError("direction goes with threshold_query; above: N and below: N already say it")
        return self

    def rule(self) -> BreachRule:
        direction: Literal["above", "below"] = self.direction or ("above" if self.above is not None else "below")
        return BreachRule(
            direction=direction,
            band=self.band or ("yhat_upper" if direction == "above" else "yhat_lower"),
            threshold=self.above if self.above is not None else self.below,
            threshold_query=self.threshold_query,
        )


@dataclass(frozen=True)
class BreachRule:
    """A forecast's ``breach``, resolved once: which curve must reach which threshold from which side.

    ``threshold`` is the fixed one (``above: N`` or ``below: N``); with
    ``threshold_query`` each series has its own, read at retrain time and
    stored with the series.
    """

    direction: Literal["above", "below"]
    band: Literal["yhat", "yhat_lower", "yhat_upper"]
    threshold: float | None = None
    threshold_query: str | None = None

    def threshold_of(self, from_query: float | None) -> float | None:
        """The threshold of one series, given what its threshold_query matched (None: no match)."""
        return from_query if self.threshold_query is not None else self.threshold


# Names Prophet gives its own columns; an event called one of these would be refused mid-fit.
RESERVED_EVENT_NAMES = frozenset(
    {"ds", "y", "cap", "floor", "y_scaled", "cap_scaled", "trend", "holidays", "zeros", "yhat"}
    | {"daily", "weekly", "yearly", "additive_terms", "multiplicative_terms"}
    | {"extra_regressors_additive", "extra_regressors_multiplicative"}
)
MAX_EVENT_WINDOW_DAYS = 31


class EventConfig(StrictModel):
    """A known event (a launch, a sale, a play-off): Prophet fits its effect and applies it when it recurs.

    ``before`` and ``after`` widen each date into a window of whole days, as
    Prophet's ``lower_window`` and ``upper_window`` do.
    """

    name: str
    dates: list[datetime.date] = Field(min_length=1)
    before: DurationField = Duration.parse("0d")
    after: DurationField = Duration.parse("0d")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid name (letters, digits and _, not starting with a digit)")
        if value in RESERVED_EVENT_NAMES or value.endswith(("_lower", "_upper")):
            raise ValueError(f"{value!r} is a name Prophet uses for its own columns; choose another")
        return value

    @field_validator("before", "after")
    @classmethod
    def _whole_days(cls, value: Duration) -> Duration:
        days = value.seconds / 86400
        if days != int(days) or not 0 <= days <= MAX_EVENT_WINDOW_DAYS:
            raise ValueError(f"{value.text!r} must be whole days, 0d to {MAX_EVENT_WINDOW_DAYS}d, as Prophet counts")
        return value

    def rows(self) -> list[tuple[str, str, int, int]]:
        """Prophet's holiday rows: name, date, lower_window, upper_window."""
        before, after = round(self.before.seconds / 86400), round(self.after.seconds / 86400)
        return [(self.name, day.isoformat(), -before, after) for day in sorted(set(self.dates))]


class HolidaysConfig(StrictModel):
    """Prophet's built-in public holidays of one country (``holidays: {country: US}``)."""

    country: str

    @field_validator("country")
    @classmethod
    def _known(cls, value: str) -> str:
        import holidays

        if value not in holidays.list_supported_countries():
            raise ValueError(
                f"{value!r} is not a country the holidays package knows; use an ISO 3166 code such as US, GB or DE"
            )
        return value


class Settings(StrictModel):
    """The keys that ``defaults`` sets and each forecast may override."""

    history: DurationField | None = None
    step: DurationField | None = None
    horizon: DurationField | None = None
    horizons: list[DurationField] | None = None
    retrain_every: DurationField | None = None
    interval_width: float | None = Field(default=None, gt=0, lt=1)
    min_points: int | None = Field(default=None, ge=3)
    max_series: int | None = Field(default=None, ge=1)
    prophet: ProphetOptions | None = None
    model: ModelOptions | None = None
    breach: BreachConfig | None = None
    holidays: HolidaysConfig | None = None
    events: list[EventConfig] | None = None

    @field_validator("events")
    @classmethod
    def _distinct_events(cls, value: list[EventConfig] | None) -> list[EventConfig] | None:
        names = [event.name for event in value or ()]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"event names must be distinct; {', '.join(repeated)} is given twice")
        return value

    @field_validator("model", mode="before")
    @classmethod
    def _null_is_unset(cls, value: object) -> object:
        # A key given as null is not set in this layer, as everywhere else; `outliers: none` turns clipping off.
        return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value

    @field_validator("history", "step", "horizon", "retrain_every")
    @classmethod
    def _positive_duration(cls, value: Duration | None) -> Duration | None:
        return positive(value)

    @field_validator("step")
    @classmethod
    def _step(cls, value: Duration | None) -> Duration | None:
        return at_least(value, MIN_STEP)

    @field_validator("retrain_every")
    @classmethod
    def _retrain_every(cls, value: Duration | None) -> Duration | None:
        return at_least(value, MIN_RETRAIN_EVERY)


BUILTIN_DEFAULTS = Settings(
    history=Duration.parse("28d"),
    step=Duration.parse("5m"),
    horizon=Duration.parse("1d"),
    horizons=[Duration.parse("1h")],
    retrain_every=Duration.parse("1h"),
    interval_width=0.8,
    min_points=20,
    max_series=1000,
    prophet=ProphetOptions(),
)


class ForecastEntry(Settings):
    name: str
    query: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid name (letters, digits and _, not starting with a digit)")
        return value

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        return promql(value)


@dataclass(frozen=True)
class Forecast:
    """One forecast with every setting resolved (its own, else defaults, else built-in)."""

    name: str
    query: str
    history: Duration
    step: Duration
    horizon: Duration
    horizons: tuple[Duration, ...]
    retrain_every: Duration
    interval_width: float
    min_points: int
    max_series: int
    prophet: dict[str, Any]
    breach: BreachRule | None = None
    model: ModelOptions = dataclasses.field(default_factory=ModelOptions)
    # Prophet's holiday rows (name, ISO date, lower_window, upper_window) and built-in holidays' country.
    events: tuple[tuple[str, str, int, int], ...] = ()
    holidays_country: str | None = None

    def fit_spec(self) -> FitSpec:
        return FitSpec(
            step=self.step.seconds,
            horizon=self.horizon.seconds,
            interval_width=self.interval_width,
            min_points=self.min_points,
            prophet=dict(self.prophet),
            model=self.model,
            hint=f"{self.name} {self.query}",
            events=self.events,
            holidays_country=self.holidays_country,
        )


def resolve(entry: ForecastEntry, defaults: Settings, index: int) -> tuple[Forecast | None, list[str]]:
    def pick(key: str) -> Any:
        for layer in (entry, defaults, BUILTIN_DEFAULTS):
            value = getattr(layer, key)
            if value is not None:
                return value
        raise AssertionError(key)

    where = f"forecasts[{index}]"
    problems: list[str] = []
    try:
        model = _model_options(defaults.model, entry.model)
    except ValidationError as exc:
        model = ModelOptions()
        problems.extend(f"{where}.model: {message(error)}" for error in exc.errors())
    breach = entry.breach if entry.breach is not None else defaults.breach
    events = entry.events if entry.events is not None else defaults.events or []
    holidays = entry.holidays if entry.holidays is not None else defaults.holidays
    prophet = {**BUILTIN_DEFAULTS.prophet.as_kwargs()}  # type: ignore[union-attr]
    for layer in (defaults, entry):
        if layer.prophet is not None:
            prophet.update(layer.prophet.as_kwargs())
    forecast = Forecast(
        name=entry.name,
        query=entry.query,
        history=pick("history"),
        step=pick("step"),
        horizon=pick("horizon"),
        horizons=tuple(pick("horizons")),
        retrain_every=pick("retrain_every"),
        interval_width=pick("interval_width"),
        min_points=pick("min_points"),
        max_series=pick("max_series"),
        prophet=prophet,
        breach=breach.rule() if breach is not None else None,
        model=model,
        events=tuple(row for event in events for row in event.rows()),
        holidays_country=holidays.country if holidays is not None else None,
    )
    for i, h in enumerate(forecast.horizons):
        if h.seconds > forecast.horizon.seconds:
            problems.append(f"{where}.horizons[{i}]: {h.text!r} exceeds horizon {forecast.horizon.text!r}")
        if h.seconds <= 0:
            problems.append(f"{where}.horizons[{i}]: {h.text!r} must be longer than zero (0s is always exposed)")
    if len({h.seconds for h in forecast.horizons}) != len(forecast.horizons):
        problems.append(f"{where}.horizons: entries must be distinct")
    if forecast.step.seconds > forecast.horizon.seconds:
        problems.append(f"{where}.step: {forecast.step.text!r} is longer than horizon {forecast.horizon.text!r}")
    if forecast.history.seconds < 2 * forecast.step.seconds:
        problems.append(
            f"{where}.history: {forecast.history.text!r} holds fewer than two steps of {forecast.step.text!r}"
        )
    for key, limit in (("history", MAX_HISTORY_POINTS), ("horizon", MAX_FRAME_POINTS)):
        span: Duration = getattr(forecast, key)
        if span.seconds / forecast.step.seconds > limit:
            problems.append(
                f"{where}.{key}: {span.text!r} at step {forecast.step.text!r} is more than {limit:,} points a series; "
                f"shorten {key} or coarsen step"
            )
    return (None if problems else forecast), problems


def _model_options(*layers: ModelOptions | None) -> ModelOptions:
    """The built-in model defaults with the keys ``defaults.model`` and then the forecast's own set on top."""
    chosen: dict[str, Any] = {}
    for layer in layers:
        if layer is not None:
            chosen.update(layer.model_dump(exclude_unset=True))
    return ModelOptions.model_validate(chosen)


def message(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown key"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")
