"""The ingest service's own config file: broker, InfluxDB, share of the load, retention.

One YAML file per ingest instance (see deploy/ingest/ingest.yaml). Secrets are never in
the file: it names the environment variable that holds them. Paths are relative to the
file. Every mistake is reported with file, line and field, all at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from facility.config import SiteConfig, load_site_config
from facility.site import IDENT_PATTERN, Strict, Uplink
from facility.sourcemap import ConfigError, ConfigIssue, SourceDoc, load_yaml, validate


class InfluxV1Target(Strict):
    """InfluxDB 1.x, or the v1 compatibility API of 2.x/3.x (database + retention policy)."""

    api: Literal["v1"] = "v1"
    url: str = "http://127.0.0.1:8086"
    database: str = Field(default="facility", min_length=1)
    retention_policy: str | None = None  # None: the database's default policy
    username: str | None = None
    password_env: str | None = None


class InfluxV2Target(Strict):
    """The v2 API (`/api/v2/write`): InfluxDB 1.8+, 2.x, 3.x, Cloud, VictoriaMetrics."""

    api: Literal["v2"]
    url: str
    org: str = ""
    bucket: str = Field(min_length=1)
    token_env: str | None = None


def _api(value: Any) -> str:
    """`api` picks the model; left out, it is v1."""
    found = value.get("api", "v1") if isinstance(value, dict) else getattr(value, "api", "v1")
    return str(found)


InfluxTarget = Annotated[
    Annotated[InfluxV1Target, Tag("v1")] | Annotated[InfluxV2Target, Tag("v2")],
    Discriminator(_api),
]


class WriteSettings(Strict):
    batch_lines: int = Field(default=5000, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    backoff_cap_s: float = Field(default=10.0, gt=0)


class Subscription(Strict):
    """Which gateways this instance serves. `sites` partitions the load by site (each
    instance owns a topic set); `shared_group` spreads it over every instance of the group
    (MQTT shared subscription). Both together: the group shares those sites."""

    sites: list[Annotated[str, Field(pattern=IDENT_PATTERN)]] = Field(default_factory=list)
    shared_group: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")] | None = None


class Retention(Strict):
    """Retention of raw data and of the 1-minute and 1-hour rollups, in days (0: forever)."""

    raw_days: int = Field(default=90, ge=0)
    rollup_1m_days: int = Field(default=400, ge=0)
    rollup_1h_days: int = Field(default=0, ge=0)


class ApiSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    tokens: str  # the API users file (token hashes and roles), relative to this file


Globs = str | list[str]


class PositionMatch(Strict):
    """Globs (*, ?) on the alarm key, like the notifier's routes."""

    site: Globs = "*"
    station: Globs = "*"
    asset: Globs = "*"
    rule: Globs = "*"


class PositionSpec(Strict):
    """Alarms matching `match` are read and answered at `position` (first match wins)."""

    position: Annotated[str, Field(pattern=IDENT_PATTERN)]
    match: PositionMatch


class KpiSettings(Strict):
    """Alarm KPIs (EEMUA 191): how often they are written to InfluxDB, and the operator
    positions the alarm rate is counted for. Without `positions` a position is the crew
    the notifier routes an alarm to, or the site when no notifier (or route) has it."""

    write_every_s: float = Field(default=600.0, gt=0)
    positions: list[PositionSpec] = Field(default_factory=list)


class AlarmSettings(Strict):
    rules: str  # the rules file, relative to this file
    tick_s: float = Field(default=5.0, gt=0)  # gateway deadman, shelf expiry, notifier
    notify: str | None = None  # the notifier's file (crews, roster, routes, escalation)
    api: ApiSettings | None = None  # the alarm API and console
    kpi: KpiSettings = KpiSettings()


class DeadLetterSettings(Strict):
    """Bounds of the dead-letter store (docs/ingest.md#dead-letters): what arrives is
    anyone's, so neither one letter nor all of them may grow without limit."""

    max_mb: int = Field(default=1024, gt=0)  # when full: replayed letters go, then new ones
    max_body_kb: int = Field(default=64, gt=0)  # a row or line letter is cut past this
    max_payload_kb: int = Field(default=4096, gt=0)  # an undecodable batch's payload


class IngestSettings(Strict):
    site_config: str  # the site folder (or file), relative to this file
    client_id: str = Field(default="facility-ingest", min_length=1)
    broker: Uplink = Uplink()
    subscription: Subscription = Subscription()
    influxdb: InfluxTarget = InfluxV1Target()
    write: WriteSettings = WriteSettings()
    retention: Retention = Retention()
    data_dir: str = "run/ingest"  # the dead-letter store lives here; relative to this file
    health_every_s: float = Field(default=10.0, gt=0)
    dead_letters: DeadLetterSettings = DeadLetterSettings()
    # Prometheus /metrics on this local port (off when unset; `--metrics-port` overrides)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    alarms: AlarmSettings | None = None  # None: store readings, evaluate no alarms


class IngestFile(Strict):
    ingest: IngestSettings


