"""Small PNG charts as data: URIs, so one HTML file holds everything. matplotlib's
object API drawn on the Agg canvas directly: no pyplot state, no display, no global
backend switch (the Grafana side of dashboards/ may import matplotlib too)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter

from dashboards.reports.data import Samples

PRIORITY_COLOURS = {"critical": "#d32f2f", "high": "#ef6c00", "medium": "#f9c20f", "low": "#1e6fd9"}
INCIDENT_SHADE = "#ef6c00"
SMALL = (6.4, 2.2)
WIDE = (9.6, 3.0)


def _uri(figure: Figure) -> str:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


TICK_STEPS_MIN = (5, 10, 15, 30, 60, 120, 180, 360, 720)
MAX_TICKS = 8


def _ticks(start_ms: float, end_ms: float, tz: ZoneInfo) -> list[float]:
    """Round local times (every 5 minutes up to 12 hours) for the x axis, at most
    MAX_TICKS of them. The axis is in epoch ms; ticks are chosen in local time so a
    +05:30 zone still gets :00 and :30."""
    span_min = max(1.0, (end_ms - start_ms) / 60_000)
    step = next((s for s in TICK_STEPS_MIN if span_min / s <= MAX_TICKS), TICK_STEPS_MIN[-1])
    first = datetime.fromtimestamp(start_ms / 1000, tz).replace(second=0, microsecond=0)
    offset_min = (first.hour * 60 + first.minute) % step
    t = first.timestamp() * 1000 + (step - offset_min) % step * 60_000
    out = []
    while t <= end_ms:
        out.append(t)
        t += step * 60_000
    return out


def _local_axis(ax: Axes, tz: ZoneInfo, start_ms: float, end_ms: float) -> None:
    ax.xaxis.set_major_locator(FixedLocator(_ticks(start_ms, end_ms, tz)))
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: datetime.fromtimestamp(x / 1000, tz).strftime("%H:%M"))
    )


def time_chart(
    lines: Sequence[tuple[str, Samples]],
    tz: ZoneInfo,
    ylabel: str,
    spans: Sequence[tuple[int, int]] = (),
    limit: float | None = None,
    steps: bool = False,
    size: tuple[float, float] = SMALL,
) -> str:
    """Lines over local time; `spans` shaded (the incident), `limit` dashed (a rating)."""
    figure = Figure(figsize=size)
    ax = figure.add_subplot()
    for label, samples in lines:
        ax.plot(
            [float(t) for t, _ in samples],
            [v for _, v in samples],
            label=label,
            linewidth=1.2,
            drawstyle="steps-post" if steps else "default",
        )
    for start, end in spans:
        ax.axvspan(
            float(start),
            float(end),
            color=INCIDENT_SHADE,
            alpha=0.18,
            linewidth=0,
        )
    if limit is not None:
        ax.axhline(limit, color="#d32f2f", linestyle="--", linewidth=1)
    ax.set_ylabel(ylabel)
    times = [float(t) for _, samples in lines for t, _ in samples] + [
        float(x) for s in spans for x in s
    ]
    if times:
        _local_axis(ax, tz, min(times), max(times))
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        _legend_above(ax, len(lines))
    return _uri(figure)


def _legend_above(ax: Axes, entries: int) -> None:
    """Above the plot, where it cannot hide a line or a bar."""
    ax.legend(
        fontsize=7,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncol=min(6, entries),
        frameon=False,
        borderaxespad=0.2,
    )


def bar_chart(
    labels: Sequence[str],
    stacks: Sequence[tuple[str, Sequence[float], str | None]],
    ylabel: str,
    size: tuple[float, float] = WIDE,
) -> str:
    """Stacked bars: one (name, values, colour) per stack, one value per label."""
    figure = Figure(figsize=size)
    ax = figure.add_subplot()
    bottom = [0.0] * len(labels)
    positions = list(range(len(labels)))
    for name, values, colour in stacks:
        ax.bar(positions, values, bottom=bottom, label=name, color=colour, width=0.8)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(positions, labels, fontsize=7, rotation=0)
    step = max(1, len(labels) // 12)
    for i, tick in enumerate(ax.get_xticklabels()):
        tick.set_visible(i % step == 0)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    highest = max(bottom, default=0.0)
    if highest > 0:  # the highest stack clear of the frame (bars' autoscale leaves none)
        ax.set_ylim(0, highest * 1.08)
    if len(stacks) > 1:
        _legend_above(ax, len(stacks))
    return _uri(figure)
