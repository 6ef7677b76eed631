"""InfluxQL text for the boards (schema: docs/ingest.md, "Schema in InfluxDB").

Trend queries read `"$rp"."<measurement>"`: the `rp` variable picks raw data or a
rollup. The rollups store `mean_<field>`, `min_<field>` and `max_<field>`, so a trend
selects its field by regex, `mean(/^(mean_)?flow_m3h$/)`: on raw data that is
`flow_m3h`, on a rollup `mean_flow_m3h`, and one panel serves every retention policy.
"Now" values (last, counts of stations) read the raw default policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Agg = Literal["mean", "max", "min"]
Tag = Literal["site", "station", "asset", "rule", "priority"]

ASSET_TAGS: tuple[Tag, ...] = ("site", "station", "asset")
ASSET_ALIAS = "$tag_site/$tag_station/$tag_asset"


def where(tags: Sequence[Tag], *extra: str) -> str:
    """Filters on the boards' variables (`$site`, …) plus the time range."""
    parts = [f'"{t}" =~ /^${t}$/' for t in tags] + list(extra) + ["$timeFilter"]
    return " AND ".join(parts)


def group(tags: Sequence[str]) -> str:
    return ", ".join(f'"{t}"' for t in tags)


def trend(
    measurement: str,
    field: str,
    filters: Sequence[Tag],
    by: Sequence[str] = ASSET_TAGS,
    agg: Agg = "mean",
) -> str:
    """A field over time from the selected retention policy, one series per `by`."""
    rolled = f"/^({agg}_)?{field}$/"
    return (
        f'SELECT {agg}({rolled}) FROM "$rp"."{measurement}" WHERE {where(filters)} '
        f"GROUP BY time($__interval), {group(by)} fill(none)"
    )


def last(
    measurement: str, fields: Sequence[str], filters: Sequence[Tag], by: Sequence[str] = ASSET_TAGS
) -> str:
    """The last value of each field in the range (a board's "now"), per `by`."""
    cols = ", ".join(f'last("{f}") AS "{f}"' for f in fields)
    return f'SELECT {cols} FROM "{measurement}" WHERE {where(filters)} GROUP BY {group(by)}'


def count_where_last(
    measurement: str,
    field: str,
    value: str,
    filters: Sequence[Tag],
    per: Sequence[str],
    by: Sequence[str] = (),
) -> str:
    """How many `per` groups (e.g. stations) have any asset whose last `field` in the
    range equals `value`; `max` of booleans is true if any is."""
    inner = (
        f'SELECT last("{field}") AS "v" FROM "{measurement}" WHERE {where(filters)} '
        f"GROUP BY {group((*per, 'asset'))}"
    )
    middle = f'SELECT max("v") AS "v" FROM ({inner}) GROUP BY {group(per)}'
    outer = f'SELECT count("v") AS "count" FROM ({middle}) WHERE "v" = {value}'
    return outer + (f" GROUP BY {group(by)}" if by else "")


ALARM_KEY = ("site", "station", "asset", "rule", "priority")
# Active at the end of the range: the last transition up to then, within 30 days.
_UNTIL_END = "time >= ${__to}ms - 30d AND time <= ${__to}ms"


def active_alarms(filters: Sequence[Tag]) -> str:
    inner = (
        'SELECT last("active") AS "active", last("state") AS "state", '
        'last("message") AS "message" FROM "alarm_event" WHERE '
        + " AND ".join([f'"{t}" =~ /^${t}$/' for t in filters] + [_UNTIL_END])
        + f" GROUP BY {group(ALARM_KEY)}"
    )
    # the outer GROUP BY keeps the alarm's tags as the table's columns
    return (
        f'SELECT "state", "message", "active" FROM ({inner}) WHERE "active" = true '
        f"GROUP BY {group(ALARM_KEY)}"
    )


def active_alarm_count(filters: Sequence[Tag]) -> str:
    inner = (
        'SELECT last("active") AS "active" FROM "alarm_event" WHERE '
        + " AND ".join([f'"{t}" =~ /^${t}$/' for t in filters] + [_UNTIL_END])
        + f" GROUP BY {group(ALARM_KEY)}"
    )
    return (
        f'SELECT count("active") AS "active" FROM ({inner}) WHERE "active" = true '
        'GROUP BY "priority"'
    )


def alarm_history(filters: Sequence[Tag]) -> str:
    return (
        'SELECT "event", "state", "message", "user", "comment" FROM "alarm_event" '
        f"WHERE {where(filters)} GROUP BY {group(ALARM_KEY)} ORDER BY time DESC LIMIT 1000"
    )


RAISED = "\"event\" = 'raised'"


def raised_per_interval(filters: Sequence[Tag]) -> str:
    return (
        f'SELECT count("active") FROM "alarm_event" WHERE {where(filters, RAISED)} '
        'GROUP BY time($__interval), "priority" fill(0)'
    )


def alarm_annotations() -> str:
    """Raised alarms on every board: the rule, priority and asset as annotation tags."""
    return (
        'SELECT "message", "rule", "priority", "station", "asset" FROM "alarm_event" '
        """WHERE "site" =~ /^$site$/ AND "event" = 'raised' AND $timeFilter"""
    )
