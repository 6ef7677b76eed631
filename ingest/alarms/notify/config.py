"""The notifier's config file: people, crews and their rosters, routes, escalation.

One YAML file (sample: deploy/alarms/notify.yaml, reference: README.md here). It is read
in two passes: pydantic checks the shape (types, unknown fields), then `_Compiler` checks
the meaning (who is who, times, time zones, durations, Apprise URLs, secrets) and builds
the frozen `NotifyConfig` the stages use. Both passes collect every issue instead of
stopping at the first (pass two checks whatever pass one's errors leave intact), so one
run of `load_notify_config` lists all that is wrong, each with file, line and field.
Secrets never sit in the file: a contact or the broker names the environment variable
that holds them (`*_env`).
"""

from __future__ import annotations

import hashlib
import os
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import apprise
from pydantic import BeforeValidator, Field

from facility.durations import parse_duration
from facility.salvage import validate_salvaging
from facility.site import IDENT_PATTERN, Strict
from facility.sourcemap import ConfigError, ConfigIssue, SourceDoc, load_yaml
from ingest.alarms.links import AckLinks
from ingest.alarms.model import Priority

MQTT_CONTACT = "mqtt"
# Fills a secret's place when checking without secrets: an Apprise URL with it parses
# as it would with the real one, for the URL's schemes that take any text there.
STAND_IN_SECRET = "stand-in-secret-0123456789"
TOPIC_FIELDS = frozenset({"site", "person"})
_HANDOVER = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _text(value: Any) -> Any:
    """Durations may be written as numbers of seconds; keep them as text for pass two."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


DurationText = Annotated[str, BeforeValidator(_text)]
Ident = Annotated[str, Field(pattern=IDENT_PATTERN)]
Path_ = list[str | int]


# -- pass one: the shape of the file ---------------------------------------------------


class PersonSpec(Strict):
    id: Ident
    name: str = ""
    contacts: list[Any] = Field(min_length=1)  # Apprise URL, {url, *_env} or "mqtt"


class OverrideSpec(Strict):
    date: date
    on_duty: list[str] = Field(min_length=1)
    reason: str = ""


class RosterSpec(Strict):
    start: date  # the day the rotation's first entry takes the first shift
    handover: str | int = "08:00"  # int: YAML 1.1 reads an unquoted 16:00 as 960
    timezone: str = "Asia/Shanghai"
    rotation: list[Any] | None = None  # person ids or lists of them (teams); None: members
    overrides: list[OverrideSpec] = Field(default_factory=list)


class CrewSpec(Strict):
    id: Ident
    name: str = ""
    members: list[str] = Field(min_length=1)
    roster: RosterSpec
    escalate_to: dict[str, list[str]] = Field(default_factory=dict)  # tier -> people


class MatchSpec(Strict):
    site: str | list[str] = "*"
    station: str | list[str] = "*"
    asset: str | list[str] = "*"
    rule: str | list[str] = "*"


class RouteSpec(Strict):
    match: MatchSpec = MatchSpec()
    min_priority: Priority = Priority.LOW
    crew: str


class DefaultRouteSpec(Strict):
    min_priority: Priority = Priority.LOW
    crew: str


class TierSpec(Strict):
    name: Ident
    people: list[str] = Field(default_factory=list)  # a crew's escalate_to replaces it


class EscalationSpec(Strict):
    tiers: list[TierSpec] = Field(default_factory=list)
    after: dict[str, dict[str, DurationText]] = Field(default_factory=dict)


class DeliverySpec(Strict):
    retry_first: DurationText = "10s"
    retry_max: DurationText = "5m"
    give_up_after: DurationText = "24h"
    timeout: DurationText = "30s"


class MqttSpec(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    topic: str = "facility/v1/alarms/{site}"
    qos: Literal[0, 1, 2] = 1
    client_id: str = Field(default="facility-notifier", min_length=1)
    username: str | None = None
    password_env: str | None = None


class AckLinksSpec(Strict):
    base_url: str
    secret_env: str
    max_age: DurationText = "24h"


class NotifyFile(Strict):
    timezone: str = "Asia/Shanghai"  # event times of sites the notifier is not told about
    people: list[PersonSpec] = Field(min_length=1)
    crews: list[CrewSpec] = Field(min_length=1)
    routes: list[RouteSpec] = Field(default_factory=list)
    default_route: DefaultRouteSpec | None = None
    escalation: EscalationSpec = EscalationSpec()
    repeat_every: dict[str, DurationText] = Field(default_factory=dict)
    group_wait: DurationText = "30s"
    group_interval: DurationText = "1m"
    delivery: DeliverySpec = DeliverySpec()
    mqtt: MqttSpec | None = None
    ack_links: AckLinksSpec | None = None


# -- pass two: what the stages use ------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    """One way to reach a person. `id` is stable across restarts and safe to store (a
    hash of the configured text, which holds no secret); `label` is safe to show."""

    id: str
    label: str
    url: str | None  # the Apprise URL with its secrets filled in; None for MQTT

    @property
    def is_mqtt(self) -> bool:
        return self.url is None


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    contacts: tuple[Contact, ...]


@dataclass(frozen=True)
class Roster:
    start: date
    handover: time
    tz: ZoneInfo
    rotation: tuple[tuple[str, ...], ...]
    overrides: Mapping[date, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Crew:
    id: str
    name: str
    members: tuple[str, ...]
    roster: Roster
    escalate_to: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    crew: str
    min_priority: Priority
    site: tuple[str, ...] = ("*",)
    station: tuple[str, ...] = ("*",)
    asset: tuple[str, ...] = ("*",)
    rule: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class Tier:
    """An escalation tier after the crew on duty (which is tier 0)."""

    index: int
    name: str
    people: tuple[str, ...]


@dataclass(frozen=True)
class DeliveryPolicy:
    retry_first_s: float = 10.0
    retry_max_s: float = 300.0
    give_up_after_s: float = 86400.0
    timeout_s: float = 30.0


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    topic: str
    qos: int
    client_id: str
    username: str | None
    password: str | None


@dataclass(frozen=True)
class AckLinkSettings:
    base_url: str
    secret: str
    max_age_s: float

    def signer(self) -> AckLinks:
        return AckLinks(self.secret, self.base_url, self.max_age_s)


@dataclass(frozen=True)
class NotifyConfig:
    file: Path
    timezone: ZoneInfo
    people: Mapping[str, Person]
    crews: Mapping[str, Crew]
    routes: tuple[Route, ...]
    default_route: Route | None
    tiers: tuple[Tier, ...]
    # seconds after the crew on duty was told, per priority and tier index (1 = first
    # tier after the crew); a tier missing for a priority is never reached by it
    escalate_after: Mapping[Priority, Mapping[int, float]]
    repeat_every: Mapping[Priority, float]  # seconds; missing or 0: no repeats
    group_wait_s: float = 30.0
    group_interval_s: float = 60.0
    delivery: DeliveryPolicy = DeliveryPolicy()
    mqtt: MqttSettings | None = None
    ack_links: AckLinkSettings | None = None

    def person_name(self, person_id: str) -> str:
        person = self.people.get(person_id)
        return person.name if person is not None else person_id

    def tier_name(self, index: int) -> str:
        return "crew on duty" if index == 0 else self.tiers[index - 1].name

    def tier_people(self, crew_id: str, index: int) -> tuple[str, ...]:
        """Who tier `index` (>= 1) is for alarms of this crew: the crew's own choice for
        the tier, else the tier's people."""
        tier = self.tiers[index - 1]
        crew = self.crews.get(crew_id)
        if crew is not None and tier.name in crew.escalate_to:
            return crew.escalate_to[tier.name]
        return tier.people