class IngestConfig:
    """Settings plus the site model they point at, with paths resolved."""

    def __init__(self, file: Path, settings: IngestSettings, site: SiteConfig) -> None:
        self.file = file
        self.settings = settings
        self.site = site
        self.data_dir = (file.parent / settings.data_dir).resolve()

    @property
    def dead_letters_path(self) -> Path:
        return self.data_dir / "dead-letters.sqlite"

    @property
    def alarm_book_path(self) -> Path:
        return self.data_dir / "alarms.sqlite"

    def relative(self, path: str) -> Path:
        return (self.file.parent / path).resolve()

    def secret(self, env: str | None) -> str | None:
        return os.environ.get(env) if env else None


def load_ingest_config(path: Path) -> IngestConfig:
    doc = load_yaml(path)
    settings = validate(IngestFile, doc).ingest
    site_path = (path.parent / settings.site_config).resolve()
    try:
        site = load_site_config(site_path)
    except ConfigError as exc:
        where = doc.issue(["ingest", "site_config"], f"the site config {site_path} has errors")
        raise ConfigError([where, *exc.issues]) from exc
    issues = _check(settings, site, doc)
    if issues:
        raise ConfigError(issues)
    config = IngestConfig(path, settings, site)
    if settings.alarms is not None:
        _check_rules(config, doc)
    return config


def _check_rules(config: IngestConfig, doc: SourceDoc) -> None:
    """The alarm files are checked at start too: a typo in a rule, a roster or a token
    file stops the start with its file and line, rather than failing later."""
    from ingest.alarms.notify import load_notify_config  # the alarm packages are heavier
    from ingest.alarms.rules import RuleSet, load_rules
    from ingest.api.auth import Tokens, TokensError

    alarms = config.settings.alarms
    assert alarms is not None
    issues: list[ConfigIssue] = []
    loaded: dict[str, object] = {}
    checks: list[tuple[str, str | None, Callable[[Path], object]]] = [
        ("rules", alarms.rules, lambda path: load_rules(path, config.site)),
        ("notify", alarms.notify, load_notify_config),
        ("api", alarms.api.tokens if alarms.api else None, Tokens.load),
    ]
    for field, name, load in checks:
        if name is None:
            continue
        path = config.relative(name)
        where = ["ingest", "alarms", field] + (["tokens"] if field == "api" else [])
        try:
            loaded[field] = load(path)
        except ConfigError as exc:
            issues += [doc.issue(where, f"{path} has errors"), *exc.issues]
        except TokensError as exc:
            issues.append(doc.issue(where, str(exc)))
    rules = loaded.get("rules")
    rule_ids = set(rules.rules) if isinstance(rules, RuleSet) else None
    issues += _check_positions(alarms.kpi, config.site, rule_ids, doc)
    if issues:
        raise ConfigError(issues)


_GLOB = re.compile(r"[*?\[]")


def _check_positions(
    kpi: KpiSettings, site: SiteConfig, rule_ids: set[str] | None, doc: SourceDoc
) -> list[ConfigIssue]:
    """A name without glob characters in `alarms.kpi.positions` must exist: a typo would
    leave the position without its alarms and nobody would notice."""
    known = {
        "site": {s.id for s in site.sites},
        "station": {st.id for s in site.sites for st in s.stations},
        "asset": {ref.asset.id for ref in site.assets()} | {"gateway"},
        "rule": rule_ids,
    }
    where = {"site": "the site config", "station": "any site", "asset": "any station"}
    issues: list[ConfigIssue] = []
    for i, spec in enumerate(kpi.positions):
        for part, names in known.items():
            value = getattr(spec.match, part)
            values = [value] if isinstance(value, str) else value
            for j, name in enumerate(values):
                if names is None or _GLOB.search(name) or name in names:
                    continue
                path: list[str | int] = ["ingest", "alarms", "kpi", "positions", i, "match", part]
                if not isinstance(value, str):
                    path.append(j)
                at = where.get(part, "the rules file")
                issues.append(doc.issue(path, f"no {part} {name!r} in {at}"))
    return issues


def _check(settings: IngestSettings, site: SiteConfig, doc: SourceDoc) -> list[ConfigIssue]:
    known = {s.id for s in site.sites}
    issues = [
        doc.issue(["ingest", "subscription", "sites", i], f"no site {name!r} in the site config")
        for i, name in enumerate(settings.subscription.sites)
        if name not in known
    ]
    for field, env in _secrets(settings):
        if env and env not in os.environ:
            issues.append(doc.issue(field, f"environment variable {env} is not set"))
    return issues


def _secrets(settings: IngestSettings) -> list[tuple[list[str | int], str | None]]:
    target = settings.influxdb
    secret: tuple[list[str | int], str | None] = (
        (["ingest", "influxdb", "password_env"], target.password_env)
        if isinstance(target, InfluxV1Target)
        else (["ingest", "influxdb", "token_env"], target.token_env)
    )
    return [(["ingest", "broker", "password_env"], settings.broker.password_env), secret]
