"""The demo: a whole simulated site, its gateways, a broker and the ingest's receiver.

One process runs the simulated devices, one gateway per station (each with its own
outbox, its uplink through a link a scenario's `gateway_link_down` can cut), and the
receiving end of the ingest, around a private Mosquitto. Part-way through, the demo
stops the broker for a while, so the outboxes visibly fill up, then starts it again and
they drain, live data first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from dashboards.reports.commands import ReportSources, shift_handover
from dashboards.reports.periods import DEFAULT_HANDOVERS, shift_period
from facility.config import SiteConfig
from facility.site import Broker, Station, Uplink
from gateway.daemon import Gateway
from ingest.alarms.book import Transition
from ingest.config import AlarmSettings, InfluxV1Target, IngestConfig, IngestSettings
from ingest.influx import InfluxV1Writer
from ingest.receiver import Receiver
from ingest.schema import init_database
from ingest.service import IngestService
from ingest.store import InfluxStore
from simulators.clock import SimClock
from simulators.engine import FeedSource
from simulators.runner import DeviceClock, SiteRunner
from wiring.alarm_desk import AlarmDesk
from wiring.services import InfluxDB, Mosquitto, free_port

log = logging.getLogger(__name__)

DATABASE = "facility"
QUERIES = (
    ("tank levels now (m)", 'SELECT last("level_m") FROM "tank" GROUP BY "site", "asset"'),
    ("pump readings stored", 'SELECT count("flow_m3h") FROM "pump" GROUP BY "station"'),
    ("transformer peak load (%)", 'SELECT max("load_pct") FROM "transformer" GROUP BY "station"'),
    ("car-park occupancy now", 'SELECT last("occupied") FROM "parking_lot" GROUP BY "site"'),
    (
        "1-minute rollups of pump flow (continuous query)",
        'SELECT count("mean_flow_m3h") FROM "rollup_1m"."pump" GROUP BY "station"',
    ),
)

RATE_WINDOW_S = 15.0
# Per-minute figures of rate rules: the gateways stamp readings with the real clock while
# the physics runs `speed` times faster, so a level moves `speed` times more a minute.
RATE_FIELDS = ("max_rise_per_min", "max_fall_per_min", "deadband")


def rules_at_speed(rules: Path, speed: float, folder: Path) -> Path:
    """The rules file with its rate limits scaled to the demo's speed (itself at 1×)."""
    spec = yaml.safe_load(rules.read_text(encoding="utf-8"))
    rate_rules = {rid for rid, r in spec.get("rules", {}).items() if r.get("kind") == "rate"}
    if speed == 1 or not rate_rules:
        return rules
    for rid in rate_rules:
        _scale(spec["rules"][rid], speed)
    for override in spec.get("overrides", []):
        if override.get("rule") in rate_rules:
            _scale(override.get("set", {}), speed)
    folder.mkdir(parents=True, exist_ok=True)
    scaled = folder / f"rules-at-{speed:g}x.yaml"
    header = f"# {rules.resolve()} with its rate limits scaled by {speed:g} (facility demo)\n"
    scaled.write_text(header + yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
    return scaled


def _scale(fields: dict[str, object], speed: float) -> None:
    for name in RATE_FIELDS:
        value = fields.get(name)
        if isinstance(value, int | float):
            fields[name] = value * speed


@dataclass
class Outage:
    at_s: float
    for_s: float


@dataclass
class GatewayRow:
    gateway: str
    devices: str
    polled_per_s: float
    outbox: int
    in_flight: int
    uplink: str
    delivered: int


@dataclass
class Demo:
    config: SiteConfig
    source: FeedSource
    clock: SimClock
    run_dir: Path
    broker_port: int
    outage: Outage | None = None
    rules: Path | None = None  # alarm rules; None: no alarms
    notify: Path | None = None  # the notifier's sample config; None: no notifications
    api_port: int = 0  # the alarm API and console (0: any free port)
    crew_ack_after_s: float = 20.0
    desk: AlarmDesk | None = None
    crew_works: str = ""  # where the scripted crew acknowledges: console or API
    broker: Mosquitto = field(init=False)
    influxdb: InfluxDB = field(init=False)
    writer: InfluxV1Writer = field(init=False)  # the demo's own InfluxQL questions
    ingest: IngestService = field(init=False)
    runner: SiteRunner = field(init=False)
    gateways: list[Gateway] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _history: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)

    async def start(self) -> None:
        self._restart_clock(self.clock.start_ms)
        self.broker = Mosquitto(self.run_dir / "mosquitto", port=self.broker_port)
        self.broker.start()
        address = ("127.0.0.1", self.broker_port)
        # Every gateway's uplink goes through a cuttable link to the broker, so a
        # scenario's gateway_link_down cuts that station off as a lost modem would.
        self.runner = SiteRunner(
            self.config,
            self.source,
            self.clock,
            broker=Broker(host=address[0], port=address[1]),
            device_clock=DeviceClock.REAL,  # the gateways check device clocks against theirs
            uplink_target=address,
        )
        await self.runner.start()
        self.influxdb = InfluxDB(self.run_dir / "influxdb", http_port=free_port())
        self.influxdb.start()
        self.writer = InfluxV1Writer(self.influxdb.url, DATABASE)
        if self.rules is not None and self.notify is not None:
            self.desk = AlarmDesk(
                self.run_dir,
                self.notify,
                self.broker_port,
                self.api_port,
                self.events.append,
                self.crew_ack_after_s,
            )
            self.desk.start()
        settings = self._ingest_settings(address)
        await init_database(self.writer, DATABASE, settings.retention)
        self.ingest = IngestService(
            IngestConfig(self.run_dir / "ingest.yaml", settings, self.config)
        )
        if self.ingest.alarms is not None:
            self.ingest.alarms.listeners.append(self._alarm_events)
        await self.ingest.start()
        if self.desk is not None and self.ingest.alarms is not None and self.ingest.api:
            self.desk.api_url = self.ingest.api.url
            self.crew_works = await self.desk.sit_down_at_console()
            self.ingest.alarms.listeners.append(self.desk.on_transitions)
        for site in self.config.sites:
            for station in site.stations:
                gateway = Gateway(
                    self.config,
                    site.id,
                    station.id,
                    self.run_dir / "gateways",
                    uplink_address=self._uplink_of(site.id, station, address),
                    devices_address=address,
                )
                gateway.start()
                self.gateways.append(gateway)
        self.started = time.monotonic()

    def _uplink_of(
        self, site_id: str, station: Station, broker: tuple[str, int]
    ) -> tuple[str, int]:
        """Where the station's gateway sends its uplink: its link to the broker."""
        for asset in station.assets:
            link = self.runner.links.get((site_id, station.id, asset.id))
            if link is not None:
                return link.listen_host, link.listen_port
        return broker  # a station without a gateway asset has no link to cut

    def _ingest_settings(self, broker: tuple[str, int]) -> IngestSettings:
        """What deploy/ingest/ingest.yaml says, pointed at the demo's private servers."""
        return IngestSettings(
            site_config=str(self.config.root),
            client_id="facility-ingest-demo",
            broker=Uplink(host=broker[0], port=broker[1]),
            influxdb=InfluxV1Target(url=self.influxdb.url, database=DATABASE),
            data_dir=str((self.run_dir / "ingest").resolve()),
            alarms=self._alarm_settings(),
        )

    def _alarm_settings(self) -> AlarmSettings | None:
        if self.rules is None:
            return None
        rules = rules_at_speed(self.rules, self.clock.speed, self.run_dir / "alarms")
        if self.desk is None:
            return AlarmSettings(rules=str(rules.resolve()))
        return self.desk.settings(rules)

    async def _alarm_events(self, transitions: list[Transition]) -> None:
        for t in transitions:
            if t.suppressed:
                continue
            who = f" by {t.user}" + (f' "{t.comment}"' if t.comment else "") if t.user else ""
            self.events.append(
                f"{time.strftime('%H:%M:%S')} ALARM {t.event.upper()}{who} {t.priority} "
                f"{t.key}: {t.message} → {t.to_state}"
            )

    @property
    def receiver(self) -> Receiver:
        return self.ingest.receiver

    @property
    def store(self) -> InfluxStore:
        return self.ingest.store

    def _restart_clock(self, at_ms: int) -> None:
        """Simulated time from `at_ms` on, from now: starting the broker, InfluxDB and a
        browser takes seconds (many on a busy machine), minutes of simulated time at 60×
        that a scenario's first faults would spend with nothing polling them."""
        self.clock = SimClock(at_ms, self.clock.speed)
        if hasattr(self, "runner"):
            self.runner.clock = self.clock

    async def run(self, duration_s: float | None) -> None:
        self._restart_clock(self.source.t_ms)  # everything is up: the scenario runs now
        physics = asyncio.create_task(self.runner.run(duration_s))
        try:
            if self.outage is None:
                await physics
                return
            await self._outage(self.outage)
            await physics
        finally:
            physics.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await physics

    async def _outage(self, outage: Outage) -> None:
        await asyncio.sleep(outage.at_s)
        self.broker.stop()
        self.events.append(
            f"{time.strftime('%H:%M:%S')} broker STOPPED for {outage.for_s:.0f} s:"
            " gateways keep polling into their outboxes"
        )
        await asyncio.sleep(outage.for_s)
        self.broker.start()
        self.events.append(
            f"{time.strftime('%H:%M:%S')} broker back: live data first, backlog draining"
        )

    def rows(self) -> list[GatewayRow]:
        now = time.monotonic()
        out = []
        for gw in self.gateways:
            name = f"{gw.site_id}/{gw.station_id}"
            devices = [d for b in gw.buses.values() for d in b.worker.devices]
            ok = sum(1 for d in devices if d.status.ok)
            rate = self._rate(name, now, gw.counters.readings_in)
            stats = gw.outbox.stats()
            mqtt = gw.mqtt
            devices_text = f"{ok}/{len(devices)} Modbus ok" if devices else ""
            if mqtt is not None:
                devices_text += f"{mqtt.received} MQTT msgs"
            out.append(
                GatewayRow(
                    gateway=name,
                    devices=devices_text,
                    polled_per_s=rate,
                    outbox=stats.readings,
                    in_flight=gw.uplink.in_flight_readings,
                    uplink="up" if gw.uplink.stats.connected else "DOWN",
                    delivered=gw.uplink.stats.readings_acked,
                )
            )
        return out

    def _rate(self, name: str, now: float, total: int) -> float:
        """Readings per second over the last RATE_WINDOW_S (polls come every few seconds)."""
        history = self._history.setdefault(name, deque())
        history.append((now, total))
        while len(history) > 2 and now - history[1][0] >= RATE_WINDOW_S:
            history.popleft()
        first_t, first_n = history[0]
        return (total - first_n) / (now - first_t) if now > first_t else 0.0

    async def query_results(self) -> list[tuple[str, list[tuple[str, object]]]]:
        """A few InfluxQL answers, to show the readings really are in InfluxDB."""
        out = []
        for title, query in QUERIES:
            result = await self.writer.query(query)
            rows = []
            for series in result["results"][0].get("series", []):
                tag = series.get("tags", {})
                tags = "/".join(tag[k] for k in ("site", "station", "asset") if k in tag)
                rows.append((tags, series["values"][0][1]))
            out.append((title, rows))
        return out

    def shift_handover(self) -> Path | None:
        """The handover report of the shift now running, from the demo's own InfluxDB
        and alarm book: what the next shift would read."""
        ingest = self.ingest.config
        if self.ingest.alarms is None:
            return None
        tz = ZoneInfo(self.config.sites[0].timezone)
        sources = ReportSources(
            self.influxdb.url,
            DATABASE,
            ingest.alarm_book_path,
            ingest.data_dir / "notify.sqlite" if self.ingest.notifier else None,
        )
        period = shift_period(datetime.now(tz), tz, DEFAULT_HANDOVERS)
        page, stem = shift_handover(self.config, sources, period)
        target = (self.run_dir / "reports" / f"{stem}.html").resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page, encoding="utf-8")
        return target

    async def stop(self) -> None:
        await asyncio.gather(*(gateway.stop(grace_s=2.0) for gateway in self.gateways))
        await self.ingest.stop()
        if self.desk is not None:
            await self.desk.stop()
        await self.runner.stop()
        await self.writer.close()
        self.influxdb.stop()
        self.broker.stop()
