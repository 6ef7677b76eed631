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


def increase(
    measurement: str, field: str, filters: Sequence[Tag], by: Sequence[str] = ASSET_TAGS
) -> str:
    """A cumulative counter's increase per interval: the difference of each interval's
    max (on a rollup `max_<field>`), negative steps (a restart) left out."""
    rolled = f"/^(max_)?{field}$/"
    return (
        f'SELECT non_negative_difference(max({rolled})) FROM "$rp"."{measurement}" '
        f"WHERE {where(filters)} GROUP BY time($__interval), {group(by)} fill(none)"
    )


def last(
    measurement: str, fields: Sequence[str], filters: Sequence[Tag], by: Sequence[str] = ASSET_TAGS
) -> str:
    """The last value of each field in the range (a board's "now"), per `by`."""
    cols = ", ".join(f'last("{f}") AS "{f}"' for f in fields)
    return f'SELECT {cols} FROM "{measurement}" WHERE {where(filters)} GROUP BY {group(by)}'


# "Now" on a count tile: the last report must be at most this old at the end of the
# range, else the thing is silent, not running or online. Five missed polls at the
# slowest poll (60 s); gateways report health every 10 s.
FRESH = "5m"
RECENT = f"time > ${{__to}}ms - {FRESH} AND time <= ${{__to}}ms"


def count_where_last(
    measurement: str,
    field: str,
    value: str,
    filters: Sequence[Tag],
    per: Sequence[str],
    by: Sequence[str] = (),
) -> str:
    """How many `per` groups (e.g. stations) have any asset whose last `field`, reported
    within FRESH of the end of the range, equals `value`; `max` of booleans is true if
    any is. A group silent for longer is in no count (a silent gateway is not online)."""
    cond = " AND ".join([f'"{t}" =~ /^${t}$/' for t in filters] + [RECENT])
    inner = (
        f'SELECT last("{field}") AS "v" FROM "{measurement}" WHERE {cond} '
        f"GROUP BY {group((*per, 'asset'))}"
    )
    middle = f'SELECT max("v") AS "v" FROM ({inner}) GROUP BY {group(per)}'
    outer = f'SELECT count("v") AS "count" FROM ({middle}) WHERE "v" = {value}'
    return outer + (f" GROUP BY {group(by)}" if by else "")


def count_reporting(measurement: str, field: str, filters: Sequence[Tag]) -> str:
    """How many assets reported `field` within FRESH of the end of the range."""
    cond = " AND ".join([f'"{t}" =~ /^${t}$/' for t in filters] + [RECENT])
    inner = (
        f'SELECT last("{field}") AS "v" FROM "{measurement}" WHERE {cond} '
        f"GROUP BY {group(ASSET_TAGS)}"
    )
    return f'SELECT count("v") AS "count" FROM ({inner})'


ALARM_KEY = ("site", "station", "asset", "rule", "priority")
# On the board at the end of the range: the alarm's last transition up to then left it
# in any state but normal (ISA-18.2: a latched trip waiting for reset and a returned
# but unacknowledged alarm are still on the board, though `active` is false). The
# lookback is 400 days, longer than raw's 90-day retention where alarm_event lives, so
# the retention and not the query decides how old a standing (stale) alarm may be; it
# is still bounded, so a policy changed to keep events forever does not make every
# refresh scan all history.
_UNTIL_END = "time >= ${__to}ms - 400d AND time <= ${__to}ms"
ON_BOARD = "\"state\" != 'normal'"


def _last_transition(filters: Sequence[Tag], fields: Sequence[str]) -> str:
    cols = ", ".join(f'last("{f}") AS "{f}"' for f in fields)
    cond = " AND ".join([f'"{t}" =~ /^${t}$/' for t in filters] + [_UNTIL_END])
    return f'SELECT {cols} FROM "alarm_event" WHERE {cond} GROUP BY {group(ALARM_KEY)}'


def active_alarms(filters: Sequence[Tag]) -> str:
    inner = _last_transition(filters, ("state", "active", "message"))
    # the outer GROUP BY keeps the alarm's tags as the table's columns
    return (
        f'SELECT "state", "message", "active" FROM ({inner}) WHERE {ON_BOARD} '
        f"GROUP BY {group(ALARM_KEY)}"
    )


def active_alarm_count(filters: Sequence[Tag]) -> str:
    inner = _last_transition(filters, ("state",))
    return f'SELECT count("state") AS "active" FROM ({inner}) WHERE {ON_BOARD} GROUP BY "priority"'


def active_alarm_count_of(filters: Sequence[Tag], assets: Sequence[tuple[str, str, str]]) -> str:
    """Alarms on the board of the given assets (site, station, asset): alarm_event has
    no kind tag, so a kind's alarms are those of its assets."""
    of = " OR ".join(
        f"(\"site\" = '{a}' AND \"station\" = '{b}' AND \"asset\" = '{c}')" for a, b, c in assets
    )
    inner = _last_transition(filters, ("state",)).replace(" GROUP BY", f" AND ({of}) GROUP BY", 1)
    return f'SELECT count("state") AS "active" FROM ({inner}) WHERE {ON_BOARD}'


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
