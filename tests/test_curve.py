"""PromQL over the forecast curves: each construct on a board with known frames, and what is refused."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from forecaster.curve import (
    MAX_OPERATORS,
    Vector,
    evaluate,
    parse,
    selector_matches,
    served_curves,
)
from forecaster.errors import RefusedQuery
from forecaster.exporter import Board
from forecaster.state import ForecastState, SeriesState
from tests.curve_board import POINTS, STEP, T0, board, frame, make_board

AT = T0 + 2 * STEP  # http/api yhat 12, http/web 102, disk 1002


def run(query: str, times: list[float] | None = None) -> Vector | np.ndarray:
    return evaluate(parse(query), served_curves(board().snapshot()), np.array(times or [AT]))


def at(query: str) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant vector as {sorted labels: value}."""
    result = run(query)
    assert isinstance(result, Vector)
    return {
        tuple(sorted(labels.items())): float(value)
        for labels, value, present in zip(result.labels, result.values[:, 0], result.present[:, 0], strict=True)
        if present
    }


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


YHAT = "forecast_yhat"


# --- the served series ------------------------------------------------------------------------


def test_served_series_carry_forecast_and_own_labels_without_horizon_or_empty_labels() -> None:
    assert at("forecast_yhat") == {
        key(__name__=YHAT, forecast="http", job="api", instance="a-1"): 12.0,
        key(__name__=YHAT, forecast="http", job="web"): 102.0,
        key(__name__=YHAT, forecast="disk", instance="db-1"): 1002.0,
    }
    assert at('forecast_yhat_lower{forecast="disk"}') == {
        key(__name__="forecast_yhat_lower", forecast="disk", instance="db-1"): 1001.0
    }


def test_the_curve_interpolates_inside_the_frame_and_is_absent_outside_it() -> None:
    times = [T0 - 1, T0, T0 + STEP / 2, T0 + (POINTS - 1) * STEP, T0 + (POINTS - 1) * STEP + 1]
    result = run('forecast_yhat{job="api"}', times)
    assert isinstance(result, Vector)
    assert result.present.tolist() == [[False, True, True, True, False]]
    assert result.values[0, 1:4].tolist() == [10.0, 10.5, 10.0 + POINTS - 1]


def test_an_empty_board_serves_nothing_but_scalars_still_evaluate() -> None:
    empty = Board([])
    result = evaluate(parse("sum(forecast_yhat)"), served_curves(empty.snapshot()), np.array([AT]))
    assert isinstance(result, Vector) and result.labels == []
    scalar = evaluate(parse("1+1"), [], np.array([AT, AT + 1]))
    assert not isinstance(scalar, Vector) and scalar.tolist() == [2.0, 2.0]


# --- selectors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "jobs"),
    [
        ('forecast_yhat{job="api"}', {"api"}),
        ('forecast_yhat{job!="api"}', {"web", ""}),
        ('forecast_yhat{job=~"a.*|w.b"}', {"api", "web"}),
        ('forecast_yhat{job=~"pi"}', set()),  # anchored: "pi" does not match "api"
        ('forecast_yhat{job!~"a.*"}', {"web", ""}),
        ('forecast_yhat{job=""}', {""}),  # the disk series has no job (its empty one is dropped)
        ('forecast_yhat{job=~"(?i)API"}', {"api"}),
        ('{__name__=~"forecast_yhat", forecast="http"}', {"api", "web"}),
    ],
)
def test_selectors_with_all_four_matchers(selector: str, jobs: set[str]) -> None:
    assert {dict(k).get("job", "") for k in at(selector)} == jobs


def test_match_selectors_for_the_series_endpoint() -> None:
    curves = served_curves(board().snapshot())
    assert len(selector_matches('{forecast="http"}', curves)) == 6
    with pytest.raises(RefusedQuery, match="not a series selector"):
        selector_matches("sum(forecast_yhat)", curves)


