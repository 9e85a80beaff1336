"""PromQL over the forecast curves: the part of the language a forecast panel needs, evaluated with numpy.

The served series are ``forecast_yhat``, ``forecast_yhat_lower`` and
``forecast_yhat_upper`` with ``forecast`` and the series' own labels exactly as
on ``/metrics`` (a label with an empty value is absent, as PromQL has it) but
without ``horizon``: at time t a series is the latest fit's forecast for t,
interpolated in its frame like the horizon samples. Before the fit time it has
no value (Prometheus holds the real data there) and after the frame's end none
either (nothing is extrapolated)::

    forecast_yhat{forecast="http_requests",job="api"}

Evaluated: selectors with ``=``, ``!=``, ``=~``, ``!~`` (regexes fully
anchored); ``sum``, ``min``, ``max``, ``avg``, ``count`` with ``by`` or
``without``; ``+ - * / % ^`` and comparisons, with or without ``bool``,
between scalars and vectors, vector to vector one-to-one with ``on`` or
``ignoring``; unary minus; parentheses; numbers; ``label_replace``. Anything
else raises ``RefusedQuery`` naming the construct. Every step of a range is
evaluated at once: a vector is a matrix of values and a matrix of presence,
one row per series.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import promql_parser as pp

from forecaster.errors import RefusedQuery
from forecaster.exporter import PublishedForecast
from forecaster.series import Labels

NAME = "__name__"
METRICS = {
    "forecast_yhat": "Predicted value of the series at the sample's time (the latest fit's frame, interpolated).",
    "forecast_yhat_lower": "Lower edge of the prediction band (interval_width) at the sample's time.",
    "forecast_yhat_upper": "Upper edge of the prediction band (interval_width) at the sample's time.",
}
# Like Prometheus' --query.max-samples: a bound on what one query may hold, here over all its selectors.
MAX_SAMPLES = 5_000_000
# The Rust parser recurses once per operator and bracket and overflows its stack (a crash, not an error)
# at a few thousand of them; the evaluator recurses too. No forecast panel comes near this many.
MAX_OPERATORS = 200
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', re.S)
_OPERATOR_CHARS = re.compile(r"[()+\-*/%^<>=!]|\b(?:and|or|unless|atan2)\b")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TEMPLATE = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")
_WARNINGS = threading.Lock()
_SUPPORTED = (
    "supported: selectors, sum/min/max/avg/count with by or without, arithmetic and comparisons "
    "(one-to-one, with on or ignoring), unary minus, numbers and label_replace"
)

_ARITHMETIC: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "%": np.fmod,  # Go's math.Mod: the result takes the dividend's sign
    "^": np.power,
}
_COMPARISON: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    "<": np.less,
    ">=": np.greater_equal,
    "<=": np.less_equal,
}
_AGGREGATIONS = ("sum", "min", "max", "avg", "count")


@dataclass(frozen=True)
class Curve:
    """One served series: its labels (``__name__`` included) and the frame column it is read from."""

    labels: Labels
    ds: np.ndarray
    column: np.ndarray

    def overlaps(self, start: float, end: float) -> bool:
        return bool(self.ds[0] <= end and self.ds[-1] >= start)


@dataclass
class Vector:
    """Series over the evaluation steps: ``values[i, j]`` counts only where ``present[i, j]``."""

    labels: list[Labels]
    values: np.ndarray
    present: np.ndarray


Value = Vector | np.ndarray  # a scalar is one float per step
Key = tuple[tuple[str, str], ...]  # a label set, hashable


def served_curves(snapshot: Iterable[PublishedForecast]) -> list[Curve]:
    """Every series the API serves, from one board snapshot."""
    out = []
    for forecast in snapshot:
        for series, own in zip(forecast.series, forecast.labels, strict=True):
            frame = series.frame
            if len(frame.ds) == 0:
                continue
            labels = {"forecast": forecast.name, **{k: v for k, v in own.items() if v != ""}}
            for name, column in zip(METRICS, (frame.yhat, frame.yhat_lower, frame.yhat_upper), strict=True):
                out.append(Curve({NAME: name, **labels}, frame.ds, column))
    return out


def parse(query: str) -> pp.Expr:
    """The query's syntax tree; a syntax error, or a query too deep to parse safely, is ``bad_data``."""
    outside_strings = _STRINGS.sub('""', query)
    if len(_OPERATOR_CHARS.findall(outside_strings)) > MAX_OPERATORS:
        raise RefusedQuery(f"query has more than {MAX_OPERATORS} operators and brackets; split it up")
    try:
        return pp.parse(query)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the Rust parser reports a panic as BaseException, not Exception
        raise RefusedQuery(f"parse error: {exc}") from None


