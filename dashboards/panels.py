"""Panel makers shared by the boards: one InfluxDB source, fixed resolution, alarm
levels as thresholds and per-asset overrides from the site model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, table, text, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import text as tm

from dashboards.influxql import InfluxQL, datasource_ref
from dashboards.model import Facts, Level, display
from facility.site import AssetRef, AssetStatus

# Every panel asks for at most this many points per series, so `$__interval` is the
# same in Grafana whatever the browser width (and in the query tests).
MAX_POINTS = 720
MIN_INTERVAL = "10s"  # the gateways' fastest poll is 5 s; finer buckets are empty
OUT_OF_SERVICE_COLOUR = "#808080"
# A stopped pump is a normal state (duty/standby), not a fault: neutral, lighter than
# the out-of-service grey.
STOPPED_COLOUR = "#C7D0D9"

P = TypeVar("P", timeseries.Panel, stat.Panel, statetimeline.Panel, table.Panel, bargauge.Panel)


# Profile units (facility/profiles) to Grafana's unit ids; others shown as a suffix.
GRAFANA_UNITS = {
    "Hz": "hertz", "A": "amp", "V": "volt", "kW": "kwatt", "kWh": "kwatth", "degC": "celsius",
    "m": "lengthm", "%": "percent", "s": "s", "ms": "ms", "count": "none", "none": "none",
    "": "none", "h": "h", "m3": "m3",
}  # fmt: skip


def grafana_unit(unit: str) -> str:
    return GRAFANA_UNITS.get(unit, f"suffix: {unit}")


def setup(panel: P, title: str, queries: Sequence[InfluxQL], w: int, h: int, about: str) -> P:
    """Title, size, the InfluxDB source, fixed resolution, targets named A, B, …"""
    panel.title(title).datasource(datasource_ref()).span(w).height(h)
    panel.max_data_points(MAX_POINTS).interval(MIN_INTERVAL)
    panel.targets([q.ref_id(chr(ord("A") + i)) for i, q in enumerate(queries)])
    if about:
        panel.description(about)
    return panel


def trend(
    title: str, queries: Sequence[InfluxQL], unit: str, w: int = 12, h: int = 8, about: str = ""
) -> timeseries.Panel:
    panel = setup(timeseries.Panel(), title, queries, w, h, about).unit(grafana_unit(unit))
    panel.line_width(1).fill_opacity(10).span_nulls(True)
    return _legend(panel)


def bars(
    title: str, queries: Sequence[InfluxQL], unit: str, w: int = 12, h: int = 8
) -> timeseries.Panel:
    panel = setup(timeseries.Panel(), title, queries, w, h, "").unit(grafana_unit(unit))
    return _legend(panel.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(60))


def _legend(panel: timeseries.Panel) -> timeseries.Panel:
    """Options set in full: without them the SDK writes `"options": null`, which the
    schema does not allow, and its model's default legend is hidden."""
    legend = cb.VizLegendOptions().show_legend(True).display_mode(cm.LegendDisplayMode.LIST)
    panel.legend(legend.placement(cm.LegendPlacement.BOTTOM).calcs([]))
    return panel.tooltip(
        cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.NONE)
    )


def states(
    title: str, queries: Sequence[InfluxQL], w: int = 24, h: int = 8, about: str = ""
) -> statetimeline.Panel:
    panel = setup(statetimeline.Panel(), title, queries, w, h, about)
    return (
        panel.mappings(bool_mappings("running", "stopped", "green", STOPPED_COLOUR))
        .merge_values(True)
        .show_value(cm.VisibilityMode.NEVER)
        .line_width(0)  # the schema requires both; Grafana's defaults
        .fill_opacity(70)
    )


def figure(
    title: str,
    queries: Sequence[InfluxQL],
    unit: str = "none",
    w: int = 6,
    h: int = 4,
    about: str = "",
) -> stat.Panel:
    panel = setup(stat.Panel(), title, queries, w, h, about).unit(unit)
    return panel.graph_mode(cm.BigValueGraphMode.NONE).color_mode(cm.BigValueColorMode.BACKGROUND)


def grid(
    title: str, queries: Sequence[InfluxQL], w: int = 24, h: int = 8, about: str = ""
) -> table.Panel:
    panel = setup(table.Panel(), title, queries, w, h, about)
    return panel.show_header(True).cell_height(cm.TableCellHeight.SM)  # options set: see _legend


def gauges(
    title: str, queries: Sequence[InfluxQL], unit: str, w: int = 24, h: int = 8, about: str = ""
) -> bargauge.Panel:
    panel = setup(bargauge.Panel(), title, queries, w, h, about).unit(grafana_unit(unit))
    return panel.orientation(cm.VizOrientation.HORIZONTAL).display_mode(
        cm.BarGaugeDisplayMode.GRADIENT
    )