def load_notify_config(path: Path, *, secrets: bool = True) -> NotifyConfig:
    """Load and check the notifier's config; raise ConfigError listing every issue:
    the shape errors and, for everything they leave intact, the meaning checks.
    `secrets=False` (`facility check`) checks the file without the secrets: a variable
    that is not set is no error then, and a contact whose URL needs it is checked as
    far as it can be without it."""
    doc = load_yaml(path)
    spec, issues, touched = validate_salvaging(NotifyFile, doc)
    if spec is None:
        raise ConfigError(issues)
    compiler = _Compiler(doc, secrets=secrets, refused=_refused_ids(doc, touched))
    config = compiler.compile(spec)
    issues += compiler.issues
    if issues:
        raise ConfigError(issues)
    return config


def _refused_ids(doc: SourceDoc, touched: set[tuple[str | int, ...]]) -> dict[str, set[str]]:
    """The ids of people and crews whose entries have shape errors: they are in the
    file, so naming them elsewhere is no second error."""
    out: dict[str, set[str]] = {"people": set(), "crews": set()}
    data = doc.data if isinstance(doc.data, dict) else {}
    for loc in touched:
        if len(loc) == 2 and loc[0] in out and isinstance(loc[1], int):
            items = data.get(loc[0])
            item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                out[str(loc[0])].add(item["id"])
    return out


