"""Template variables: site from the site model, station and asset from InfluxDB
(chained on `$site`, so a station is selectable as soon as it reports), and the
retention policy trend panels read."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.influxql import datasource_ref

# Every variable's `id` is its name: the SDK writes the same all-zero UUID into each,
# and pre-Scenes Grafana keys variable state by id, so they would overwrite each other.

# Retention policies of `facility ingest init` (docs/ingest.md), shortest first.
RETENTION = (
    ("raw", "raw (90 days, every reading)"),
    ("rollup_1m", "rollup_1m (400 days, 1-minute mean/min/max)"),
    ("rollup_1h", "rollup_1h (forever, 1-hour mean/min/max)"),
)


def _options(pairs: Sequence[tuple[str, str]], all_option: bool) -> list[dm.VariableOption]:
    opts = [dm.VariableOption(text=text, value=value, selected=False) for value, text in pairs]
    if all_option:
        opts.insert(0, dm.VariableOption(text="All", value="$__all", selected=False))
    if not opts:  # nothing of the kind in the site model: Grafana fills it on refresh
        opts.append(dm.VariableOption(text="None", value="", selected=False))
    opts[0].selected = True
    return opts


def _custom_values(pairs: Sequence[tuple[str, str]]) -> str:
    """Grafana's custom-variable syntax `text : value, …`; commas in text escaped."""
    escaped = [(value, text.replace(",", "\\,")) for value, text in pairs]
    return ",".join(f"{text} : {value}" for value, text in escaped)


def site(pairs: Sequence[tuple[str, str]], multi: bool) -> db.CustomVariable:
    """(id, name) of the sites the board covers, from the site model."""
    var = db.CustomVariable("site").id("site").label("Site").values(_custom_values(pairs))
    var.options(_options(pairs, multi))
    first = _options(pairs, multi)[0]
    var.current(first)
    if multi:
        var.multi(True).include_all(True)
    return var


def tag(
    name: str, measurement: str, filters: Sequence[str], known: Sequence[str], multi: bool = True
) -> db.QueryVariable:
    """Values of tag `name` in `measurement` (a name, or a /regex/ for several) under
    the variables in `filters`. `known`
    (from the site model) seeds the options Grafana shows before its first refresh."""
    cond = " AND ".join(f'"{f}" =~ /^${f}$/' for f in filters)
    source = measurement if measurement.startswith("/") else f'"{measurement}"'  # a regex
    query = f'SHOW TAG VALUES FROM {source} WITH KEY = "{name}"'
    query += f" WHERE {cond}" if cond else ""
    var = db.QueryVariable(name).id(name).label(name.capitalize()).query(query)
    var.datasource(datasource_ref())
    var.refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
    pairs = [(k, k) for k in sorted(set(known))]
    var.options(_options(pairs, multi)).current(_options(pairs, multi)[0])
    if multi:
        var.multi(True).include_all(True)
    return var


def retention() -> db.CustomVariable:
    var = db.CustomVariable("rp").id("rp").label("Data").values(_custom_values(RETENTION))
    var.description(
        "Where trend panels read: raw readings, or the 1-minute / 1-hour rollups for "
        "ranges beyond raw retention or longer than a few days (faster)."
    )
    return var.options(_options(RETENTION, False)).current(_options(RETENTION, False)[0])
