"""The markup helpers every report is built of: escaped cells, tables that become cards
on a phone, sections, figures, badges, key figures, times, and the page itself."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from string import Template

from dashboards.reports.periods import Period


class Html(str):
    """Markup built here: not escaped again."""


Cell = str | Html | float | int | None


def esc(value: Cell) -> Html:
    if isinstance(value, Html):
        return value
    return Html(html.escape("–" if value is None else str(value)))


def num(value: float | None, digits: int = 1) -> str | None:
    return None if value is None else f"{value:,.{digits}f}"


def tag(name: str, content: Cell, cls: str = "") -> Html:
    attr = f' class="{cls}"' if cls else ""
    return Html(f"<{name}{attr}>{esc(content)}</{name}>")


def join(parts: Iterable[Cell]) -> Html:
    return Html("".join(esc(p) for p in parts))


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    numeric: set[int] | None = None,
    wrap: set[int] | None = None,
) -> Html:
    """A table; `numeric` columns right-aligned, `wrap` columns (free text) wrapped
    rather than widening the table. Each cell carries its header as `data-label`: on
    a phone every row becomes a card of label: value lines (see report.css)."""
    numeric, wrap = numeric or set(), wrap or set()

    def cls(i: int) -> str:
        return " ".join(c for c, on in (("num", i in numeric), ("wrap", i in wrap)) if on)

    head = join(tag("th", h, cls(i)) for i, h in enumerate(headers))
    body = join(
        Html("<tr>" + join(_cell(c, headers[i], cls(i)) for i, c in enumerate(row)) + "</tr>")
        for row in rows
    )
    if not body:
        return tag("p", "None.", "none")
    inner = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return Html(f'<div class="scroll">{inner}</div>')


def _cell(content: Cell, label: str, cls: str) -> Html:
    attr = f' class="{cls}"' if cls else ""
    return Html(f'<td data-label="{html.escape(label)}"{attr}>{esc(content)}</td>')


def section(title: str, *content: Cell, ident: str = "") -> Html:
    attr = f' id="{html.escape(ident)}"' if ident else ""
    return Html(f"<section{attr}>{tag('h2', title)}{join(content)}</section>")


def figure(title: str, uri: str) -> Html:
    alt = html.escape(title)
    return Html(
        f'<figure><img src="{html.escape(uri)}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
    )


def badge(priority: str) -> Html:
    return tag("span", priority, f"badge {priority}")


def facts(items: Sequence[tuple[str, Cell]]) -> Html:
    cells = join(
        Html(f"<div>{tag('b', value)}{tag('span', label)}</div>") for label, value in items
    )
    return Html(f'<div class="facts">{cells}</div>')


# -- time -------------------------------------------------------------------------------


def when(period: Period, ms: int | None, with_date: bool = False) -> str | None:
    if ms is None:
        return None
    moment: datetime = period.local(ms)
    return moment.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")


def duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min" if minutes else f"{seconds:.0f} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


# -- the page ---------------------------------------------------------------------------

PAGE = Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title><style>
$style</style></head>
<body><main>
<header><h1>$title</h1><p>$subtitle</p><p>$generated</p></header>
$body
<footer>$footer</footer>
</main></body></html>
"""
)


@cache
def stylesheet() -> str:
    """report.css, shipped beside this module (package data), read once."""
    return Path(__file__).with_name("report.css").read_text(encoding="utf-8")


def page(title: str, subtitle: str, generated: str, body: Html, footer: Html) -> str:
    return PAGE.substitute(
        title=esc(title),
        subtitle=esc(subtitle),
        generated=esc(generated),
        style=stylesheet(),
        body=body,
        footer=footer,
    )


def report_page(title: str, period: Period, generated_ms: int, body: Html, footer: str) -> str:
    """A report's page: the period as its subtitle, when it was made, a footer in words."""
    return page(title, _span(period), _generated(period, generated_ms), body, esc(footer))


def _span(period: Period) -> str:
    """The period as the page's subtitle: from, to, zone, and "as of" if it is not over."""
    tz = period.tz.key
    start, end = when(period, period.start_ms, True), when(period, period.end_ms, True)
    text = f"{start} → {end} ({tz})"
    if period.as_of_ms < period.end_ms:
        text += f", as of {when(period, period.as_of_ms, True)}"
    return text


def _generated(period: Period, ms: int) -> str:
    return f"Generated {when(period, ms, True)} {period.tz.key} by facility report"