def selector_matches(text: str, curves: Sequence[Curve]) -> list[Curve]:
    """The curves a ``match[]`` series selector picks (``/api/v1/series``, ``/api/v1/labels``)."""
    expr = parse(text)
    if not isinstance(expr, pp.VectorSelector):
        raise RefusedQuery(f'match[] {text!r} is not a series selector such as forecast_yhat{{forecast="x"}}')
    return _matching(expr, curves)


def evaluate(expr: pp.Expr, curves: Sequence[Curve], times: np.ndarray) -> Value:
    """``expr`` at each of ``times`` (unix seconds) over ``curves``."""
    try:
        with np.errstate(all="ignore"):  # 1/0 is +Inf and 0/0 NaN in PromQL too
            return _Evaluation(curves, times).eval(expr)
    except RecursionError:
        raise RefusedQuery("query is nested too deeply") from None


def _refuse(construct: str) -> RefusedQuery:
    return RefusedQuery(f"{construct} is not supported by the forecaster's query API; {_SUPPORTED}")


def _regex(pattern: str, where: str) -> re.Pattern[str]:
    # Prometheus anchors as ^(?s:...)$; fullmatch anchors without wrapping, so a leading (?i) stays legal in Python.
    # Python warns where it would read a pattern unlike RE2 does ([[:alpha:]], [a--b]): refuse those. The lock
    # keeps the API's threads from restoring each other's warning filters; another thread's warning in this
    # instant is recorded here and dropped, which costs a log line at most. re._compiler.compile is re.compile
    # without its cache, which would hand back a pattern seen before without warning again.
    with _WARNINGS, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            compiled: re.Pattern[str] = re._compiler.compile(pattern, re.S)  # type: ignore[attr-defined]
        except (re.error, OverflowError, RecursionError) as exc:
            raise RefusedQuery(f"invalid regular expression in {where}: {pattern!r}: {exc}") from None
    for warning in caught:
        if issubclass(warning.category, FutureWarning):
            raise RefusedQuery(f"regular expression in {where} reads differently in Prometheus: {warning.message}")
    return compiled


def _matching(selector: pp.VectorSelector, curves: Sequence[Curve]) -> list[Curve]:
    if selector.offset is not None:
        raise _refuse(f"the offset modifier ({selector})")
    if selector.at is not None:
        raise _refuse(f"the @ modifier ({selector})")
    if selector.matchers.or_matchers:
        raise _refuse(f"label matchers joined by 'or' ({selector})")
    tests: list[tuple[str, Callable[[str], bool]]] = []
    if selector.name is not None:
        tests.append((NAME, selector.name.__eq__))
    for matcher in selector.matchers.matchers:
        name, value, op = matcher.name, matcher.value, matcher.op
        if op == pp.MatchOp.Equal:
            tests.append((name, value.__eq__))
        elif op == pp.MatchOp.NotEqual:
            tests.append((name, value.__ne__))
        else:
            pattern = _regex(value, f"the matcher {name}{'=~' if op == pp.MatchOp.Re else '!~'}{value!r}")
            tests.append((name, _regex_test(pattern, wanted=op == pp.MatchOp.Re)))
    return [c for c in curves if all(test(c.labels.get(name, "")) for name, test in tests)]


def _regex_test(pattern: re.Pattern[str], wanted: bool) -> Callable[[str], bool]:
    return lambda value: (pattern.fullmatch(value) is not None) == wanted


def _key(labels: Labels) -> Key:
    return tuple(sorted(labels.items()))


def _without_name(labels: Labels) -> Labels:
    return {k: v for k, v in labels.items() if k != NAME}


def _unique(vector: Vector) -> Vector:
    """Rows with equal label sets merged; Prometheus' error when two of them have a value at the same step."""
    rows: dict[Key, list[int]] = {}
    for i, row_labels in enumerate(vector.labels):
        rows.setdefault(_key(row_labels), []).append(i)
    if len(rows) == len(vector.labels):
        return vector
    labels: list[Labels] = []
    values, present = [], []
    for group in rows.values():
        taken = vector.present[group]
        if (taken.sum(axis=0) > 1).any():
            shown = "{" + ", ".join(f'{k}="{v}"' for k, v in vector.labels[group[0]].items()) + "}"
            raise RefusedQuery(f"vector cannot contain metrics with the same labelset {shown}", "execution")
        labels.append(vector.labels[group[0]])
        values.append(np.where(taken, vector.values[group], 0.0).sum(axis=0))
        present.append(taken.any(axis=0))
    return Vector(labels, np.array(values), np.array(present))


