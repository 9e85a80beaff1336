"""What a fit is asked to do: the ``model`` and ``prophet`` options and the rest of a fit's inputs.

This module owns the ``model:`` and ``prophet:`` vocabularies. The config layer validates a
YAML ``model:`` block against ``ModelOptions`` itself (each layer of
``defaults`` and the forecast on its own, with its path in any error) and
merges the keys each layer set; the numeric modules only read the result.
Nothing here imports numeric code, so validating a config never loads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ModelOptions(BaseModel):
    """How a series is prepared and how its forecast is shaped; config key ``model``.

    ``outliers``: robust z-score (distance from a rolling median in rolling MADs)
    beyond which a point is clipped before fitting; ``none`` (None) fits the raw data.
    ``transform``: ``auto`` (log for positive heavy-tailed series), ``log`` or ``none``.
    ``trend``: how the fitted trend continues past the history: ``flat`` (held
    at its last value), ``damped`` (its slope fades over ``trend_damping`` of
    the history span), ``linear`` (Prophet's own) or ``auto`` (see ``model.trend.choose_trend``).
    ``band``: ``residual`` (empirical, cheap) or ``prophet`` (Prophet's simulated
    band, with ``prophet.uncertainty_samples`` draws).
    ``lower``/``upper``: clip bounds; ``None`` with ``bounds: auto`` detects them
    from the data (never negative → 0; percent/ratio by name and range).
    ``residual_correction``: carry the latest residual into the near future,
    a shift beyond any in the history whole, and let the recent level take
    over at lead times where it would have erred less than Prophet.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    outliers: float | None = 5.0
    transform: Literal["auto", "none", "log"] = "auto"
    trend: Literal["auto", "flat", "damped", "linear"] = "auto"
    trend_damping: float = Field(default=0.1, gt=0, le=1)
    band: Literal["residual", "prophet"] = "residual"
    bounds: Literal["auto", "none"] = "auto"
    lower: float | None = Field(default=None, allow_inf_nan=False)
    upper: float | None = Field(default=None, allow_inf_nan=False)
    residual_correction: bool = True

    @field_validator("outliers", mode="before")
    @classmethod
    def _outliers(cls, value: object) -> object:
        if value == "none":
            return None
        if isinstance(value, str):
            raise ValueError(f"{value!r} must be a positive robust z-score (5 is the default) or none")
        return value

    @field_validator("outliers")
    @classmethod
    def _positive_outliers(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError(f"{value!r} must be a positive robust z-score (5 is the default) or none")
        return value

    @model_validator(mode="after")
    def _ordered_bounds(self) -> ModelOptions:
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            raise ValueError(f"lower ({self.lower}) must be below upper ({self.upper})")
        return self


class ProphetOptions(BaseModel):
    """The Prophet constructor options a user may set (config key ``prophet``); anything else is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    growth: Literal["linear", "flat"] | None = None
    n_changepoints: int | None = Field(default=None, ge=0)
    changepoint_range: float | None = Field(default=None, gt=0, le=1)
    yearly_seasonality: bool | int | Literal["auto"] | None = None
    weekly_seasonality: bool | int | Literal["auto"] | None = None
    daily_seasonality: bool | int | Literal["auto"] | None = None
    seasonality_mode: Literal["additive", "multiplicative"] | None = None
    seasonality_prior_scale: float | None = Field(default=None, gt=0)
    changepoint_prior_scale: float | None = Field(default=None, gt=0)
    uncertainty_samples: int | None = Field(default=None, ge=0)
    scaling: Literal["absmax", "minmax"] | None = None

    def as_kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


@dataclass(frozen=True)
class FitSpec:
    """Everything a fit needs besides the data; built from a forecast by ``config.Forecast.fit_spec``.

    ``hint`` is the forecast's name and query, used only to recognise percent
    and ratio metrics when ``bounds`` is ``auto``.
    """

    step: float
    horizon: float
    interval_width: float
    min_points: int
    prophet: dict[str, Any] = field(default_factory=dict)
    model: ModelOptions = field(default_factory=ModelOptions)
    hint: str = ""
    # Known events as Prophet's holiday rows (name, ISO date, lower_window, upper_window), and a country whose
    # public holidays Prophet adds.
    events: tuple[tuple[str, str, int, int], ...] = ()
    holidays_country: str | None = None
