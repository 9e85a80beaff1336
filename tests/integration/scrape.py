"""Reading the service's own /metrics the way Prometheus would."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Service

Sample = tuple[str, dict[str, str], float]


def scrape(service: Service) -> list[Sample]:
    """Every sample on /metrics; an empty list when the service does not answer 200."""
    response = service.get("/metrics")
    if response.status_code != 200:
        return []
    # Prometheus stores no empty label: job="" and instance="" on a series without them only keep the target's out.
    return [
        (sample.name, {k: v for k, v in sample.labels.items() if v}, float(sample.value))
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The value of the one sample of ``name`` whose labels include ``labels``; None when absent."""
    for sample_name, sample_labels, sample_value in samples:
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()):
            return sample_value
    return None


def served(samples: list[Sample], forecast: str, horizon: str = "0s") -> dict[tuple[tuple[str, str], ...], float]:
    """forecast_yhat per series (its own labels) for one forecast and horizon."""
    out = {}
    for name, labels, sample_value in samples:
        if name == "forecast_yhat" and labels.get("forecast") == forecast and labels.get("horizon") == horizon:
            own = tuple(sorted((k, v) for k, v in labels.items() if k not in ("forecast", "horizon")))
            out[own] = sample_value
    return out