def note(title: str, markdown: str, w: int = 24, h: int = 4) -> text.Panel:
    return text.Panel().title(title).content(markdown).mode(tm.TextMode.MARKDOWN).span(w).height(h)


def bool_mappings(
    true_text: str, false_text: str, true_colour: str = "green", false_colour: str | None = None
) -> list[dm.ValueMapping]:
    """Booleans as text and colour; InfluxDB sends them as true/false, rollups as 1/0.
    The false colour defaults to the other of red/green."""
    if false_colour is None:
        false_colour = "red" if true_colour == "green" else "green"
    return [
        dm.ValueMap(
            options={
                "true": dm.ValueMappingResult(text=true_text, color=true_colour, index=0),
                "false": dm.ValueMappingResult(text=false_text, color=false_colour, index=1),
                "1": dm.ValueMappingResult(text=true_text, color=true_colour, index=2),
                "0": dm.ValueMappingResult(text=false_text, color=false_colour, index=3),
            }
        )
    ]


def thresholds(levels: Sequence[Level]) -> db.ThresholdsConfig:
    """Grafana steps from alarm levels: colour below the lowest low-alarm, green in the
    normal band, each high-alarm's colour from its value up."""
    ordered = sorted(levels, key=lambda lv: lv.value)
    lows = [lv for lv in ordered if not lv.above]
    steps = [dm.Threshold(value=None, color=lows[0].colour if lows else "green")]
    for lv in ordered:
        if lv.above:
            colour = lv.colour
        else:
            higher = [lo for lo in lows if lo.value > lv.value]
            colour = higher[0].colour if higher else "green"
        steps.append(dm.Threshold(value=lv.value, color=colour))
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)


def shared_levels(facts: Facts, refs: Iterable[AssetRef], signal: str) -> list[Level]:
    """Levels every asset of the panel shares (a rule's number): panel defaults."""
    # assets without any level (out of service: no rules) do not cancel the others'
    sets = [frozenset(levels) for r in refs if (levels := facts.levels(r, signal))]
    return sorted(frozenset.intersection(*sets), key=lambda lv: lv.value) if sets else []


def per_asset(
    panel: P, facts: Facts, refs: Iterable[AssetRef], signal: str | None, label: str = "{path}"
) -> P:
    """One override per asset: its name from the site model, its own alarm levels as
    threshold lines, grey and marked when it is out of service."""
    refs = list(refs)
    if signal is not None:
        common = shared_levels(facts, refs, signal)
        if common:
            panel.thresholds(thresholds(common))
            _threshold_lines(panel)
    for ref in refs:
        props = [dm.DynamicConfigValue(id_val="displayName", value=display(ref))]
        levels = facts.levels(ref, signal) if signal else []
        if levels:
            props.append(
                dm.DynamicConfigValue(id_val="thresholds", value=thresholds(levels).build())
            )
            _threshold_lines(panel)
        if ref.asset.status is AssetStatus.OUT_OF_SERVICE:
            props += out_of_service(panel)
        panel.override_by_name(label.format(path=ref.path), props)
    return panel


def _threshold_lines(panel: P) -> None:
    if isinstance(panel, timeseries.Panel):
        style = cb.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.LINE_AND_AREA)
        panel.thresholds_style(style)


def row(title: str) -> db.Row:
    return db.Row(title)


def prop(name: str, value: object) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val=name, value=value)


def greyed() -> dm.DynamicConfigValue:
    return prop("color", {"mode": "fixed", "fixedColor": OUT_OF_SERVICE_COLOUR})


def out_of_service(panel: P) -> list[dm.DynamicConfigValue]:
    """Grey for an out-of-service series. A value mapping's colour beats the field
    colour in Grafana, so the panel's mappings are repeated for the series in grey, with
    "out of service" as their text; call after the panel's mappings are set."""
    defaults = panel._internal.field_config.defaults if panel._internal.field_config else None
    mappings = defaults.mappings if defaults else None
    if not mappings:
        return [greyed()]
    grey = [_greyed_mapping(m) for m in mappings]
    return [greyed(), prop("mappings", grey)]


def _greyed_mapping(mapping: dm.ValueMapping) -> dict[str, Any]:
    options = getattr(mapping, "options", None)
    if not isinstance(options, dict):
        raise TypeError(f"only value maps can be greyed, not {mapping!r}")
    grey = {
        value: {"text": "out of service", "color": OUT_OF_SERVICE_COLOUR, "index": result.index}
        for value, result in options.items()
    }
    return {"type": "value", "options": grey}