class _Compiler:
    """Pass two. Every check appends to `issues` and goes on with a placeholder, so the
    later checks still run and everything wrong is reported in one go."""

    def __init__(
        self,
        doc: SourceDoc,
        secrets: bool = True,
        refused: Mapping[str, set[str]] | None = None,
    ) -> None:
        self.doc = doc
        self.secrets = secrets
        self.issues: list[ConfigIssue] = []
        self.people: set[str] = set()
        self.crews: set[str] = set()
        self.tiers: list[str] = []
        self.refused_people = set((refused or {}).get("people", ()))
        self.refused_crews = set((refused or {}).get("crews", ()))

    def issue(self, path: Path_, message: str) -> None:
        self.issues.append(self.doc.issue(path, message))

    def compile(self, spec: NotifyFile) -> NotifyConfig:
        self.tiers = [t.name for t in spec.escalation.tiers]
        self.crews = {c.id for c in spec.crews}
        people = self.compile_people(spec)
        crews = self.compile_crews(spec.crews)
        tiers = self.compile_tiers(spec.escalation.tiers)
        escalate_after = self.compile_escalate_after(spec.escalation.after)
        self.check_tiers_staffed(spec, tiers, escalate_after)
        return NotifyConfig(
            file=self.doc.file,
            timezone=self.zone(spec.timezone, ["timezone"]),
            people=people,
            crews=crews,
            routes=tuple(self.compile_route(r, ["routes", i]) for i, r in enumerate(spec.routes)),
            default_route=self.compile_default_route(spec.default_route),
            tiers=tiers,
            escalate_after=escalate_after,
            repeat_every=self.compile_repeat(spec.repeat_every),
            group_wait_s=self.duration(spec.group_wait, ["group_wait"]),
            group_interval_s=self.duration(spec.group_interval, ["group_interval"]),
            delivery=self.compile_delivery(spec.delivery),
            mqtt=self.compile_mqtt(spec.mqtt),
            ack_links=self.compile_ack_links(spec.ack_links),
        )

    # -- values -----------------------------------------------------------------------

    def duration(self, text: str, path: Path_) -> float:
        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            self.issue(path, str(exc))
            return 0.0
        if seconds < 0:
            self.issue(path, f"a duration cannot be negative: {text!r}")
            return 0.0
        return seconds

    def zone(self, name: str, path: Path_) -> ZoneInfo:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.issue(path, f"unknown time zone {name!r} (an IANA name, e.g. Asia/Shanghai)")
            return ZoneInfo("UTC")

    def priority(self, text: str, path: Path_) -> Priority | None:
        try:
            return Priority(text)
        except ValueError:
            names = ", ".join(p.value for p in Priority)
            self.issue(path, f"unknown priority {text!r} (one of {names})")
            return None

    def person_ref(self, person_id: str, path: Path_) -> str:
        if person_id not in self.people and person_id not in self.refused_people:
            self.issue(path, f"no person {person_id!r} in people")
        return person_id

    def env(self, name: str, path: Path_) -> str | None:
        value = os.environ.get(name)
        if value is None and self.secrets:
            self.issue(path, f"environment variable {name} is not set")
        return value

    # -- people -----------------------------------------------------------------------

    def compile_people(self, spec: NotifyFile) -> dict[str, Person]:
        people: dict[str, Person] = {}
        for i, p in enumerate(spec.people):
            if p.id in people:
                self.issue(["people", i, "id"], f"duplicate person id {p.id!r}")
                continue
            contacts = [
                self.contact(c, spec.mqtt is not None, ["people", i, "contacts", j])
                for j, c in enumerate(p.contacts)
            ]
            found = tuple(c for c in contacts if c is not None)
            people[p.id] = Person(p.id, p.name or p.id, found)
        self.people = set(people)
        return people

    def contact(self, raw: Any, have_mqtt: bool, path: Path_) -> Contact | None:
        if raw == MQTT_CONTACT:
            if not have_mqtt:
                self.issue(path, "contact mqtt needs the `mqtt` section (broker and topic)")
            return Contact(_contact_id(MQTT_CONTACT), MQTT_CONTACT, None)
        if isinstance(raw, str):
            return self.apprise_contact(raw, raw, path)
        if isinstance(raw, dict):
            return self.contact_with_secrets(raw, path)
        self.issue(path, "a contact is an Apprise URL, {url: ..., NAME_env: ...} or mqtt")
        return None

    def contact_with_secrets(self, raw: dict[Any, Any], path: Path_) -> Contact | None:
        template = raw.get("url")
        if not isinstance(template, str):
            self.issue(path, "a contact with secrets needs `url` (an Apprise URL)")
            return None
        secrets: dict[str, str] = {}
        unset = False  # a secret not at hand: the URL can only be checked so far
        for key, value in raw.items():
            if key == "url":
                continue
            if not (isinstance(key, str) and key.endswith("_env") and isinstance(value, str)):
                self.issue([*path, str(key)], "unknown field (only url and NAME_env: VARIABLE)")
                continue
            found = self.env(value, [*path, key])
            if found is None and not self.secrets:
                unset = True
            secrets[key.removesuffix("_env")] = quote(found or STAND_IN_SECRET, safe="")
        wanted = _placeholders(template)
        if wanted is None:
            self.issue([*path, "url"], "unbalanced { } in the URL")
            return None
        for name in sorted(wanted - secrets.keys()):
            self.issue([*path, "url"], f"{{{name}}} has no {name}_env naming its variable")
        for name in sorted(secrets.keys() - wanted):
            self.issue([*path, f"{name}_env"], f"the URL has no {{{name}}} to fill in")
        if wanted != secrets.keys():
            return None
        url = template.format(**secrets)
        if unset and apprise.Apprise.instantiate(url) is None:
            return Contact(_contact_id(template), _scheme(template), url)  # unjudged
        return self.apprise_contact(template, url, [*path, "url"])

    def apprise_contact(self, configured: str, url: str, path: Path_) -> Contact | None:
        # Any: Apprise's plugins are not annotated (url() is an untyped call for mypy)
        plugin: Any = apprise.Apprise.instantiate(url)
        if plugin is None:
            shown = _scheme(configured)
            self.issue(path, f"not a valid Apprise URL (scheme {shown!r}; see appriseit.com)")
            return None
        # privacy=True masks secrets; the query is Apprise's defaults spelled out: noise
        label = str(plugin.url(privacy=True)).split("?", 1)[0]
        return Contact(_contact_id(configured), label, url)

    # -- crews and rosters ------------------------------------------------------------

    def compile_crews(self, specs: Sequence[CrewSpec]) -> dict[str, Crew]:
        crews: dict[str, Crew] = {}
        for i, c in enumerate(specs):
            path: Path_ = ["crews", i]
            if c.id in crews:
                self.issue([*path, "id"], f"duplicate crew id {c.id!r}")
                continue
            members = self.members(c.members, [*path, "members"])
            crews[c.id] = Crew(
                id=c.id,
                name=c.name or c.id,
                members=members,
                roster=self.roster(c.roster, members, [*path, "roster"]),
                escalate_to=self.escalate_to(c.escalate_to, [*path, "escalate_to"]),
            )
        return crews

    def members(self, ids: Sequence[str], path: Path_) -> tuple[str, ...]:
        seen: set[str] = set()
        for j, person in enumerate(ids):
            self.person_ref(person, [*path, j])
            if person in seen:
                self.issue([*path, j], f"{person!r} is listed twice")
            seen.add(person)
        return tuple(ids)

    def roster(self, spec: RosterSpec, members: tuple[str, ...], path: Path_) -> Roster:
        rotation = (
            tuple((m,) for m in members)
            if spec.rotation is None
            else self.rotation(spec.rotation, members, [*path, "rotation"])
        )
        overrides: dict[date, tuple[str, ...]] = {}
        for k, o in enumerate(spec.overrides):
            for j, person in enumerate(o.on_duty):
                self.person_ref(person, [*path, "overrides", k, "on_duty", j])
            if o.date in overrides:
                self.issue([*path, "overrides", k, "date"], f"{o.date} is overridden twice")
            overrides[o.date] = tuple(o.on_duty)
        return Roster(
            start=spec.start,
            handover=self.handover(spec.handover, [*path, "handover"]),
            tz=self.zone(spec.timezone, [*path, "timezone"]),
            rotation=rotation,
            overrides=overrides,
        )

    def rotation(
        self, entries: Sequence[Any], members: tuple[str, ...], path: Path_
    ) -> tuple[tuple[str, ...], ...]:
        if not entries:
            self.issue(path, "an empty rotation leaves every shift without anyone")
        shifts: list[tuple[str, ...]] = []
        for j, entry in enumerate(entries):
            team = [entry] if isinstance(entry, str) else entry
            if not (isinstance(team, list) and team and all(isinstance(p, str) for p in team)):
                self.issue([*path, j], "a shift is a person id or a list of them (a team)")
                continue
            for k, person in enumerate(team):
                where: Path_ = [*path, j] if isinstance(entry, str) else [*path, j, k]
                if person not in members:
                    self.issue(where, f"{person!r} is not a member of this crew")
            shifts.append(tuple(team))
        return tuple(shifts)

    def handover(self, raw: str | int, path: Path_) -> time:
        if isinstance(raw, int):
            self.issue(path, 'write the time in quotes, e.g. "16:00" (YAML reads 16:00 as 960)')
            return time(8)
        found = _HANDOVER.match(raw)
        if found is None:
            self.issue(path, f'not a time of day HH:MM (00:00 to 23:59): "{raw}"')
            return time(8)
        return time(int(found[1]), int(found[2]))

    def escalate_to(self, raw: Mapping[str, list[str]], path: Path_) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for tier, people in raw.items():
            if tier not in self.tiers:
                self.issue([*path, tier], f"no escalation tier {tier!r} (tiers: {self.tiers})")
            for j, person in enumerate(people):
                self.person_ref(person, [*path, tier, j])
            out[tier] = tuple(people)
        return out

    # -- routes -----------------------------------------------------------------------

    def crew_ref(self, crew: str, path: Path_) -> None:
        if crew not in self.crews and crew not in self.refused_crews:
            self.issue(path, f"no crew {crew!r} in crews")

    def compile_route(self, spec: RouteSpec, path: Path_) -> Route:
        self.crew_ref(spec.crew, [*path, "crew"])
        m = spec.match
        return Route(
            crew=spec.crew,
            min_priority=spec.min_priority,
            site=_globs(m.site),
            station=_globs(m.station),
            asset=_globs(m.asset),
            rule=_globs(m.rule),
        )

    def compile_default_route(self, spec: DefaultRouteSpec | None) -> Route | None:
        if spec is None:
            return None
        self.crew_ref(spec.crew, ["default_route", "crew"])
        return Route(crew=spec.crew, min_priority=spec.min_priority)

    # -- escalation and repeats -------------------------------------------------------

    def compile_tiers(self, specs: Sequence[TierSpec]) -> tuple[Tier, ...]:
        seen: set[str] = set()
        for i, t in enumerate(specs):
            if t.name in seen:
                self.issue(["escalation", "tiers", i, "name"], f"duplicate tier {t.name!r}")
            seen.add(t.name)
            for j, person in enumerate(t.people):
                self.person_ref(person, ["escalation", "tiers", i, "people", j])
        return tuple(Tier(i + 1, t.name, tuple(t.people)) for i, t in enumerate(specs))

    def compile_escalate_after(
        self, raw: Mapping[str, Mapping[str, str]]
    ) -> dict[Priority, dict[int, float]]:
        out: dict[Priority, dict[int, float]] = {}
        for name, delays in raw.items():
            path: Path_ = ["escalation", "after", name]
            priority = self.priority(name, path)
            steps: dict[int, float] = {}
            for tier, text in delays.items():
                if tier not in self.tiers:
                    self.issue([*path, tier], f"no escalation tier {tier!r} (tiers: {self.tiers})")
                    continue
                steps[self.tiers.index(tier) + 1] = self.duration(text, [*path, tier])
            self.check_order(steps, path)
            if priority is not None:
                out[priority] = steps
        return out

    def check_order(self, steps: Mapping[int, float], path: Path_) -> None:
        """A later tier must be told later: the manager hears after the supervisor."""
        last: tuple[int, float] | None = None
        for index in sorted(steps):
            if last is not None and steps[index] <= last[1]:
                earlier = self.tiers[last[0] - 1]
                self.issue([*path, self.tiers[index - 1]], f"must be longer than {earlier}'s delay")
            last = (index, steps[index])

    def check_tiers_staffed(
        self,
        spec: NotifyFile,
        tiers: tuple[Tier, ...],
        escalate_after: Mapping[Priority, Mapping[int, float]],
    ) -> None:
        used = {index for steps in escalate_after.values() for index in steps}
        for tier in tiers:
            if tier.index not in used or tier.people:
                continue
            bare = [c.id for c in spec.crews if tier.name not in c.escalate_to]
            if bare:
                self.issue(
                    ["escalation", "tiers", tier.index - 1, "people"],
                    f"nobody to escalate to for crews {bare}: give the tier people, "
                    f"or the crews escalate_to.{tier.name}",
                )

    def compile_repeat(self, raw: Mapping[str, str]) -> dict[Priority, float]:
        out: dict[Priority, float] = {}
        for name, text in raw.items():
            priority = self.priority(name, ["repeat_every", name])
            seconds = self.duration(text, ["repeat_every", name])
            if priority is not None:
                out[priority] = seconds
        return out

    # -- delivery, MQTT, ack links ----------------------------------------------------

    def compile_delivery(self, spec: DeliverySpec) -> DeliveryPolicy:
        first = self.duration(spec.retry_first, ["delivery", "retry_first"])
        if first <= 0:
            self.issue(["delivery", "retry_first"], "must be more than 0 s")
        return DeliveryPolicy(
            retry_first_s=first or 1.0,
            retry_max_s=self.duration(spec.retry_max, ["delivery", "retry_max"]),
            give_up_after_s=self.duration(spec.give_up_after, ["delivery", "give_up_after"]),
            timeout_s=self.duration(spec.timeout, ["delivery", "timeout"]) or 30.0,
        )

    def compile_mqtt(self, spec: MqttSpec | None) -> MqttSettings | None:
        if spec is None:
            return None
        self.check_topic(spec.topic, ["mqtt", "topic"])
        password = None
        if spec.password_env:
            password = self.env(spec.password_env, ["mqtt", "password_env"])
        return MqttSettings(
            spec.host, spec.port, spec.topic, spec.qos, spec.client_id, spec.username, password
        )

    def check_topic(self, topic: str, path: Path_) -> None:
        fields = _placeholders(topic)
        if fields is None or not fields <= TOPIC_FIELDS:
            self.issue(path, "placeholders may be {site} and {person} only")
        if "+" in topic or "#" in topic or not topic.strip("/"):
            self.issue(path, "a topic to publish to has no wildcards (+, #) and is not empty")

    def compile_ack_links(self, spec: AckLinksSpec | None) -> AckLinkSettings | None:
        if spec is None:
            return None
        scheme = urlsplit(spec.base_url).scheme
        if scheme not in ("http", "https") or not urlsplit(spec.base_url).netloc:
            self.issue(["ack_links", "base_url"], "an http:// or https:// URL")
        secret = self.env(spec.secret_env, ["ack_links", "secret_env"])
        if secret is not None and len(secret) < 16:
            self.issue(
                ["ack_links", "secret_env"], f"{spec.secret_env} must hold 16 characters or more"
            )
        max_age = self.duration(spec.max_age, ["ack_links", "max_age"])
        return AckLinkSettings(spec.base_url, secret or "", max_age)


def _globs(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _placeholders(text: str) -> set[str] | None:
    """The {names} in a text; None if its braces do not parse."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        return None


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else url[:12]


def _contact_id(configured: str) -> str:
    return hashlib.sha256(configured.encode()).hexdigest()[:16]
