"""Faults at the boundary with Prometheus: every malformed answer is a query error, never a traceback."""

from __future__ import annotations

import json
import logging
import threading

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from forecaster import answers
from forecaster import config as config_module
from forecaster.errors import ForecasterError, QueryError
from forecaster.exporter import Board, SelfMetrics
from forecaster.prometheus import PrometheusSource, _load_secret
from forecaster.series import format_labels
from forecaster.state import StateStore
from forecaster.trainer import Trainer

GOOD_SAMPLE = [1_700_000_000, "1.5"]

MALFORMED_RANGES = {
    "data is a list": [],
    "data is null": None,
    "data is a string": "matrix",
    "no resultType": {"result": []},
    "a vector": {"resultType": "vector", "result": []},
    "result is null": {"resultType": "matrix", "result": None},
    "result is an object": {"resultType": "matrix", "result": {}},
    "an item is a list": {"resultType": "matrix", "result": [[]]},
    "metric is null": {"resultType": "matrix", "result": [{"metric": None, "values": [GOOD_SAMPLE]}]},
    "a label value is a number": {"resultType": "matrix", "result": [{"metric": {"a": 1}, "values": [GOOD_SAMPLE]}]},
    "values is null": {"resultType": "matrix", "result": [{"metric": {}, "values": None}]},
    "values missing": {"resultType": "matrix", "result": [{"metric": {}}]},
    "a sample is a string": {"resultType": "matrix", "result": [{"metric": {}, "values": ["x"]}]},
    "a sample has one element": {"resultType": "matrix", "result": [{"metric": {}, "values": [[1]]}]},
    "a value is not a number": {"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "abc"]]}]},
    "a value is a bare number": {"resultType": "matrix", "result": [{"metric": {}, "values": [[1, 2.5]]}]},
    "a time is a string": {"resultType": "matrix", "result": [{"metric": {}, "values": [["1", "2"]]}]},
    "a time is infinite": {"resultType": "matrix", "result": [{"metric": {}, "values": [[1e400, "2"]]}]},
    # Series are checked in bulk first: one bad sample among many must still be found and named.
    "a bare number among strings": {
        "resultType": "matrix",
        "result": [{"metric": {}, "values": [[t, "1"] for t in range(500)] + [[500, 2.5]] + [[501, "1"]]}],
    },
    "a time that is a boolean": {"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "1"], [True, "2"]]}]},
    "a word among numbers": {"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "1"], [2, "many"]]}]},
}

MALFORMED_INSTANTS = {
    "data is a list": [],
    "a matrix": {"resultType": "matrix", "result": []},
    "value is not a number": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "abc"]}]},
    "value missing": {"resultType": "vector", "result": [{"metric": {}}]},
    "value too short": {"resultType": "vector", "result": [{"metric": {}, "value": [1]}]},
    "metric is null": {"resultType": "vector", "result": [{"metric": None, "value": GOOD_SAMPLE}]},
}


@pytest.mark.parametrize("data", MALFORMED_RANGES.values(), ids=MALFORMED_RANGES.keys())
def test_a_malformed_range_answer_says_what_was_wrong(data):
    with pytest.raises(ValueError, match=r"\w"):
        answers.matrix(data)


def test_the_sample_that_is_wrong_is_named_however_long_the_series():
    with pytest.raises(ValueError, match=r"the number 2\.5, not a number in a string"):
        answers.matrix(MALFORMED_RANGES["a bare number among strings"])
    with pytest.raises(ValueError, match=r"'many', not a number"):
        answers.matrix(MALFORMED_RANGES["a word among numbers"])


@pytest.mark.parametrize("data", MALFORMED_INSTANTS.values(), ids=MALFORMED_INSTANTS.keys())
def test_a_malformed_instant_answer_says_what_was_wrong(data):
    with pytest.raises(ValueError, match=r"\w"):
        answers.vector(data)


def test_well_formed_answers_decode_with_nan_and_inf_spelled_out():
    data = {"resultType": "matrix", "result": [{"metric": {"job": "a"}, "values": [[1, "NaN"], [2, "+Inf"]]}]}
    (series,) = answers.matrix(data)
    assert series.labels == {"job": "a"} and series.timestamps.tolist() == [1.0, 2.0]
    assert answers.vector({"resultType": "vector", "result": [{"metric": {"__name__": "x"}, "value": [1, "3"]}]}) == [
        ({}, 3.0)
    ]


def _body(data: object) -> httpx.Response:
    # Written out by hand: httpx's json= refuses the infinite time of one case.
    return httpx.Response(200, content=json.dumps({"status": "success", "data": data}).encode())