# --- aggregation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("sum by (forecast) (forecast_yhat)", {key(forecast="http"): 114.0, key(forecast="disk"): 1002.0}),
        ("sum(forecast_yhat)", {key(): 1116.0}),
        ("max without (job, instance) (forecast_yhat)", {key(forecast="http"): 102.0, key(forecast="disk"): 1002.0}),
        ('min by (forecast) (forecast_yhat{forecast="http"})', {key(forecast="http"): 12.0}),
        ('avg(forecast_yhat{forecast="http"})', {key(): 57.0}),
        (
            "count without (job) (forecast_yhat)",
            {
                key(forecast="http", instance="a-1"): 1.0,
                key(forecast="http"): 1.0,
                key(forecast="disk", instance="db-1"): 1.0,
            },
        ),
        (
            'sum by (__name__) ({forecast="disk"})',
            {
                key(__name__=YHAT): 1002.0,
                key(__name__="forecast_yhat_lower"): 1001.0,
                key(__name__="forecast_yhat_upper"): 1003.0,
            },
        ),
    ],
)
def test_aggregations_by_and_without(query: str, expected: dict[tuple[tuple[str, str], ...], float]) -> None:
    assert at(query) == pytest.approx(expected)


def test_min_and_max_skip_nan_like_prometheus() -> None:
    assert at('max(forecast_yhat{forecast="http"} * (forecast_yhat{forecast="http"} > bool 50) / 0)') == {
        key(): math.inf
    }


# --- arithmetic and comparison ----------------------------------------------------------------


def test_one_plus_one_is_a_scalar() -> None:
    result = run("1+1")
    assert not isinstance(result, Vector) and result.tolist() == [2.0]


@pytest.mark.parametrize(
    ("query", "value"),
    [
        ("2*3-1", 5.0),
        ("7 % 4", 3.0),
        ("-7 % 4", -3.0),
        ("2^10", 1024.0),
        ("1/0", math.inf),
        ("-(3)", -3.0),
        ("(1 > bool 2) + (2 >= bool 2)", 1.0),
    ],
)
def test_scalar_arithmetic(query: str, value: float) -> None:
    result = run(query)
    assert not isinstance(result, Vector) and result.tolist() == [value]


def test_vector_scalar_arithmetic_drops_the_name_and_comparisons_filter_or_return_bool() -> None:
    assert at('forecast_yhat{job="web"} * 2') == {key(forecast="http", job="web"): 204.0}
    assert at('10 - forecast_yhat{job="web"}') == {key(forecast="http", job="web"): -92.0}
    assert at('-forecast_yhat{job="web"}') == {key(forecast="http", job="web"): -102.0}
    assert at('forecast_yhat{forecast="http"} > 50') == {key(__name__=YHAT, forecast="http", job="web"): 102.0}
    assert at('50 < forecast_yhat{forecast="http"}') == {key(__name__=YHAT, forecast="http", job="web"): 102.0}
    assert at('forecast_yhat{forecast="http"} > bool 50') == {
        key(forecast="http", job="api", instance="a-1"): 0.0,
        key(forecast="http", job="web"): 1.0,
    }


def test_vector_to_vector_matching_one_to_one_with_on_and_ignoring() -> None:
    width = at('forecast_yhat_upper{forecast="http"} - forecast_yhat_lower{forecast="http"}')
    assert width == {key(forecast="http", job="api", instance="a-1"): 2.0, key(forecast="http", job="web"): 2.0}
    assert at('forecast_yhat{job="web"} / on (forecast) sum by (forecast) (forecast_yhat)') == pytest.approx(
        {key(forecast="http"): 102 / 114}
    )
    assert at('forecast_yhat{job="web"} - ignoring (job) forecast_yhat{job="web"}') == {key(forecast="http"): 0.0}
    # A comparison keeps the left-hand value and name; bool returns 0/1 without the name.
    assert at("forecast_yhat_upper > forecast_yhat") == {
        key(__name__="forecast_yhat_upper", forecast="http", job="api", instance="a-1"): 13.0,
        key(__name__="forecast_yhat_upper", forecast="http", job="web"): 103.0,
        key(__name__="forecast_yhat_upper", forecast="disk", instance="db-1"): 1003.0,
    }
    assert at('forecast_yhat{job="web"} == bool forecast_yhat_lower{job="web"}') == {key(forecast="http", job="web"): 0}
    assert at('forecast_yhat{job="web"} + forecast_yhat{job="api"}') == {}


