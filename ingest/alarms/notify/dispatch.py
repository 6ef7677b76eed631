"""Stage one, dispatch: which crew an alarm belongs to, and who of it is told now.

Routes are tried in file order and the first whose globs match the alarm's site,
station, asset and rule, and whose `min_priority` the alarm reaches, names the crew; the
default route takes what none matched. Tier 0 of an alarm is the crew's shift on duty
at the moment of telling (so a reminder after a handover reaches the new shift); the
tiers after it are the escalation tiers' people, or the crew's own choice for a tier.
"""

from __future__ import annotations

from ingest.alarms.model import AlarmKey, Priority
from ingest.alarms.notify.config import NotifyConfig, Route
from ingest.alarms.notify.roster import on_duty_ms


def route_for(config: NotifyConfig, key: AlarmKey, priority: Priority) -> Route | None:
    for route in config.routes:
        if matches(route, key, priority):
            return route
    default = config.default_route
    if default is not None and priority.rank <= default.min_priority.rank:
        return default
    return None


def matches(route: Route, key: AlarmKey, priority: Priority) -> bool:
    if priority.rank > route.min_priority.rank:
        return False
    return key.matches(route.site, route.station, route.asset, route.rule)


def on_duty_people(config: NotifyConfig, crew_id: str, at_ms: int) -> tuple[str, ...]:
    crew = config.crews.get(crew_id)
    if crew is None:  # the crew left the config while its alarms were open
        return ()
    return on_duty_ms(crew, at_ms).people


def tier_recipients(config: NotifyConfig, crew_id: str, tier: int, at_ms: int) -> tuple[str, ...]:
    if tier == 0:
        return on_duty_people(config, crew_id, at_ms)
    if tier > len(config.tiers):
        return ()
    return config.tier_people(crew_id, tier)


def duty_board(config: NotifyConfig, at_ms: int) -> list[dict[str, object]]:
    """Who is on duty in each crew now, until when, and who hears next if nobody
    acknowledges: what `GET /api/rosters` answers."""
    board: list[dict[str, object]] = []
    for crew in config.crews.values():
        shift = on_duty_ms(crew, at_ms)
        board.append(
            {
                "crew": crew.id,
                "name": crew.name,
                "on_duty": [_person(config, p) for p in shift.people],
                "shift_started": shift.starts.isoformat(),
                "handover": shift.ends.isoformat(),
                "escalation": [
                    {"tier": t.name, "people": [_person(config, p) for p in people]}
                    for t in config.tiers
                    if (people := config.tier_people(crew.id, t.index))
                ],
            }
        )
    return board


def _person(config: NotifyConfig, person_id: str) -> dict[str, str]:
    return {"id": person_id, "name": config.person_name(person_id)}
