"""A simulated stretch of history, delivered as the gateways would have delivered it.

The simulators' physics runs on its own clock; every poll interval each station's
gateway view is taken (each polled device's values or its comms failure, the MQTT
devices' messages mapped by the gateway's own subscriber code, the gateway's health)
and handed to the ingest's store and alarm pipeline as a batch. A station whose uplink
is cut keeps its batches and delivers them when the link returns, as the outbox does.
A simulated crew acknowledges each alarm some minutes after it is raised.

Used to fill a real InfluxDB with a day of the demo site for the dashboards' and
reports' tests and for `facility history` (a board with something on it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from facility.config import SiteConfig
from facility.profile import MqttProfile
from facility.wire import Batch, Reading
from gateway.mqtt_devices.subscriber import TopicRoute, map_message, routes_for
from gateway.telemetry import health_readings
from ingest.alarms.book import AlarmActionError, AlarmBook, Transition
from ingest.alarms.kpi import AlarmKpis, Positions, compute, kpi_lines, positions_for
from ingest.alarms.model import AlarmKey
from ingest.alarms.notify import NotifyConfig
from ingest.alarms.pipeline import AlarmPipeline
from ingest.config import KpiSettings, Retention
from ingest.deadletters import DeadLetters
from ingest.influx import InfluxV1Writer, WriteResult
from ingest.schema import ROLLUP_CHUNK_MS, init_database, measurements, rollup_range
from ingest.store import InfluxStore
from ingest.validate import Validator
from simulators.engine import Advance, Simulation
from simulators.modbus_server import CommsFault, UnitFault
from simulators.physics.common import Value
from simulators.physics.parking import GateModel, ParkingLotModel
from simulators.physics.pump import PumpModel
from simulators.physics.tank import TankModel
from simulators.scenario import Scenario
from simulators.world import AssetKey

StationKey = tuple[str, str]
Lane = Literal["live", "backfill"]
KPI_EVERY_MS = 600_000
SIMULATED_CREW = "crew.simulated"


@dataclass
class GatewayView:
    """What each station's gateway reads from a Simulation at one poll."""

    sim: Simulation
    poll_s: float = 60.0
    device_errors: dict[StationKey, int] = field(default_factory=dict)
    _routes: dict[tuple[str, str, str, str], TopicRoute] = field(default_factory=dict)
    _modbus: dict[StationKey, list[AssetKey]] = field(default_factory=dict)

    def poll(self, step: Advance) -> dict[StationKey, list[Reading]]:
        """Every station's readings now, link up or not (the outbox keeps them)."""
        messages = self._device_messages(step)
        out: dict[StationKey, list[Reading]] = {}
        for site in self.sim.config.sites:
            for station in site.stations:
                key = (site.id, station.id)
                out[key] = self._polled(site.id, station.id) + messages.get(key, [])
        return out

    def _device_messages(self, step: Advance) -> dict[StationKey, list[Reading]]:
        out: dict[StationKey, list[Reading]] = {}
        # Whatever a device's message says, it reached the gateway after the last poll.
        since = self.sim.t_ms - int(self.poll_s * 1000) + 1
        for (site, station), msg in step.messages:
            route = self._route(site, station, msg.asset, msg.topic)
            payload = json.dumps(msg.payload).encode()
            # A reading keeps its device's time; a message without one is stamped when
            # it arrives, not at the next poll (one stamp would keep only the last).
            arrived = max(msg.t_ms, since)
            readings = map_message(route, payload, arrived).readings(route.asset, arrived)
            out.setdefault((site, station), []).extend(readings)
        return out

    def _polled(self, site: str, station: str) -> list[Reading]:
        sim = self.sim
        t, comms = sim.t_ms, sim.comms
        out: list[Reading] = []
        failing = 0
        for key in self._polled_assets(site, station):
            asset, fault = key[2], comms.get(key)
            out += device_status(asset, t, fault)
            if fault is None:
                out += [Reading(asset, s, t, v) for s, v in sim.values(key).items()]
            else:
                failing += 1
        errors = self.device_errors.get((site, station), 0) + failing
        self.device_errors[(site, station)] = errors
        return out + self._health(site, station, t, failing, errors)

    def _route(self, site: str, station: str, asset: str, topic: str) -> TopicRoute:
        """A device message's route, as the gateway's subscriber maps it; looked up in
        the config once per (asset, topic), not per message."""
        key = (site, station, asset, topic)
        route = self._routes.get(key)
        if route is None:
            config = self.sim.config
            profile = config.profiles[config.site(site).station(station).asset(asset).profile or ""]
            assert isinstance(profile, MqttProfile)
            routes = routes_for(site, station, {asset: profile})
            route = self._routes[key] = routes[profile.topic_for(topic, site, station, asset)]
        return route

    def _polled_assets(self, site: str, station: str) -> list[AssetKey]:
        """The station's Modbus assets in config order, found once per station."""
        keys = self._modbus.get((site, station))
        if keys is None:
            assets = self.sim.config.site(site).station(station).assets
            keys = [(site, station, a.id) for a in assets if a.modbus is not None]
            self._modbus[(site, station)] = keys
        return keys

    def _health(self, site: str, station: str, t: int, failing: int, errors: int) -> list[Reading]:
        up = (site, station, "gateway") not in self.sim.links_down
        values: dict[str, float | int | bool] = {
            "poll_overruns": 0,
            "devices_failing": failing,
            "device_errors": errors,
            "uplink_connected": up,
            # ASSUMPTION: what the real gateway measures at the demo's load (bench/)
            "max_live_delay_ms": 70 if up else 0,
            "rss_mb": 48.0,
        }
        return health_readings("gateway", t, values)