def _source(handler) -> PrometheusSource:
    client = httpx.Client(base_url="http://prom.test", transport=httpx.MockTransport(handler))
    return PrometheusSource(client, retries=0, sleep=lambda _: None)


@pytest.mark.parametrize("data", MALFORMED_RANGES.values(), ids=MALFORMED_RANGES.keys())
def test_the_source_turns_a_malformed_range_answer_into_a_query_error_naming_forecast_and_query(data):
    source = _source(lambda request: _body(data))
    with pytest.raises(QueryError, match=r"forecast 'f': query 'up': malformed answer to a range query: "):
        source.query_range("up", 0, 600, 60, forecast="f")


@pytest.mark.parametrize("data", MALFORMED_RANGES.values(), ids=MALFORMED_RANGES.keys())
def test_a_malformed_compact_range_answer_is_the_same_query_error(data):
    # Written as Prometheus writes it, so that each series' samples are cut out and decoded in bulk.
    compact = json.dumps({"status": "success", "data": data}, separators=(",", ":")).encode()
    source = _source(lambda request: httpx.Response(200, content=compact))
    with pytest.raises(QueryError, match=r"forecast 'f': query 'up': malformed answer to a range query: "):
        source.query_range("up", 0, 600, 60, forecast="f")


whole_samples = answers._samples


def _decoded(series: list) -> list:
    return [(s.labels, s.timestamps.tolist(), [repr(v) for v in s.values]) for s in series]