def test_label_replace_sets_and_removes_labels() -> None:
    assert at('label_replace(forecast_yhat{job="web"}, "service", "svc-$1", "job", "(w)eb")') == {
        key(__name__=YHAT, forecast="http", job="web", service="svc-w"): 102.0
    }
    assert at('label_replace(forecast_yhat{job="web"}, "job", "", "job", ".*")') == {
        key(__name__=YHAT, forecast="http"): 102.0
    }
    assert at('label_replace(forecast_yhat{job="web"}, "x", "${1}y$$", "job", "w(?P<mid>.)b")') == {
        key(__name__=YHAT, forecast="http", job="web", x="ey$"): 102.0
    }
    # No match (anchored): the series is unchanged.
    assert at('label_replace(forecast_yhat{job="web"}, "x", "$1", "job", "e")') == {
        key(__name__=YHAT, forecast="http", job="web"): 102.0
    }


# --- what is refused --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("rate(forecast_yhat[5m])", "rate()"),
        ("forecast_yhat[5m]", "range vector selector"),
        ("forecast_yhat offset 1h", "offset modifier"),
        ("forecast_yhat @ 100", "@ modifier"),
        ("max_over_time(forecast_yhat[1h:5m])", "max_over_time()"),
        ("topk(1, forecast_yhat)", "aggregation topk()"),
        ("forecast_yhat and forecast_yhat_lower", "operator and"),
        ("forecast_yhat * on (forecast) group_left forecast_yhat_lower", "group_left/group_right"),
        ('"text"', "string literal"),
        ("vector(1)", "vector()"),
        ('forecast_yhat{job="a" or job="b"}', "'or'"),
    ],
)
def test_unsupported_constructs_are_bad_data_naming_the_construct(query: str, named: str) -> None:
    with pytest.raises(RefusedQuery, match="not supported") as caught:
        run(query)
    assert named in str(caught.value) and caught.value.error_type == "bad_data"


@pytest.mark.parametrize(
    ("query", "message", "error_type"),
    [
        ("forecast_yhat{", "parse error", "bad_data"),
        ('forecast_yhat{job=~"("}', "parse error", "bad_data"),
        ('forecast_yhat{job=~"\\\\pL"}', "invalid regular expression", "bad_data"),
        ('label_replace(forecast_yhat, "1x", "", "job", "")', "invalid destination label name", "bad_data"),
        ('{__name__=~"forecast_yhat.*"} * 2', "same labelset", "execution"),
        (
            'forecast_yhat{forecast="http"} - on (forecast) sum by (forecast) (forecast_yhat)',
            "multiple matches",
            "execution",
        ),
        ('forecast_yhat{forecast="disk"} - on (forecast) forecast_yhat_lower', "duplicate series", "execution"),
        ("-" * (MAX_OPERATORS + 1) + "1", "operators and brackets", "bad_data"),
        ("+".join(["1"] * 10_000), "operators and brackets", "bad_data"),
    ],
)
def test_errors_say_what_is_wrong(query: str, message: str, error_type: str) -> None:
    with pytest.raises(RefusedQuery, match=message) as caught:
        run(query)
    assert caught.value.error_type == error_type


def test_operators_inside_strings_do_not_count_towards_the_limit() -> None:
    alternatives = "|".join(f"x{i}" for i in range(MAX_OPERATORS * 2))
    assert at(f'forecast_yhat{{job=~"web|{alternatives}"}}') == {key(__name__=YHAT, forecast="http", job="web"): 102.0}


def test_a_few_hundred_series_over_a_few_hundred_steps_stay_fast() -> None:
    series = [SeriesState({"instance": f"i-{i}", "job": f"j{i % 7}"}, frame(i)) for i in range(300)]
    curves = served_curves(make_board([ForecastState("big", "q", T0, series)]).snapshot())
    times = np.linspace(T0, T0 + 3600, 300)
    started = time.perf_counter()
    result = evaluate(
        parse("sum by (job) (forecast_yhat_upper - forecast_yhat_lower) / count by (job) (forecast_yhat > 5)"),
        curves,
        times,
    )
    elapsed = time.perf_counter() - started
    assert isinstance(result, Vector) and len(result.labels) == 7
    assert elapsed < 1.0, elapsed


def test_a_regex_python_would_read_unlike_prometheus_is_refused_every_time() -> None:
    for _ in range(2):  # re caches compiled patterns; the second request must not slip through that cache
        with pytest.raises(RefusedQuery, match="reads differently in Prometheus"):
            run('forecast_yhat{job=~"[[:alpha:]]+"}')