def device_status(asset: str, t: int, fault: UnitFault | None) -> list[Reading]:
    """The `device_status` readings a gateway derives from a poll's outcome."""
    kind = fault.kind if fault else None
    code = getattr(fault, "exception_code", 0) if kind is CommsFault.EXCEPTION else 0
    return [
        Reading(asset, "comm_ok", t, kind is None, "g", "s"),
        Reading(asset, "exception_code", t, code, "g", "s"),
    ]


@dataclass
class Outbox:
    """One station's undelivered polls while its uplink is down."""

    polls: list[list[Reading]] = field(default_factory=list)

    def depth(self) -> int:
        return sum(len(p) for p in self.polls)

    def oldest_age_s(self, now_ms: int) -> float:
        return (now_ms - self.polls[0][0].ts_ms) / 1000 if self.polls else 0.0


@dataclass
class HistoryResult:
    start_ms: int
    end_ms: int
    batches: int = 0
    readings: int = 0
    stored: int = 0
    refused: int = 0
    transitions: int = 0
    truth_start: dict[AssetKey, dict[str, Value]] = field(default_factory=dict)
    truth_end: dict[AssetKey, dict[str, Value]] = field(default_factory=dict)
    # Each tank's true level (the physics', before sensor noise) at its lowest and
    # highest poll: (poll time, level m).
    tank_low: dict[AssetKey, tuple[int, float]] = field(default_factory=dict)
    tank_high: dict[AssetKey, tuple[int, float]] = field(default_factory=dict)
    # The pumps running at each poll (poll time → pumps), for the boards' counts.
    running: dict[int, frozenset[AssetKey]] = field(default_factory=dict)