def test_samples_cut_from_a_compact_answer_decode_as_the_whole_answer_does(monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(3)
    texts = [repr(float(v)) for v in rng.standard_cauchy(300) * 10.0 ** rng.integers(-300, 300, 300)]
    texts += ["3", "0.1", "1e+21", "-2.5e-07", "5e-324", "1.7976931348623157e+308", "9007199254740993"]
    result = [
        {
            "metric": {"job": "a", "instance": str(i)},
            "values": [[1_700_000_000.125 + 15 * j, t] for j, t in enumerate(texts)],
        }
        for i in range(3)
    ]
    result.append({"metric": {"job": "b"}, "values": [[1, "NaN"], [2, "+Inf"], [3, "-Inf"], [4, "2"]]})
    result.append({"metric": {"job": "d"}, "values": [[1, "-0"], [2, "0"]]})
    # A label may spell out what the cut looks for; escaped inside a string, it is never cut.
    result.append({"metric": {"job": '"values":[[1,"2"]]'}, "values": [[5, "7"]]})
    result.append({"metric": {"job": "c"}, "values": []})
    text = json.dumps({"resultType": "matrix", "result": result}, separators=(",", ":")).encode()
    skeleton, cut = answers.cut_samples(text)
    assert len(cut) == len(result)
    assert all(item["values"] == [] for item in json.loads(skeleton)["result"])
    whole = _decoded(answers.matrix(json.loads(text)))
    one_by_one = []
    monkeypatch.setattr(answers, "_samples", lambda values: one_by_one.append(values) or whole_samples(values))
    assert _decoded(answers.matrix(json.loads(skeleton), cut)) == whole
    # Only the series with NaN, ±Inf and -0 were read sample by sample.
    assert [len(values) for values in one_by_one] == [4, 2]


@pytest.mark.parametrize(
    "values",
    ['[1,"true"]', '[1,"2"],["3",4]', '[1,"2","3"]', "[1,2]", '[1,"2"],[3]'],
    ids=["a word", "a time in quotes", "a triple", "a bare value", "a lone time"],
)
def test_a_cut_sample_that_is_not_a_number_and_a_quoted_number_is_named(values):
    text = ('{"resultType":"matrix","result":[{"metric":{},"values":[' + values + "]}]}").encode()
    skeleton, cut = answers.cut_samples(text)
    with pytest.raises(ValueError, match=r'result\[0\]\.values holds a sample that is not \[time, "number"\]'):
        answers.matrix(json.loads(skeleton), cut)


@pytest.mark.parametrize("data", MALFORMED_INSTANTS.values(), ids=MALFORMED_INSTANTS.keys())
def test_the_source_turns_a_malformed_instant_answer_into_a_query_error(data):
    with pytest.raises(QueryError, match="malformed answer to an instant query"):
        _source(lambda request: _body(data)).query("up", 0, forecast="f")


@pytest.mark.parametrize("envelope", [[], "ok", {"status": "error", "errorType": 7, "error": None}, {"status": 1}])
def test_a_malformed_envelope_is_a_query_error(envelope):
    source = _source(lambda request: httpx.Response(200, json=envelope))
    with pytest.raises(QueryError):
        source.query_range("up", 0, 600, 60, forecast="f")


def test_odd_warnings_are_not_a_crash():
    body = {"status": "success", "warnings": 5, "data": {"resultType": "matrix", "result": []}}
    assert _source(lambda request: httpx.Response(200, json=body)).query_range("up", 0, 600, 60, forecast="f") == []


def test_series_differing_only_in_their_name_stay_two_series():
    def handler(request: httpx.Request) -> httpx.Response:
        result = [
            {"metric": {"__name__": name, "job": "a"}, "values": [[60 * i, str(i)] for i in range(5)]}
            for name in ("up", "scrape_samples_scraped")
        ]
        return _body({"resultType": "matrix", "result": result})

    pulled = _source(handler).query_range('{__name__=~"up|scrape_samples_scraped"}', 0, 240, 60, forecast="f")
    assert sorted(s.labels[answers.NAME_LABEL] for s in pulled) == ["scrape_samples_scraped", "up"]
    assert all(s.labels["job"] == "a" and "__name__" not in s.labels for s in pulled)


def test_one_metric_keeps_the_labels_it_always_had():
    def handler(request: httpx.Request) -> httpx.Response:
        return _body(
            {"resultType": "matrix", "result": [{"metric": {"__name__": "up", "job": "a"}, "values": [[0, "1"]]}]}
        )

    assert [s.labels for s in _source(handler).query_range("up", 0, 0, 60, forecast="f")] == [{"job": "a"}]


def test_a_retrain_on_a_malformed_answer_counts_a_query_error_and_keeps_going(tmp_path, caplog):
    cfg = config_module.parse(
        {
            "prometheus": {"url": "http://prom.test"},
            "state_dir": str(tmp_path),
            "defaults": {"history": "1h", "step": "1m", "horizon": "1h", "horizons": []},
            "forecasts": [{"name": "f", "query": "up"}],
        }
    )
    registry = CollectorRegistry()
    trainer = Trainer(
        _source(lambda request: _body([])),
        StateStore(tmp_path),
        Board(cfg.forecasts),
        SelfMetrics(registry, cfg.forecasts),
        stop=threading.Event(),
    )
    with caplog.at_level(logging.ERROR):
        assert trainer.run(cfg.forecasts[0]) is None
    assert registry.get_sample_value("forecaster_errors_total", {"forecast": "f", "stage": "query"}) == 1.0
    assert "data is a list" in caplog.text and "Traceback" not in caplog.text


def test_a_label_value_with_a_newline_cannot_forge_a_log_line():
    assert "\n" not in format_labels({"job": 'a"\nERROR forged'})


def test_a_secret_file_with_a_second_line_is_refused_without_quoting_it(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cr3t-line-one\ns3cr3t-line-two\n")
    with pytest.raises(ForecasterError) as raised:
        _load_secret(token, "bearer_token_file")
    assert str(token) in str(raised.value) and "s3cr3t" not in str(raised.value)


def test_a_header_value_that_cannot_be_sent_is_a_config_error_without_the_value():
    with pytest.raises(config_module.ConfigError) as raised:
        config_module.parse(
            {
                "prometheus": {"url": "http://p:9090", "headers": {"X-Scope-OrgID": "tenant\nsecret", "Tök": "a"}},
                "forecasts": [{"name": "f", "query": "up"}],
            }
        )
    text = "\n".join(raised.value.problems)
    assert "prometheus.headers" in text and "X-Scope-OrgID" in text and "secret" not in text
    assert "'Tök' is not an HTTP header name" in text


def test_a_tls_failure_says_so_and_is_not_retried():
    import ssl

    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed: unable to get local issuer certificate")
        except ssl.SSLError as exc:
            raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed") from exc

    client = httpx.Client(base_url="https://prom.test", transport=httpx.MockTransport(handler))
    source = PrometheusSource(client, retries=3, sleep=lambda _: None)
    with pytest.raises(QueryError, match="the TLS handshake with Prometheus failed") as raised:
        source.query_range("up", 0, 600, 60, forecast="f")
    assert len(calls) == 1 and "is Prometheus up" not in str(raised.value)


def test_an_error_text_with_line_breaks_cannot_forge_a_log_line():
    body = {"status": "error", "errorType": "execution", "error": "boom\nERROR forecaster: forged"}
    with pytest.raises(QueryError) as raised:
        _source(lambda request: httpx.Response(422, json=body)).query_range("up", 0, 600, 60, forecast="f")
    assert "\n" not in str(raised.value) and "boom\\nERROR" in str(raised.value)
