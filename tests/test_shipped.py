"""What ships besides the package: prometheus.yml and its rules, Grafana provisioning and dashboards, the compose stack.

The rules and config are checked with promtool itself, the compose file with
docker-compose; the live counterpart is tests/integration/test_alerting.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devtools.local_prometheus import find_binary, free_port
from forecaster import config as config_module
from forecaster.config import parse_listen
from forecaster.recording_rules import RECORD, render
from tests.helpers import REPO, wait_for
from tests.shipped import (
    BUILTINS,
    FORECASTER,
    PROMETHEUS,
    SHIPPED_ALERTS,
    dashboard_expressions,
    dashboard_panels,
    dashboards,
    datasources,
    rule_expressions,
    rule_files,
    variables_used,
)

COMPOSE_FORECASTER = "examples/compose-forecaster.yml"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


# --- Prometheus config and rules --------------------------------------------------------------


def test_prometheus_yml_and_its_rule_files_pass_promtool() -> None:
    result = _run(find_binary("promtool"), "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    for path in rule_files():
        assert f"Checking rules/{path.name}" in result.stdout, result.stdout
    rules = _run(find_binary("promtool"), "check", "rules", *(str(p.relative_to(REPO)) for p in rule_files()))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_prometheus_yml_scrapes_the_whole_stack_and_honors_forecast_labels() -> None:
    config = yaml.safe_load((REPO / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "forecaster", "node", "sample-app", "alertmanager"}
    assert jobs["forecaster"]["honor_labels"] is True
    assert config["rule_files"] == ["rules/*.yml"]


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    tests = sorted((REPO / "tests" / "promtool").glob("*_test.yml"))
    assert tests
    result = _run(find_binary("promtool"), "test", "rules", *(str(t.relative_to(REPO)) for t in tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_for_severity_and_annotations_naming_series_and_time() -> None:
    alerts = [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert {a["alert"] for a in alerts} >= SHIPPED_ALERTS
    for alert in alerts:
        assert re.fullmatch(r"\d+[smhd]", alert["for"]), alert["alert"]
        assert alert["labels"]["severity"] in ("info", "warning", "critical"), alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], alert["alert"]
        if alert["alert"].startswith("ForecastBreach"):
            assert "humanizeDuration" in alert["annotations"]["summary"]
            assert "humanizeTimestamp" in alert["annotations"]["description"]


def test_shipped_recording_rules_are_generated_from_the_compose_config() -> None:
    config = config_module.load(REPO / COMPOSE_FORECASTER)
    assert (REPO / "rules" / "forecast-actuals.yml").read_text() == render(config, COMPOSE_FORECASTER)
    rules = yaml.safe_load((REPO / "rules" / "forecast-actuals.yml").read_text())["groups"][0]["rules"]
    assert [(r["record"], r["labels"]["forecast"], r["expr"]) for r in rules] == [
        (RECORD, f.name, f.query) for f in config.forecasts
    ]


def test_compose_forecaster_config_is_valid_and_predicts_breaches() -> None:
    config = config_module.load(REPO / COMPOSE_FORECASTER)
    by_name = {f.name: f for f in config.forecasts}
    assert by_name["sample_app_requests"].breach is not None
    filesystem = by_name["filesystem_free"].breach
    assert filesystem is not None and filesystem.threshold_query and filesystem.direction == "below"


# --- Grafana ----------------------------------------------------------------------------------


def test_grafana_provisioning_points_at_the_dashboards_and_the_datasources_they_use() -> None:
    sources = datasources()
    assert set(sources) == {PROMETHEUS, FORECASTER}
    assert sources[PROMETHEUS]["type"] == "prometheus" and sources[PROMETHEUS]["url"] == "http://prometheus:9090"
    assert sources[PROMETHEUS]["isDefault"] is True
    # The forecaster's query API speaks Prometheus' HTTP API on the port it serves /metrics on.
    config = config_module.load(REPO / COMPOSE_FORECASTER)
    assert sources[FORECASTER]["type"] == "prometheus"
    assert sources[FORECASTER]["url"] == f"http://forecaster:{parse_listen(config.server.listen)[1]}"
    providers = yaml.safe_load((REPO / "grafana/provisioning/dashboards/forecaster.yml").read_text())["providers"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{providers[0]['options']['path']}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    assert dashboards()
    for path, dashboard in dashboards():
        for panel in dashboard_panels(dashboard):
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] in sources, (path.name, panel["title"])
        for variable in dashboard["templating"]["list"]:
            assert variable["datasource"]["uid"] in sources, (path.name, variable["name"])


def _dashboard(name: str) -> dict[str, Any]:
    return next(dashboard for path, dashboard in dashboards() if path.name == name)


def test_dashboards_use_only_defined_variables() -> None:
    for path, dashboard in dashboards():
        names = {v["name"] for v in dashboard["templating"]["list"]}
        for expression in dashboard_expressions():
            if expression.where.startswith(path.name):
                assert variables_used(expression.expr) <= names | set(BUILTINS), expression


def _fill_below(panel: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (o["matcher"]["options"], prop["value"])
        for o in panel["fieldConfig"]["overrides"]
        for prop in o["properties"]
        if prop["id"] == "custom.fillBelowTo"
    ]


def test_dashboard_shades_the_band() -> None:
    dashboard = _dashboard("forecaster.json")
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"forecast", "series"} <= names
    band = next(p for p in dashboard_panels(dashboard) if "band" in p["title"])
    legends = {t["legendFormat"]: t["expr"] for t in band["targets"]}
    assert set(legends) == {"actual", "yhat", "yhat_lower", "yhat_upper"}
    assert legends["actual"].startswith(RECORD)
    assert _fill_below(band) == [("yhat_upper", "yhat_lower")]
    kinds = {p["type"] for p in dashboard_panels(dashboard)}
    assert {"timeseries", "table", "stat"} <= kinds
    assert any("forecast_breach_seconds" in e.expr for e in dashboard_expressions())
    assert any('horizon!="0s"' in e.expr for e in dashboard_expressions())
    assert any("forecaster_last_success_timestamp_seconds" in e.expr for e in dashboard_expressions())


def test_capacity_outlook_draws_the_real_series_and_the_forecast_curve_on_the_same_axes() -> None:
    dashboard = _dashboard("capacity-outlook.json")
    assert dashboard["title"] == "Capacity outlook"
    assert dashboard["time"] == {"from": "now-7d", "to": "now+7d"}
    panels = [p for p in dashboard_panels(dashboard) if p["type"] == "timeseries"]
    assert panels
    for panel in panels:
        by_legend = {t["legendFormat"]: t for t in panel["targets"]}
        assert set(by_legend) == {"actual", "yhat", "yhat_lower", "yhat_upper"}, panel["title"]
        assert by_legend["actual"]["datasource"]["uid"] == PROMETHEUS and RECORD in by_legend["actual"]["expr"]
        for edge in ("yhat", "yhat_lower", "yhat_upper"):
            assert by_legend[edge]["datasource"]["uid"] == FORECASTER, (panel["title"], edge)
            assert f"forecast_{edge}{{" in by_legend[edge]["expr"] and "horizon" not in by_legend[edge]["expr"]
        assert panel["datasource"]["uid"] == "-- Mixed --"  # one panel, two data sources, the same axes
        assert _fill_below(panel) == [("yhat_upper", "yhat_lower")]


def test_there_is_promql_to_prove_live() -> None:
    # The live test (tests/integration/test_alerting.py) runs each of these; make sure it has them all.
    assert len(dashboard_expressions()) >= 10
    assert sum(e.datasource == FORECASTER for e in dashboard_expressions()) >= 6
    assert len(rule_expressions()) >= 8


# --- the compose stack ------------------------------------------------------------------------


def test_docker_compose_file_is_valid() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose; make test does as root)")
    result = _run(find_binary("docker-compose"), "-f", "docker-compose.yml", "config", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert set(compose["services"]) == {
        "prometheus",
        "alertmanager",
        "grafana",
        "forecaster",
        "node-exporter",
        "sample-app",
    }
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), volume


def test_dockerfile_installs_with_the_pinned_constraints() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM python:3.11-slim" in dockerfile
    assert "pip install -c constraints.txt ." in dockerfile


def test_alertmanager_config_passes_amtool() -> None:
    amtool = _run(find_binary("amtool"), "check-config", "alertmanager/alertmanager.yml")
    assert amtool.returncode == 0, amtool.stdout + amtool.stderr


def test_sample_app_serves_its_three_instruments_and_drives_its_own_traffic(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "sample_app.log").open("wb")
    app = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "sample_app.py"), "--listen", f"127.0.0.1:{port}", "--rate", "50"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def served() -> str | None:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            return text if 'sample_app_requests_total{code="200",path="/work"}' in text else None

        text = wait_for(served, 20, "the sample app to serve its own traffic")
        assert "sample_app_requests_in_progress " in text
        assert 'sample_app_request_duration_seconds_bucket{le="0.005",path="/work"}' in text
        first = _count(text)
        time.sleep(1)
        assert _count(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text) > first
    finally:
        app.terminate()
        app.wait(10)
        log.close()


def _count(text: str) -> float:
    match = re.search(r'^sample_app_requests_total\{code="200",path="/work"\} (\S+)$', text, re.M)
    assert match, text
    return float(match.group(1))


@pytest.mark.parametrize("path", ["prometheus.yml", "docker-compose.yml", COMPOSE_FORECASTER])
def test_shipped_yaml_starts_with_a_comment_saying_what_it_is(path: str) -> None:
    assert (REPO / path).read_text().startswith("# ")