@dataclass
class SimulatedHistory:
    """Runs a Simulation for a scenario and delivers it to the ingest's store and alarm
    pipeline. The alarm book must run on this history's clock (`clock_ms`)."""

    config: SiteConfig
    scenario: Scenario
    start_ms: int
    poll_s: float = 60.0
    ack_after_s: float | None = 600.0
    step_s: float = 10.0  # physics step: coarser steps overshoot the level control
    # EEMUA's operator positions the KPIs are counted for (None: the sites, as an
    # ingest without a notifier counts them)
    positions: Positions | None = None
    sim: Simulation = field(init=False)
    view: GatewayView = field(init=False)
    outboxes: dict[StationKey, Outbox] = field(default_factory=dict)
    _boot_seq: int = 0

    def __post_init__(self) -> None:
        self.sim = Simulation(
            self.config,
            seed=self.scenario.seed or 1,
            start_ms=self.start_ms,
            scenario=self.scenario,
            step_s=min(self.step_s, self.poll_s),
        )
        self.view = GatewayView(self.sim, self.poll_s)

    def clock_ms(self) -> int:
        return self.sim.t_ms

    def truth(self) -> dict[AssetKey, dict[str, Value]]:
        """The physics' own values now, faults and comms aside: the ground truth. Car
        parks publish rather than hold registers: their counters are read off the model."""
        out: dict[AssetKey, dict[str, Value]] = {}
        for key, model in self.sim.world.models.items():
            if isinstance(model, GateModel):
                out[key] = {
                    "vehicles_in_total": model.count_in,
                    "vehicles_out_total": model.count_out,
                }
            elif isinstance(model, ParkingLotModel):
                out[key] = {"occupied": model.occupied, "capacity": model.capacity}
            else:
                out[key] = dict(model.values())
        return out

    async def run(
        self, store: InfluxStore, alarms: AlarmPipeline | None, duration_s: float
    ) -> HistoryResult:
        result = HistoryResult(self.start_ms, self.start_ms + int(duration_s * 1000))
        result.truth_start = self.truth()
        next_kpis = self.start_ms + KPI_EVERY_MS
        step = Advance()  # the first poll is at the start, the last one poll before the end
        while self.sim.t_ms < result.end_ms:
            self._track_truth(result)
            for batch in self._deliverable(self.view.poll(step)):
                await self._deliver(batch, store, alarms, result)
            if alarms is not None:
                result.transitions += len(await alarms.tick(self.sim.t_ms))
                await self._crew_acks(alarms)
                if self.sim.t_ms >= next_kpis:
                    next_kpis += KPI_EVERY_MS
                    await store.writer.write(kpi_lines(self._kpis(alarms.book)))
            step = self.sim.advance_to(self.sim.t_ms + int(self.poll_s * 1000))
        result.truth_end = self.truth()
        return result

    def _kpis(self, book: AlarmBook) -> AlarmKpis:
        sites = [s.id for s in self.config.sites]
        positions = self.positions
        if positions is None:
            positions = positions_for(KpiSettings(), None, sites)
        return compute(book, self.sim.t_ms, positions=positions, sites=sites)

    def _track_truth(self, result: HistoryResult) -> None:
        """Ground truth at each poll: tank levels' extremes and the running pumps, read
        off the models (not through `values()`, which adds sensor noise and draws from
        the models' random numbers)."""
        t = self.sim.t_ms
        running = set()
        for key, model in self.sim.world.models.items():
            if isinstance(model, PumpModel) and model.running:
                running.add(key)
            if not isinstance(model, TankModel):
                continue
            level = model.level_m
            if key not in result.tank_low or level < result.tank_low[key][1]:
                result.tank_low[key] = (t, level)
            if key not in result.tank_high or level > result.tank_high[key][1]:
                result.tank_high[key] = (t, level)
        result.running[t] = frozenset(running)

    def _deliverable(self, polls: dict[StationKey, list[Reading]]) -> Iterator[Batch]:
        now = self.sim.t_ms
        for (site, station), readings in polls.items():
            outbox = self.outboxes.setdefault((site, station), Outbox())
            outbox.polls.append(readings + self._outbox_health(outbox, now))
            if (site, station, "gateway") in self.sim.links_down:
                continue
            for poll in outbox.polls:
                self._boot_seq += 1
                lane: Lane = "live" if poll is outbox.polls[-1] else "backfill"
                yield Batch(site, station, 1, self._boot_seq, lane, now, poll)
            outbox.polls.clear()

    def _outbox_health(self, outbox: Outbox, now: int) -> list[Reading]:
        values: dict[str, float | int | bool] = {
            "outbox_readings": outbox.depth(),
            "outbox_oldest_age_s": outbox.oldest_age_s(now),
        }
        return health_readings("gateway", now, values)

    async def _deliver(
        self, batch: Batch, store: InfluxStore, alarms: AlarmPipeline | None, result: HistoryResult
    ) -> None:
        if isinstance(store.writer, PooledWriter):
            store.writer.owner = (batch.site, batch.station)
        try:
            outcome = await store(batch)
        finally:
            if isinstance(store.writer, PooledWriter):
                store.writer.owner = NO_STATION
        result.batches += 1
        result.readings += len(batch.readings)
        result.stored += outcome.stored
        result.refused += outcome.refused
        if alarms is not None:
            changes = await alarms.observe(batch.site, batch.station, outcome.valid, self.sim.t_ms)
            result.transitions += len(changes)

    async def _crew_acks(self, alarms: AlarmPipeline) -> None:
        if self.ack_after_s is None:
            return
        due = self.sim.t_ms - int(self.ack_after_s * 1000)
        acks = [
            t
            for alarm in alarms.book.active()
            if alarm.acked_ms is None and alarm.raised_ms is not None and alarm.raised_ms <= due
            for t in _ack(alarms.book, alarm.key)
        ]
        await alarms.publish(acks)


def _ack(book: AlarmBook, key: AlarmKey) -> list[Transition]:
    try:
        return [book.acknowledge(key, SIMULATED_CREW, "on site, looking at it")]
    except AlarmActionError:  # shelved or out of service: the crew leaves it
        return []


DAY_MS = 86_400_000


@dataclass(frozen=True)
class HistoryStart:
    start_ms: int
    note: str = ""  # why the start is not the one asked for, for the user


