"""The status page at ``/``: each forecast's health, and a chart per series of its recent values and forecast.

It is built from what ``/metrics`` serves: one board snapshot per request, the
skill scores and the skip counters. It queries nothing and fits nothing, and
the page itself loads nothing (inline CSS, inline SVG, no script). Every
label, query and name in it is HTML-escaped.

The overview draws at most ``PAGE_SIZE`` charts, shared among the forecasts;
``/?forecast=NAME&page=K`` shows one forecast, ``PAGE_SIZE`` series a page.
A series' chart is only drawn when it is on the page asked for, so a page
costs the same with 200 series as with 20,000.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode

import numpy as np

from forecaster.exporter import Board, PublishedForecast, SelfMetrics
from forecaster.series import Labels, series_key
from forecaster.settings import Forecast
from forecaster.shard import WHOLE, Shard
from forecaster.state import SeriesState

PAGE_SIZE = 200
# Frame points drawn per chart; a 7d horizon at 1m step would otherwise put 10,000 points into one SVG.
CHART_POINTS = 200
HISTORY_SPANS = 3
WIDTH, HEIGHT = 380, 140
LEFT, RIGHT, TOP, BOTTOM = 54, 8, 8, 20

Score = tuple[float, float, float]  # MAE, coverage, skill


class StatusPage:
    """Renders ``/``; ``next_run`` tells when a forecast next retrains (None: not scheduled)."""

    def __init__(
        self,
        board: Board,
        metrics: SelfMetrics,
        forecasts: Sequence[Forecast],
        next_run: Callable[[str], float | None],
        clock: Callable[[], float] = time.time,
        shard: Shard = WHOLE,
    ) -> None:
        self._board = board
        self._shard = shard
        self._metrics = metrics
        self._forecasts = list(forecasts)
        self._next_run = next_run
        self._clock = clock

    def render(self, query: str) -> tuple[int, bytes]:
        """The HTTP status and the page for the query string ``query`` (``forecast=NAME&page=K``, both optional)."""
        now = self._clock()
        params = parse_qs(query)
        name = params.get("forecast", [None])[0]
        try:
            page = int(params.get("page", ["1"])[0])
        except ValueError:
            return 400, _document("bad request", now, [_nav(self._forecasts, None), _notice("page must be a number")])
        # One snapshot for the whole page, like a scrape: a retrain landing meanwhile cannot mix two fits.
        published = {p.name: p for p in self._board.snapshot()}
        skipped = self._skipped()
        if name is None:
            shown, share, page = self._forecasts, max(1, PAGE_SIZE // len(self._forecasts)), 1
        else:
            shown = [f for f in self._forecasts if f.name == name]
            if not shown:
                body = [_nav(self._forecasts, None), _notice(f"there is no forecast named {name!r}")]
                return 404, _document("no such forecast", now, body)
            share = PAGE_SIZE
        parts = [_nav(self._forecasts, name), _LEGEND]
        if self._shard != WHOLE:
            parts.insert(1, _notice(f"This replica serves shard {self._shard} of every forecast's series."))
        for forecast in shown:
            skips = skipped.get(forecast.name, {})
            parts.append(
                self._section(forecast, published.get(forecast.name), skips, now, page, share, name is not None)
            )
        return 200, _document(name or "status", now, parts)

    def _section(
        self,
        forecast: Forecast,
        published: PublishedForecast | None,
        skipped: dict[str, int],
        now: float,
        page: int,
        share: int,
        paged: bool,
    ) -> str:
        """One forecast's facts, and the charts of its series ``share`` to a page (a pager when ``paged``)."""
        scores = {
            series_key(labels): (mae, cov, skill)
            for labels, mae, cov, skill in self._metrics.skill.scores(forecast.name)
        }
        name = html.escape(forecast.name)
        next_run = self._next_run(forecast.name)
        facts = [
            ("query", f"<code>{html.escape(forecast.query)}</code>"),
            ("series", str(len(published.series)) if published else "none yet"),
            ("last fit", _when(published.fit_time, now) if published else '<span class="warn">not fitted yet</span>'),
            ("next retrain", _when(next_run, now) if next_run is not None else "not scheduled yet"),
            ("retrain every", html.escape(str(forecast.retrain_every))),
            ("horizon", html.escape(str(forecast.horizon))),
            ("skipped since start", _skips(skipped)),
            ("live skill", _summary(scores, published, forecast.interval_width)),
        ]
        rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
        out = [f'<section id="{name}"><h2>{name}</h2><table class="facts">{rows}</table>']
        if published is None or not published.series:
            out.append(_notice("Nothing to draw until the first fit."))
            return "".join(out) + "</section>"
        total = len(published.series)
        pages = -(-total // share)
        page = min(max(page, 1), pages)
        first = (page - 1) * share
        indices = range(first, min(first + share, total))
        pager = _pager(forecast.name, page, pages, first, len(indices), total, paged=paged)
        out.append(pager)
        if any(published.series[i].recent is None for i in indices):
            out.append(
                _notice(
                    "Some charts show only the forecast: recent values are not kept across restarts "
                    "and come back with the next retrain."
                )
            )
        out.append('<div class="grid">')
        for i in indices:
            labels = published.labels[i]
            out.append(_card(published.series[i], labels, scores.get(series_key(labels)), published.fit_time, now))
        out.append("</div>")
        if paged and pages > 1:
            out.append(pager)
        return "".join(out) + "</section>"

    def _skipped(self) -> dict[str, dict[str, int]]:
        """forecaster_series_skipped_total by forecast and reason, leaving out the zeros."""
        out: dict[str, dict[str, int]] = {}
        for family in self._metrics.skipped.collect():
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.value:
                    out.setdefault(sample.labels["forecast"], {})[sample.labels["reason"]] = int(sample.value)
        return out


def _document(title: str, now: float, parts: Sequence[str]) -> bytes:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>forecaster: {html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f'<header><h1><a href="/">forecaster</a></h1><span class="muted">as of {_iso(now)}</span>'
        '<nav class="links"><a href="/metrics">/metrics</a> <a href="/healthz">/healthz</a> '
        '<a href="/readyz">/readyz</a></nav></header><main>' + "".join(parts) + "</main></body></html>\n"
    ).encode()


def _nav(forecasts: Sequence[Forecast], current: str | None) -> str:
    links = []
    for forecast in forecasts:
        name = html.escape(forecast.name)
        target = html.escape("/?" + urlencode({"forecast": forecast.name}))
        marker = ' aria-current="page"' if forecast.name == current else ""
        links.append(f'<a href="{target}"{marker}>{name}</a>')
    overview = '<a href="/">all forecasts</a>' if current is not None else ""
    return f'<nav class="forecasts">{overview}{"".join(links)}</nav>'


def _notice(text: str) -> str:
    return f'<p class="notice">{html.escape(text)}</p>'


def _pager(name: str, page: int, pages: int, first: int, count: int, total: int, *, paged: bool) -> str:
    shown = f"showing {first + 1}–{first + count} of {total} series"
    if not paged:
        more = f' · <a href="{_page_href(name, 1)}">all of them, {PAGE_SIZE} a page</a>' if count < total else ""
        return f'<p class="pager">{shown}{more}</p>'
    links = []
    if page > 1:
        links.append(
            f'<a href="{_page_href(name, 1)}">« first</a> <a href="{_page_href(name, page - 1)}">‹ previous</a>'
        )
    if page < pages:
        links.append(
            f'<a href="{_page_href(name, page + 1)}">next ›</a> <a href="{_page_href(name, pages)}">last »</a>'
        )
    return f'<p class="pager">{shown} · page {page} of {pages} {" ".join(links)}</p>'


def _page_href(name: str, page: int) -> str:
    return html.escape("/?" + urlencode({"forecast": name, "page": page}))


def _skips(skipped: dict[str, int]) -> str:
    if not skipped:
        return "none"
    return ", ".join(
        f'<span class="warn">{html.escape(reason)}</span> {count}' for reason, count in sorted(skipped.items())
    )


def _summary(
    scores: dict[tuple[tuple[str, str], ...], Score], published: PublishedForecast | None, interval_width: float
) -> str:
    """Median skill, how many series a PromQL baseline beat, and mean coverage against the band's width."""
    if not scores:
        return "not scored yet: a forecast is scored at the retrain that replaces it"
    values = np.array(list(scores.values()), dtype=np.float64)
    skill = values[:, 2][~np.isnan(values[:, 2])]
    coverage = values[:, 1][~np.isnan(values[:, 1])]
    served = len(published.series) if published else 0
    parts = [f"{len(scores)} of {served} series scored"]
    if len(skill):
        beaten = int((skill < 0).sum())
        parts.append(f"median skill {_num(float(np.median(skill)), 2)}")
        parts.append(f'<span class="{"warn" if beaten else "ok"}">{beaten} behind a PromQL baseline</span>')
    if len(coverage):
        parts.append(f"mean coverage {_pct(float(coverage.mean()))} (band {_pct(interval_width)})")
    return " · ".join(parts)


def _card(series: SeriesState, labels: Labels, score: Score | None, fit_time: float, now: float) -> str:
    # As Prometheus writes them: a quote in a value escaped, so a value cannot pass for two labels, and an empty
    # label (job="" on a series that has no job) left out, as Prometheus stores it.
    shown = ", ".join(
        f"{html.escape(k)}={html.escape(json.dumps(v, ensure_ascii=False))}" for k, v in sorted(labels.items()) if v
    )
    if score is None:
        stats = '<span class="muted">not scored yet</span>'
    else:
        mae, coverage, skill = score
        verdict = "warn" if skill < 0 else "ok"
        stats = f'skill <b class="{verdict}">{_num(skill, 2)}</b> · coverage {_pct(coverage)} · MAE {_num(mae, 4)}'
    return (
        f'<figure class="card"><figcaption><code>{{{shown}}}</code><br>{stats}</figcaption>'
        f"{chart(series, fit_time, now)}</figure>"
    )


def chart(series: SeriesState, fit_time: float, now: float) -> str:
    """One series as inline SVG: its recent values, then the band and the forecast from the fit time on."""
    frame = series.frame
    if len(frame.ds) > CHART_POINTS:
        keep = np.unique(np.r_[np.arange(0, len(frame.ds), -(-len(frame.ds) // CHART_POINTS)), len(frame.ds) - 1])
    else:
        keep = np.arange(len(frame.ds))
    ds, yhat, lower, upper = frame.ds[keep], frame.yhat[keep], frame.yhat_lower[keep], frame.yhat_upper[keep]
    recent = series.recent
    rts = recent.timestamps if recent is not None else np.empty(0)
    rys = recent.values.astype(np.float64) if recent is not None else np.empty(0)
    # At most three frames' span of history, so a short horizon is not squeezed against the right edge.
    since = fit_time - HISTORY_SPANS * (ds[-1] - ds[0]) if len(ds) else -math.inf
    rts, rys = rts[rts >= since], rys[rts >= since]
    ys = np.concatenate((rys, lower, upper, yhat))
    ys = ys[np.isfinite(ys)]
    times = np.concatenate((rts, ds))
    if not len(ys) or not len(times):
        return _svg('<text x="50%" y="50%" text-anchor="middle">nothing to draw</text>')
    x0, x1 = float(times.min()), float(times.max())
    lo, hi = float(ys.min()), float(ys.max())
    pad = (hi - lo) * 0.05 or max(abs(hi) * 0.05, 1.0)
    lo, hi = lo - pad, hi + pad
    sx = (WIDTH - LEFT - RIGHT) / max(x1 - x0, 1.0)
    sy = (HEIGHT - TOP - BOTTOM) / (hi - lo)

    def points(t: np.ndarray, v: np.ndarray) -> str:
        xs = LEFT + (t - x0) * sx
        vs = TOP + (hi - v) * sy
        # One format call for the whole line: formatting point by point is most of a page's cost.
        return ("%.1f,%.1f " * len(xs) % tuple(np.column_stack((xs, vs)).ravel().tolist())).rstrip()

    bottom = HEIGHT - BOTTOM
    parts = [
        f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>',
        f'<polygon class="band" points="{points(np.r_[ds, ds[::-1]], np.r_[upper, lower[::-1]])}"/>',
        f'<polyline class="yhat" points="{points(ds, yhat)}"/>',
    ]
    if len(rts):
        parts.append(f'<polyline class="real" points="{points(rts, rys)}"/>')
    if x0 <= now <= x1:
        x = LEFT + (now - x0) * sx
        parts.append(f'<line class="now" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{bottom}"/>')
    parts += [
        f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{_num(hi, 4)}</text>',
        f'<text x="{LEFT - 4}" y="{bottom}" text-anchor="end">{_num(lo, 4)}</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 5}">{_short(x0)}</text>',
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 5}" text-anchor="end">{_short(x1)}</text>',
    ]
    return _svg("".join(parts))


def _svg(content: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img">{content}</svg>'
    )


def _when(t: float, now: float) -> str:
    return f'<time datetime="{_iso(t)}">{_iso(t)}</time> ({relative(t, now)})'


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _short(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%m-%d %H:%M")


def relative(t: float, now: float) -> str:
    """``t`` as seen from ``now``: "12 min ago", "in 48 min", "in 2 d 3 h"."""
    seconds = round(abs(t - now))
    if seconds < 60:
        return "just now" if t <= now else "in under a minute"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        span = f"{minutes} min"
    elif hours < 24:
        span = f"{hours} h {minutes % 60} min" if minutes % 60 else f"{hours} h"
    else:
        span = f"{days} d {hours % 24} h" if hours % 24 else f"{days} d"
    return f"{span} ago" if t <= now else f"in {span}"


def _num(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant digits, thousands and up with an SI prefix (5.52G) to fit an axis."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "−∞" if value < 0 else "∞"
    prefix = ""
    for symbol in "kMGTPE":
        if abs(value) < 1000:
            break
        value, prefix = value / 1000, symbol
    return f"{value:.{digits}g}{prefix}".replace("-", "−")


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.0f} %"


_LEGEND = (
    '<p class="legend"><span class="key real"></span> recent values (averaged) '
    '<span class="key yhat"></span> forecast <span class="key band"></span> band '
    '<span class="key now"></span> now</p><p class="muted">Skill is 1 − model MAE / best PromQL baseline MAE '
    "on the samples since the previous fit: above 0 the forecast beat every baseline. Coverage is the share "
    "of those samples inside the band.</p>"
)

_CSS = """
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;background:#f5f6f8}
header{display:flex;gap:1em;align-items:baseline;flex-wrap:wrap;padding:.6em 1.2em;background:#1d2330;color:#eee}
header h1{margin:0;font-size:1.3em}header a{color:#eee}.links{margin-left:auto}.links a{margin-left:.8em}
main{padding:0 1.2em 2em;max-width:1600px}
nav.forecasts{margin:1em 0;display:flex;gap:.4em;flex-wrap:wrap}
nav.forecasts a{padding:.2em .7em;border:1px solid #c9ced8;border-radius:1em;background:#fff;text-decoration:none}
nav.forecasts a[aria-current]{background:#2f6fdb;color:#fff;border-color:#2f6fdb}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:.4em 1.2em 1em;margin:1em 0}
h2{margin:.4em 0;font-size:1.2em}
table.facts{border-collapse:collapse;margin-bottom:.6em}
table.facts th{text-align:left;font-weight:600;padding:.15em 1.2em .15em 0;vertical-align:top;white-space:nowrap}
code{font:12.5px/1.3 ui-monospace,"DejaVu Sans Mono",monospace;overflow-wrap:anywhere}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(390px,1fr));gap:.8em}
.card{margin:0;border:1px solid #e3e6ec;border-radius:4px;padding:.4em .5em;background:#fcfcfd}
figcaption{font-size:12.5px;margin-bottom:.2em}
svg{display:block;max-width:100%;height:auto}svg text{font:10px system-ui,sans-serif;fill:#5b6475}
.axis{stroke:#b8bfcc}.band{fill:#2f6fdb;fill-opacity:.18;stroke:none}.yhat{fill:none;stroke:#2f6fdb;stroke-width:1.5}
.real{fill:none;stroke:#1d2330;stroke-width:1.2}.now{stroke:#d9822b;stroke-dasharray:3 3}
.muted{color:#6b7385}.warn{color:#b3261e}.ok{color:#1e7b34}header .muted{color:#aab}
.notice{background:#fff6e0;border:1px solid #f0d58c;border-radius:4px;padding:.4em .7em}
.pager{color:#444}.pager a{margin-left:.5em}
.legend{color:#444}.key{display:inline-block;width:1.6em;height:.7em;margin:0 .3em 0 .8em;vertical-align:middle}
.key.real{border-top:2px solid #1d2330;height:0}.key.yhat{border-top:2px solid #2f6fdb;height:0}
.key.band{background:rgba(47,111,219,.18)}.key.now{border-top:2px dashed #d9822b;height:0}
"""
