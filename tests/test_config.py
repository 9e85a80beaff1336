from __future__ import annotations

import pytest

from forecaster.config import parse, parse_listen
from forecaster.duration import Duration
from forecaster.errors import ConfigError


def _problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(data)
    return caught.value.problems


def _minimal(**top: object) -> dict[str, object]:
    return {"prometheus": {"url": "http://prom:9090"}, "forecasts": [{"name": "a", "query": "up"}], **top}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), ("1w", 604800), ("1h30m", 5400), ("250ms", 0.25)],
)
def test_durations_use_prometheus_syntax_and_keep_their_text(text, seconds):
    duration = Duration.parse(text)
    assert duration.seconds == seconds and duration.text == text


@pytest.mark.parametrize("text", ["1x", "", "5", "-1h", "1.5h", "h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="is not a duration"):
        Duration.parse(text)


def test_defaults_layer_under_each_forecast():
    config = parse(
        {
            "prometheus": {"url": "http://prom:9090/"},
            "defaults": {"history": "7d", "horizons": ["1h", "6h"], "prophet": {"changepoint_prior_scale": 0.1}},
            "forecasts": [
                {"name": "a", "query": "up"},
                {"name": "b", "query": "up", "history": "2d", "prophet": {"seasonality_mode": "multiplicative"}},
            ],
        }
    )
    a, b = config.forecasts
    assert config.prometheus.url == "http://prom:9090"
    assert (a.history.text, a.step.text, a.horizon.text, a.retrain_every.text) == ("7d", "5m", "1d", "1h")
    assert [h.text for h in a.horizons] == ["1h", "6h"]
    assert b.history.text == "2d"
    assert b.prophet["changepoint_prior_scale"] == 0.1 and b.prophet["seasonality_mode"] == "multiplicative"
    assert a.max_series == 1000 and a.interval_width == 0.8


def test_every_problem_is_reported_with_its_path():
    problems = _problems(
        {
            "prometheus": {"timeout": "soon"},
            "server": {"listen": "nowhere"},
            "forecasts": [
                {"name": "ok", "query": "up"},
                {"name": "9bad", "query": "up", "horizon": "1x", "colour": "red"},
            ],
        }
    )
    text = "\n".join(problems)
    assert "prometheus.url: required" in text
    assert "prometheus.timeout: 'soon' is not a duration" in text
    assert "server.listen: 'nowhere' is not HOST:PORT" in text
    assert "forecasts[1].name: '9bad' is not a valid name" in text
    assert "forecasts[1].horizon: '1x' is not a duration" in text
    assert "forecasts[1].colour: unknown key" in text


def test_horizons_must_fit_inside_the_horizon_and_be_distinct():
    data = _minimal()
    data["forecasts"] = [{"name": "a", "query": "up", "horizon": "2h", "horizons": ["1h", "60m", "3h", "0s"]}]
    text = "\n".join(_problems(data))
    assert "forecasts[0].horizons[2]: '3h' exceeds horizon '2h'" in text
    assert "forecasts[0].horizons[3]: '0s' must be longer than zero" in text
    assert "forecasts[0].horizons: entries must be distinct" in text


def test_forecast_names_are_unique():
    data = _minimal()
    data["forecasts"] = [{"name": "a", "query": "up"}, {"name": "a", "query": "down"}]
    assert any("used more than once" in p for p in _problems(data))


def test_prophet_options_are_validated():
    data = _minimal()
    data["forecasts"] = [{"name": "a", "query": "up", "prophet": {"growth": "logistic", "mcmc_samples": 100}}]
    text = "\n".join(_problems(data))
    assert "forecasts[0].prophet.growth" in text
    assert "forecasts[0].prophet.mcmc_samples: unknown key" in text


def test_executor_settings():
    config = parse(_minimal(workers=3, fit_timeout="90s", executor={"type": "dask", "address": "tcp://dask:8786"}))
    assert (config.workers, config.fit_timeout.seconds, config.executor.address) == (3, 90, "tcp://dask:8786")
    assert parse(_minimal()).executor.type == "local" and parse(_minimal()).workers is None
    assert "executor: type dask needs address" in "\n".join(_problems(_minimal(executor={"type": "dask"})))
    assert any(p.startswith("workers:") for p in _problems(_minimal(workers=-1)))


def test_events_and_holidays_become_prophet_holidays_and_every_mistake_is_named():
    config = parse(
        _minimal(
            defaults={"holidays": {"country": "US"}},
            forecasts=[
                {
                    "name": "checkout",
                    "query": "up",
                    "events": [
                        {"name": "black_friday", "dates": ["2025-11-28", "2026-11-27"], "before": "1d", "after": "2d"}
                    ],
                },
                {"name": "plain", "query": "up", "holidays": {"country": "DE"}},
            ],
        )
    )
    checkout, plain = config.forecasts
    assert checkout.fit_spec().events == (("black_friday", "2025-11-28", -1, 2), ("black_friday", "2026-11-27", -1, 2))
    assert (checkout.holidays_country, plain.holidays_country, plain.events) == ("US", "DE", ())
    bad = [
        {"name": "trend", "dates": ["2025-01-01"]},
        {"name": "empty", "dates": []},
        {"name": "month", "dates": ["2025-13-01"]},
        {"name": "hours", "dates": ["2025-01-01"], "before": "12h"},
    ]
    problems = _problems(_minimal(forecasts=[{"name": "a", "query": "up", "events": bad}]))
    assert problems == [
        "forecasts[0].events[0].name: 'trend' is a name Prophet uses for its own columns; choose another",
        "forecasts[0].events[1].dates: List should have at least 1 item after validation, not 0",
        "forecasts[0].events[2].dates[0]: Input should be a valid date or datetime, month value is outside expected "
        "range of 1-12",
        "forecasts[0].events[3].before: '12h' must be whole days, 0d to 31d, as Prophet counts",
    ]
    twice = [{"name": "x", "dates": ["2025-01-01"]}, {"name": "x", "dates": ["2025-01-02"]}]
    assert (
        "events: event names must be distinct; x is given twice"
        in _problems(_minimal(forecasts=[{"name": "a", "query": "up", "events": twice}]))[0]
    )
    assert _problems(_minimal(defaults={"holidays": {"country": "Narnia"}})) == [
        "defaults.holidays.country: 'Narnia' is not a country the holidays package knows; "
        "use an ISO 3166 code such as US, GB or DE"
    ]


def test_a_shard_gets_its_own_folder_of_state_dir_and_an_impossible_one_is_refused():
    config = parse(_minimal(state_dir="/var/lib/forecaster", shard={"index": 1, "count": 3}))
    assert (config.shard.index, config.shard.count) == (1, 3)
    assert str(config.replica_state_dir) == "/var/lib/forecaster/shard-1-of-3"
    assert str(parse(_minimal(state_dir="/var/lib/forecaster")).replica_state_dir) == "/var/lib/forecaster"
    assert "shard: index 3 must be below count 3 (indexes run 0 to count-1)" in _problems(
        _minimal(shard={"index": 3, "count": 3})
    )
    assert any(p.startswith("shard.count:") for p in _problems(_minimal(shard={"index": 0, "count": 0})))


@pytest.mark.parametrize(("text", "host", "port"), [("0.0.0.0:9095", "0.0.0.0", 9095), ("[::1]:80", "::1", 80)])
def test_listen_addresses(text, host, port):
    assert parse_listen(text) == (host, port)


CANNOT_RUN = {
    "invalid PromQL in query": (
        {"query": "sum(rate(x[5m])"},
        "forecasts[0].query: 'sum(rate(x[5m])' is not valid PromQL",
    ),
    "invalid PromQL in threshold_query": (
        {"breach": {"threshold_query": "up{", "direction": "above"}},
        "forecasts[0].breach.threshold_query: 'up{' is not valid PromQL",
    ),
    "retrain_every 1ms": ({"retrain_every": "1ms"}, "forecasts[0].retrain_every: '1ms' is shorter than"),
    "step 1ms": ({"step": "1ms"}, "forecasts[0].step: '1ms' is shorter than"),
    "history 1000y": ({"history": "1000y"}, "forecasts[0].history: '1000y' at step '5m' is more than 250,000 points"),
    "history of 23 nines": ({"history": "9" * 23 + "d"}, "forecasts[0].history: "),
    "horizon 10y": ({"horizon": "10y"}, "forecasts[0].horizon: '10y' at step '5m' is more than 20,000 points"),
    "model.upper -inf": ({"model": {"upper": float("-inf")}}, "forecasts[0].model.upper: "),
    "model.lower nan": ({"model": {"lower": float("nan")}}, "forecasts[0].model.lower: "),
}


@pytest.mark.parametrize(("entry", "expected"), CANNOT_RUN.values(), ids=CANNOT_RUN.keys())
def test_settings_that_cannot_run_are_refused_with_their_path(entry, expected):
    problems = _problems(
        {"prometheus": {"url": "http://prom:9090"}, "forecasts": [{"name": "a", "query": "up", **entry}]}
    )
    assert any(problem.startswith(expected) for problem in problems), problems


def test_a_fit_timeout_of_zero_is_refused():
    assert any(p.startswith("fit_timeout: '0s' is shorter than") for p in _problems(_minimal(fit_timeout="0s")))


def test_promql_that_parses_is_accepted():
    queries = [
        'sum by (job) (rate(http_requests_total{job=~"api|web"}[5m]))',
        'node_filesystem_avail_bytes{fstype!~"tmpfs|overlay"}',
        "last_over_time(x[30m])",
        '{__name__=~"up|scrape_samples_scraped"}',
    ]
    parse(
        {
            "prometheus": {"url": "http://p:9090"},
            "forecasts": [{"name": f"q{i}", "query": q} for i, q in enumerate(queries)],
        }
    )


def test_a_duplicate_key_is_refused_with_its_line(tmp_path):
    from forecaster.config import load

    path = tmp_path / "dup.yml"
    path.write_text("prometheus: {url: http://p:9090}\nforecasts:\n  - name: a\n    query: up\n    query: down\n")
    with pytest.raises(ConfigError, match=r"key 'query' is given twice \(line 5\)"):
        load(path)