class _Evaluation:
    def __init__(self, curves: Sequence[Curve], times: np.ndarray) -> None:
        self.curves = curves
        self.times = times
        self.samples = 0

    def eval(self, node: pp.Expr) -> Value:
        if isinstance(node, pp.NumberLiteral):
            return np.full(len(self.times), node.val)
        if isinstance(node, pp.ParenExpr):
            return self.eval(node.expr)
        if isinstance(node, pp.VectorSelector):
            return self.select(node)
        if isinstance(node, pp.UnaryExpr):
            return self.negate(self.eval(node.expr))
        if isinstance(node, pp.BinaryExpr):
            return self.binary(node)
        if isinstance(node, pp.AggregateExpr):
            return self.aggregate(node)
        if isinstance(node, pp.Call):
            return self.call(node)
        if isinstance(node, pp.MatrixSelector):
            raise _refuse(f"the range vector selector {node}")
        if isinstance(node, pp.SubqueryExpr):
            raise _refuse(f"the subquery {node}")
        if isinstance(node, pp.StringLiteral):
            raise _refuse(f"a string literal ({node}) as a value")
        raise _refuse(f"the expression {node}")

    def select(self, selector: pp.VectorSelector) -> Vector:
        chosen = _matching(selector, self.curves)
        self.samples += len(chosen) * len(self.times)
        if self.samples > MAX_SAMPLES:
            raise RefusedQuery(
                f"query processing would load too many samples into memory ({self.samples:,} > {MAX_SAMPLES:,}); "
                "narrow the selectors or raise the step",
                "execution",
            )
        values = np.empty((len(chosen), len(self.times)))
        present = np.empty((len(chosen), len(self.times)), dtype=bool)
        for i, curve in enumerate(chosen):
            values[i] = np.interp(self.times, curve.ds, curve.column)
            present[i] = (self.times >= curve.ds[0]) & (self.times <= curve.ds[-1])
        return Vector([dict(c.labels) for c in chosen], values, present)

    def negate(self, value: Value) -> Value:
        if isinstance(value, Vector):
            return _unique(Vector([_without_name(x) for x in value.labels], -value.values, value.present))
        return -value

    def binary(self, node: pp.BinaryExpr) -> Value:
        op = str(node.op)
        if op not in _ARITHMETIC and op not in _COMPARISON:
            raise _refuse(f"the operator {op}")
        modifier = node.modifier
        if modifier is not None and modifier.card in (
            pp.VectorMatchCardinality.ManyToOne,
            pp.VectorMatchCardinality.OneToMany,
        ):
            raise _refuse(f"group_left/group_right matching ({node})")
        returns_bool = modifier is not None and modifier.return_bool
        lhs, rhs = self.eval(node.lhs), self.eval(node.rhs)
        if isinstance(lhs, Vector):
            if isinstance(rhs, Vector):
                return self.vector_vector(op, lhs, rhs, modifier, returns_bool)
            return _vector_scalar(op, lhs, rhs, returns_bool, scalar_left=False)
        if isinstance(rhs, Vector):
            return _vector_scalar(op, rhs, lhs, returns_bool, scalar_left=True)
        if op in _ARITHMETIC:
            return _ARITHMETIC[op](lhs, rhs)
        return _COMPARISON[op](lhs, rhs).astype(float)  # the parser allows scalar comparisons with bool only

    def vector_vector(
        self, op: str, lhs: Vector, rhs: Vector, modifier: pp.BinModifier | None, returns_bool: bool
    ) -> Vector:
        matching = modifier.matching if modifier is not None else None
        on = matching is not None and matching.type == pp.LabelModifierType.Include
        listed = set(matching.labels) if matching is not None else set()

        def signature(labels: Labels) -> Key:
            return _key({k: v for k, v in labels.items() if (k in listed) == on and (on or k != NAME)})

        right: dict[Key, tuple[np.ndarray, np.ndarray]] = {}
        for labels, values, present in zip(rhs.labels, rhs.values, rhs.present, strict=True):
            sig = signature(labels)
            if sig in right:
                if (right[sig][1] & present).any():
                    raise RefusedQuery(
                        f"found duplicate series for the match group {dict(sig)} on the right hand-side of the "
                        "operation; many-to-many matching not allowed: matching labels must be unique on one side",
                        "execution",
                    )
                values = np.where(present, values, right[sig][0])
                present = present | right[sig][1]
            right[sig] = (values, present)
        seen: dict[Key, np.ndarray] = {}
        labels_out, values_out, present_out = [], [], []
        for labels, values, present in zip(lhs.labels, lhs.values, lhs.present, strict=True):
            sig = signature(labels)
            if sig not in right:
                continue
            r_values, r_present = right[sig]
            both = present & r_present
            if sig in seen and (seen[sig] & both).any():
                raise RefusedQuery(
                    f"multiple matches for labels {dict(sig)}: many-to-one matching must be explicit "
                    "(group_left/group_right), which the forecaster's query API does not support",
                    "execution",
                )
            seen[sig] = seen.get(sig, both) | both
            result, kept = _apply(op, values, r_values, both, returns_bool)
            out = {k: v for k, v in labels.items() if (k in listed) == on}
            if op in _ARITHMETIC or returns_bool:
                out.pop(NAME, None)
            labels_out.append(out)
            values_out.append(result)
            present_out.append(kept)
        return _vector(labels_out, values_out, present_out, len(self.times))

    def aggregate(self, node: pp.AggregateExpr) -> Vector:
        op = str(node.op)
        if op not in _AGGREGATIONS:
            raise _refuse(f"the aggregation {op}()")
        inner = self.eval(node.expr)
        if not isinstance(inner, Vector):
            raise RefusedQuery(f"expected an instant vector in {op}(), got a scalar")
        modifier = node.modifier
        listed = set(modifier.labels) if modifier is not None else set()
        without = modifier is not None and modifier.type == pp.AggModifierType.Without
        groups: dict[Key, list[int]] = {}
        for i, labels in enumerate(inner.labels):
            kept = {k: v for k, v in labels.items() if (k in listed) != without and (not without or k != NAME)}
            groups.setdefault(_key(kept), []).append(i)
        labels_out, values_out, present_out = [], [], []
        for key, rows in groups.items():
            values, present = inner.values[rows], inner.present[rows]
            count = present.sum(axis=0)
            if op == "count":
                result = count.astype(float)
            elif op in ("sum", "avg"):
                result = np.where(present, values, 0.0).sum(axis=0)
                if op == "avg":
                    result = result / np.maximum(count, 1)
            else:
                # fmin/fmax skip NaN as Prometheus' min and max do, unless every value is NaN.
                pick = np.fmin if op == "min" else np.fmax
                result = pick.reduce(np.where(present, values, np.nan), axis=0)
            labels_out.append(dict(key))
            values_out.append(result)
            present_out.append(count > 0)
        return _vector(labels_out, values_out, present_out, len(self.times))

    def call(self, node: pp.Call) -> Vector:
        name = node.func.name
        if name != "label_replace":
            raise _refuse(f"the function {name}()")
        inner = self.eval(node.args[0])
        texts = [_string(arg) for arg in node.args[1:]]
        if not isinstance(inner, Vector) or None in texts:
            raise RefusedQuery("label_replace() takes an instant vector and four string literals")
        dst, replacement, src, pattern = (t or "" for t in texts)
        if not _LABEL_NAME.fullmatch(dst):
            raise RefusedQuery(f"invalid destination label name in label_replace(): {dst!r}")
        regex = _regex(pattern, "label_replace()")
        labels_out = []
        for labels in inner.labels:
            match = regex.fullmatch(labels.get(src, ""))
            out = dict(labels)
            if match is not None:
                value = _expand(replacement, match)
                if value:
                    out[dst] = value
                else:
                    out.pop(dst, None)
            labels_out.append(out)
        return _unique(Vector(labels_out, inner.values, inner.present))