def history_start(
    start_ms: int | None,
    scenario: Scenario,
    duration_s: float,
    now_ms: int,
    keep_days: int = Retention().raw_days,
) -> HistoryStart:
    """Where a history begins: the given start; else the scenario's own (its faults'
    times are offsets from it, the demo's incidents are a morning's), moved by whole
    days to the last day it ends before now if it lies outside InfluxDB's raw
    retention (`keep_days`, 0: forever) or ends in the future; else `duration_s`
    before now."""
    length_ms = int(duration_s * 1000)
    if start_ms is not None:
        return HistoryStart(start_ms)
    if scenario.start is None:
        return HistoryStart(now_ms - length_ms)
    own = int(scenario.start.timestamp() * 1000)
    kept_from = now_ms - keep_days * DAY_MS if keep_days else None
    if own + length_ms <= now_ms and (kept_from is None or own >= kept_from):
        return HistoryStart(own)
    moved = own + (now_ms - length_ms - own) // DAY_MS * DAY_MS
    when = scenario.start.isoformat(sep=" ")
    why = "ends in the future" if own + length_ms > now_ms else "is older than the retention"
    shown = datetime.fromtimestamp(moved / 1000, scenario.start.tzinfo).isoformat(sep=" ")
    note = f"the scenario's start {when} {why}: the same time of day on {shown}"
    return HistoryStart(moved, note)


def open_pipeline(
    rules: Path, config: SiteConfig, book: Path, history: SimulatedHistory, store: InfluxStore
) -> AlarmPipeline:
    """The alarm pipeline on the history's clock, writing alarm events next to the data."""
    pipeline = AlarmPipeline.open(rules, config, book, store.writer)
    pipeline.book.now_ms = history.clock_ms
    return pipeline


NO_STATION: StationKey = ("", "")  # lines of no station's batch: alarm events, KPIs


@dataclass
class PooledWriter:
    """Gathers many small batches' lines into few large writes: a day of history is
    tens of thousands of polls, and one HTTP request each would take minutes.

    A flush holds many stations' lines, so what InfluxDB refuses is filed here, each
    line under the station whose batch wrote it (`owner` while it wrote), not under
    whichever batch happened to fill the pool; `write` answers for its own lines only."""

    writer: InfluxV1Writer
    dead_letters: DeadLetters
    flush_at: int = 20_000
    owner: StationKey = NO_STATION
    pending: list[tuple[str, StationKey]] = field(default_factory=list)
    refused: int = 0

    async def write(self, lines: Sequence[str]) -> WriteResult:
        self.pending.extend((line, self.owner) for line in lines)
        if len(self.pending) >= self.flush_at:
            await self.flush()
        return WriteResult(written=len(lines))

    async def flush(self) -> WriteResult:
        pending, self.pending = self.pending, []
        if not pending:
            return WriteResult()
        result = await self.writer.write([line for line, _ in pending])
        if result.rejected:
            owners = dict(pending)
            by_station: dict[StationKey, list[tuple[str, str]]] = {}
            for line, why in result.rejected:
                by_station.setdefault(owners.get(line, NO_STATION), []).append((line, why))
            for (site, station), refused in by_station.items():
                self.dead_letters.add_lines(site, station, refused)
            self.refused += len(result.rejected)
        return result


@dataclass(frozen=True)
class InfluxTarget:
    url: str
    database: str = "facility"
    timeout_s: float = 10.0  # per request; the rollup of a whole day is one query
    # The rollup's stretch per query (whole hours): larger is less of InfluxDB's CPU
    # for the same rows, and needs a longer timeout.
    rollup_chunk_ms: int = ROLLUP_CHUNK_MS


async def fill_influx(
    history: SimulatedHistory,
    target: InfluxTarget,
    data_dir: Path,
    rules: Path | None,
    duration_s: float,
    notify: NotifyConfig | None = None,
    pool_lines: int = 20_000,
) -> HistoryResult:
    """Create the schema, deliver the history, then roll it up (the continuous queries
    only look back minutes; this history may be days old). `notify`: the notifier's
    config, whose routes make the KPIs' operator positions (the crews), as in the
    ingest service; nobody is notified."""
    if notify is not None:
        sites = [s.id for s in history.config.sites]
        history.positions = positions_for(KpiSettings(), notify, sites)
    writer = InfluxV1Writer(target.url, target.database, timeout_s=target.timeout_s)
    try:
        await init_database(writer, target.database, Retention())
        dead_letters = DeadLetters(data_dir / "dead-letters.sqlite")
        pool = PooledWriter(writer, dead_letters, flush_at=pool_lines)
        store = InfluxStore(Validator(history.config), pool, dead_letters)
        alarms = None
        if rules is not None:
            alarms = open_pipeline(
                rules, history.config, data_dir / "alarms.sqlite", history, store
            )
        try:
            result = await history.run(store, alarms, duration_s)
            await pool.flush()
            result.refused += pool.refused
        finally:
            if alarms is not None:
                alarms.close()
            store.dead_letters.close()
        await rollup_range(
            writer,
            target.database,
            result.start_ms,
            result.end_ms,
            target.rollup_chunk_ms,
            await measurements(writer, target.database),
        )
        return result
    finally:
        await writer.close()
