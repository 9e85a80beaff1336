"""The PromQL the repository ships: every expression of every Grafana dashboard and every rule file.

Used by the static checks (tests/test_shipped.py) and by the live test that
runs each expression against the data source it names: a real Prometheus fed
by the service, or the service's own query API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import REPO

DASHBOARDS = REPO / "grafana" / "dashboards"
DATASOURCES = REPO / "grafana" / "provisioning" / "datasources"
PROMETHEUS = "prometheus"  # the data sources' uids
FORECASTER = "forecaster"
RULES = REPO / "rules"
# Grafana's own variables, and the values a test run gives them (Prometheus scrapes every second there).
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


@dataclass(frozen=True)
class Expression:
    where: str  # file and panel or rule, for the failure message
    expr: str
    datasource: str = PROMETHEUS  # the uid of the data source that runs it; rules run in Prometheus


Query = Callable[[str], list[dict[str, Any]]]  # an instant query's result


def datasources() -> dict[str, dict[str, Any]]:
    """Every provisioned Grafana data source, by uid."""
    return {
        source["uid"]: source
        for path in sorted(DATASOURCES.glob("*.yml"))
        for source in yaml.safe_load(path.read_text())["datasources"]
    }


def dashboards() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, json.loads(path.read_text())) for path in sorted(DASHBOARDS.glob("*.json"))]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list(_panels(dashboard.get("panels", [])))


def dashboard_expressions() -> list[Expression]:
    out = []
    for path, dashboard in dashboards():
        for panel in dashboard_panels(dashboard):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    where = f"{path.name}: panel {panel['title']!r} {target['refId']}"
                    source = (target.get("datasource") or panel.get("datasource") or {}).get("uid", PROMETHEUS)
                    out.append(Expression(where, target["expr"], source))
    return out


def rule_files() -> list[Path]:
    return sorted(RULES.glob("*.yml"))


def rule_expressions() -> list[Expression]:
    out = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                out.append(Expression(f"{path.name}: {group['name']}/{name}", rule["expr"]))
    return out


def variables_used(expr: str) -> set[str]:
    return {a or b for a, b in _VARIABLE.findall(expr)}


def fill(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana variables the way Grafana does for single-value variables: the raw text."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(one, expr)


def resolve_variables(dashboard: dict[str, Any], queries: dict[str, Query]) -> dict[str, str]:
    """Each template variable's first value, computed like Grafana's Prometheus datasource does.

    ``queries`` runs an instant query in the data source of each uid; a
    variable asks the one it names.

    ``label_values(expr, label)`` takes the label's values among ``expr``'s
    series; ``query_result(expr)`` renders each series as Grafana does
    (``name{a="x",b="y"} value timestamp``) and the variable's regex picks the text.
    Variables resolve in order, so a later one may use an earlier one.
    """
    values = dict(BUILTINS)
    for variable in dashboard["templating"]["list"]:
        definition = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        definition = fill(definition, values)
        query = queries[variable.get("datasource", {}).get("uid", PROMETHEUS)]
        label_values = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", definition)
        query_result = re.fullmatch(r"query_result\((.+)\)", definition)
        if label_values:
            options = sorted(
                {r["metric"][label_values[2]] for r in query(label_values[1]) if label_values[2] in r["metric"]}
            )
        elif query_result:
            options = sorted(_grafana_text(r) for r in query(query_result[1]))
        else:
            raise AssertionError(f"variable {variable['name']}: unsupported query {definition!r}")
        if variable.get("regex"):
            pattern = re.compile(variable["regex"].strip("/"))
            options = sorted({m.group(1) for m in map(pattern.search, options) if m})
        if not options:
            raise AssertionError(f"variable {variable['name']}: {definition!r} has no values")
        values[variable["name"]] = options[0]
    return values


def _grafana_text(result: dict[str, Any]) -> str:
    labels = {k: v for k, v in result["metric"].items() if k != "__name__"}
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{result['metric'].get('__name__', '')}{{{inner}}} {result['value'][1]} {result['value'][0]}"


# Every alert the shipped rule files define; tests check each exists and fires.
SHIPPED_ALERTS = frozenset(
    {
        "ForecastBreachSoon",
        "ForecastBreachImminent",
        "ForecastOutsideBand",
        "ForecasterDown",
        "ForecasterNoRecentFit",
        "ForecasterErrors",
    }
)