def _string(node: pp.Expr) -> str | None:
    while isinstance(node, pp.ParenExpr):
        node = node.expr
    return node.val if isinstance(node, pp.StringLiteral) else None


def _expand(template: str, match: re.Match[str]) -> str:
    """Go's regexp Expand: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``; an unknown group is empty."""

    def one(ref: re.Match[str]) -> str:
        if ref.group(0) == "$$":
            return "$"
        name = ref.group(1) or ref.group(2)
        try:
            return match.group(int(name) if name.isdigit() else name) or ""
        except (IndexError, ValueError):
            return ""

    return _TEMPLATE.sub(one, template)


def _apply(
    op: str, lhs: np.ndarray, rhs: np.ndarray, present: np.ndarray, returns_bool: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One binary operation on aligned rows: the values and where they exist. A comparison keeps ``lhs``."""
    if op in _ARITHMETIC:
        return _ARITHMETIC[op](lhs, rhs), present
    holds = _COMPARISON[op](lhs, rhs)
    if returns_bool:
        return holds.astype(float), present
    return lhs, present & holds


def _vector_scalar(op: str, vector: Vector, scalar: np.ndarray, returns_bool: bool, scalar_left: bool) -> Vector:
    lhs, rhs = (scalar[None, :], vector.values) if scalar_left else (vector.values, scalar[None, :])
    values, present = _apply(op, lhs, rhs, vector.present, returns_bool)
    if op in _COMPARISON and not returns_bool:
        return Vector(vector.labels, vector.values, present)  # a filter: the vector's own values and name stay
    labels = [_without_name(x) for x in vector.labels]
    return _unique(Vector(labels, np.broadcast_to(values, vector.values.shape).copy(), present))


def _vector(labels: list[Labels], values: list[np.ndarray], present: list[np.ndarray], steps: int) -> Vector:
    if not labels:
        return Vector([], np.empty((0, steps)), np.empty((0, steps), dtype=bool))
    return _unique(Vector(labels, np.array(values), np.array(present)))
