"""The site gateway daemon: drivers -> report by exception -> outbox -> uplink.

Every long-running piece (one worker per Modbus bus, the MQTT device subscriber, the
uplink, the health reporter) runs under a supervisor that restarts it if it dies and
counts the restart; a bus worker that stops completing polls is reported as stalled.
SIGTERM stops the drivers, waits briefly for batches in flight, says offline and closes
the outbox (everything not acknowledged stays in it for the next start). SIGHUP reloads
the site files and restarts only the bus workers whose devices changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from facility.aio import cancel_and_wait
from facility.clock import now_ms
from facility.config import SiteConfig
from facility.metrics import MetricsServer
from facility.profile import ModbusProfile, MqttProfile
from facility.site import Bus, GatewaySettings, Site, Station
from facility.wire import Reading
from gateway.metrics import gateway_samples, status_path, write_status
from gateway.modbus.poller import BusWorker, PolledDevice, build_device
from gateway.mqtt_devices.subscriber import MqttDevices, routes_for
from gateway.normalise import ReportByException
from gateway.outbox import Outbox, OutboxConfig, OutboxDiskFull
from gateway.telemetry import Counters, CpuMeter, RateMeter, health_readings, rss_mb
from gateway.uplink.mqtt import Uplink
from gateway.write_behind import WriteBehind

log = logging.getLogger(__name__)

RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0
STALL_FACTOR = 3.0
GATE_EVERY_S = 0.02  # how often overload control looks at the live backlog


@dataclass
class BusTask:
    worker: BusWorker
    task: asyncio.Task[None]
    spec: tuple[object, ...]  # what the worker was built from: equal spec, no restart


@dataclass
class Gateway:
    config: SiteConfig
    site_id: str
    station_id: str
    data_dir: Path
    uplink_address: tuple[str, int] | None = None  # override the site's uplink broker
    devices_address: tuple[str, int] | None = None  # override the site's device broker
    metrics_port: int | None = None  # override the site's gateway.metrics_port
    counters: Counters = field(default_factory=Counters)
    buses: dict[str, BusTask] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    mqtt: MqttDevices | None = None
    metrics: MetricsServer | None = None
    started_ms: int = field(default_factory=now_ms)
    _gate_open: bool = True
    _gate_checked: float = 0.0
    _gate_since: float = 0.0

    def __post_init__(self) -> None:
        settings = self.settings
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.outbox_path = self.data_dir / f"{self.site_id}-{self.station_id}.outbox.sqlite"
        self.status_path = status_path(self.data_dir, self.site_id, self.station_id)
        self.outbox = Outbox(
            self.outbox_path,
            OutboxConfig(
                max_bytes=int(settings.outbox_max_mb * 1024 * 1024),
                max_age_s=settings.outbox_max_age_h * 3600,
                sync=settings.outbox_sync,
                live_window_s=settings.live_window_s,
            ),
        )
        if self.uplink_address is not None:
            host, port = self.uplink_address
            uplink = settings.uplink.model_copy(update={"host": host, "port": port})
            settings = settings.model_copy(update={"uplink": uplink})
        self.uplink = Uplink(self.site_id, self.station_id, settings, self.outbox)
        self.rbe = ReportByException(
            settings.report_by_exception, int(settings.max_silence_s * 1000), self._deadbands()
        )
        self.write_behind = WriteBehind(self._store)

    @property
    def site(self) -> Site:
        return self.config.site(self.site_id)

    @property
    def station(self) -> Station:
        return self.site.station(self.station_id)

    @property
    def settings(self) -> GatewaySettings:
        return self.site.gateway

    def _deadbands(self) -> dict[tuple[str, str], float]:
        bands = {}
        for asset in self.station.assets:
            profile = self.config.profiles.get(asset.profile or "")
            for signal in profile.signals if profile else []:
                if signal.deadband is not None:
                    bands[(asset.id, signal.name)] = signal.deadband
        return bands

    # --- the data path ---------------------------------------------------------------

    def accept(self, readings: list[Reading]) -> bool:
        """Everything a driver acquired enters here, once, on its way to the outbox.
        True once committed (or nothing was left to keep); False: the disk is full."""
        kept = self.acquired(readings)
        return self._store(kept) if kept else True

    def _accept_polled(self, readings: list[Reading]) -> None:
        """Polled readings (a register can be read again: nothing to hold back) are
        committed with the rest of their short window (gateway/write_behind.py): one
        transaction for many polls."""
        kept = self.acquired(readings)
        if kept:
            self.write_behind.add(kept)

    def acquired(self, readings: list[Reading]) -> list[Reading]:
        """Every reading a driver acquired passes here once; returns those to keep."""
        self.counters.readings_in += len(readings)
        kept = self.rbe.filter(readings)
        self.counters.readings_suppressed += len(readings) - len(kept)
        return kept

    def _store(self, kept: list[Reading]) -> bool:
        try:
            self.outbox.put(kept)
        except OutboxDiskFull as exc:
            self.counters.readings_lost_disk_full += len(kept)
            log.error("outbox disk full, %d readings lost: %s", len(kept), exc)
            return False
        self.uplink.data_ready()
        return True

    def _may_poll(self) -> bool:
        """Overload control: while more than a batch of live readings waits for an uplink
        that could send it, new polls are skipped (and counted), so that sending and acks
        get the CPU first and the live lag stays short. An uplink that waits for acks or
        for its link is not short of CPU: polling goes on (the outbox keeps the backlog)."""
        now = time.monotonic()
        if now - self._gate_checked >= GATE_EVERY_S:
            self._gate_checked = now
            waiting = self.outbox.live_pending(now_ms())
            # Hysteresis: closed above a batch, open again below half of one, so the gate
            # does not flap with every batch sent.
            limit = self.settings.batch_max_readings // (1 if self._gate_open else 2)
            is_open = not self.uplink.can_send or waiting <= limit
            if is_open != self._gate_open:
                self._gate_open, self._gate_since = is_open, now
        return self._gate_open

    def _held_s(self) -> float:
        """How long overload control has been holding polls back (0 while open)."""
        return 0.0 if self._gate_open else time.monotonic() - self._gate_since

    # --- building the drivers --------------------------------------------------------

    def _bus_devices(self, bus: Bus) -> list[PolledDevice]:
        devices = []
        for asset in self.station.assets:
            if asset.modbus is None or asset.modbus.bus != bus.id:
                continue
            profile = self.config.profiles[asset.profile or ""]
            assert isinstance(profile, ModbusProfile)
            devices.append(
                build_device(
                    asset.id,
                    asset.modbus.unit_id,
                    profile,
                    asset.modbus.poll_s or self.settings.poll_s,
                    bus.max_gap,
                )
            )
        return devices

    def _bus_spec(self, bus: Bus) -> tuple[object, ...]:
        assets = tuple(
            (a, self.config.profiles.get(a.profile or ""))
            for a in self.station.assets
            if a.modbus is not None and a.modbus.bus == bus.id
        )
        return (bus, assets, self.settings.poll_s)

    def _start_bus(self, bus: Bus) -> None:
        devices = self._bus_devices(bus)
        if not devices:
            return
        worker = BusWorker(
            bus, devices, self._accept_polled, may_poll=self._may_poll, held_s=self._held_s
        )
        task = self._supervise(f"bus {bus.id}", worker.run)
        self.buses[bus.id] = BusTask(worker, task, self._bus_spec(bus))

    def _mqtt_devices(self) -> MqttDevices | None:
        assets = {
            a.id: p
            for a in self.station.assets
            if isinstance(p := self.config.profiles.get(a.profile or ""), MqttProfile)
        }
        if not assets:
            return None
        host, port = self.devices_address or (self.site.broker.host, self.site.broker.port)
        return MqttDevices(
            host,
            port,
            f"facility-gw-devices-{self.site_id}-{self.station_id}",
            routes_for(self.site_id, self.station_id, assets),
            self.accept,
            max_behind_ms=int(self.settings.outbox_max_age_h * 3600_000),
        )

    # --- supervision -----------------------------------------------------------------

    def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        async def guard() -> None:
            backoff = RESTART_MIN_S
            while True:
                started = time.monotonic()
                try:
                    await run()
                    log.error("%s ended by itself; restarting", name)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s failed; restarting in %.1f s", name, backoff)
                self.counters.task_restarts += 1
                if time.monotonic() - started > RESTART_MAX_S:
                    backoff = RESTART_MIN_S
                await asyncio.sleep(backoff)
                backoff = min(RESTART_MAX_S, backoff * 2)

        return asyncio.create_task(guard(), name=name)

    def stalled(self) -> list[str]:
        """Bus workers that have not finished a poll for several of their intervals."""
        out = []
        now = time.monotonic()
        for bus_id, bus in self.buses.items():
            longest = max(d.backoff_s() for d in bus.worker.devices)
            if now - bus.worker.last_poll_done > STALL_FACTOR * longest + bus.worker.bus.timeout_s:
                out.append(bus_id)
        return out

    # --- health ----------------------------------------------------------------------

    async def report_health(self) -> None:
        rates, cpu = RateMeter(), CpuMeter()
        while True:
            await asyncio.sleep(self.settings.health_every_s)
            self.accept(self.health(rates, cpu))
            self._write_status()

    def _write_status(self, running: bool = True) -> None:
        """For `facility gateway status` on the box: what the uplink cannot carry now."""
        try:
            write_status(self, self.status_path, running)
        except OSError as exc:  # a full disk: the outbox already says so, loudly
            log.warning("status file %s not written: %s", self.status_path, exc)

    async def serve_metrics(self) -> None:
        """/metrics, if a port is set; a port that cannot be had is an ERROR, and the
        gateway goes on delivering without it."""
        port = self.metrics_port if self.metrics_port is not None else self.settings.metrics_port
        if port is None:
            return
        server = MetricsServer(lambda: gateway_samples(self), self.settings.metrics_host, port)
        try:
            await server.start()
        except OSError as exc:
            log.error("metrics: cannot listen on %s:%d: %s", self.settings.metrics_host, port, exc)
            return
        except ImportError as exc:  # installed without the gateway extra
            log.error("metrics: %s; install facility-telemetry[gateway]", exc)
            return
        self.metrics = server

    def health(self, rates: RateMeter, cpu: CpuMeter) -> list[Reading]:
        now = now_ms()
        stats = self.outbox.stats()
        up = self.uplink.stats
        mono = time.monotonic()
        devices = [d for b in self.buses.values() for d in b.worker.devices]
        values: dict[str, float | int | bool | str] = {
            "outbox_readings": stats.readings,
            "outbox_bytes": stats.bytes,
            "outbox_oldest_age_s": round((now - stats.oldest_ts_ms) / 1000, 1)
            if stats.oldest_ts_ms
            else 0.0,
            "readings_in_per_s": round(rates.rate("in", self.counters.readings_in, mono), 1),
            "readings_out_per_s": round(rates.rate("out", up.readings_acked, mono), 1),
            "dropped_overflow": stats.dropped_readings_overflow,
            "dropped_age": stats.dropped_readings_age,
            "dropped_disk_full": self.counters.readings_lost_disk_full,
            "poll_overruns": sum(d.overruns for d in devices),
            **{
                f"poll_overruns_{bus_id}": sum(d.overruns for d in bus.worker.devices)
                for bus_id, bus in self.buses.items()
            },
            "devices_failing": sum(1 for d in devices if not d.status.ok),
            "device_errors": sum(d.status.failures for d in devices),
            "uplink_connected": up.connected,
            "in_flight_readings": self.uplink.in_flight_readings,
            "max_live_delay_ms": up.max_live_delay_ms,
            "uplink_error": up.error,
            "mqtt_rejected": sum(self.mqtt.rejected.values()) if self.mqtt else 0,
            "acks_malformed": up.acks_malformed,
            "mqtt_restamped": self.mqtt.restamped if self.mqtt else 0,
            "mqtt_unmatched": self.mqtt.unmatched if self.mqtt else 0,
            "mqtt_broker_error": self.mqtt.connect_error if self.mqtt else "",
            "task_restarts": self.counters.task_restarts,
            "stalled_tasks": len(self.stalled()),
            "rss_mb": round(rss_mb(), 1),
            "cpu_pct": round(cpu.percent(), 1),
        }
        up.max_live_delay_ms = 0
        return health_readings("gateway", now, values)

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        for bus in self.station.buses:
            self._start_bus(bus)
        self.mqtt = self._mqtt_devices()
        if self.mqtt is not None:
            self.tasks["mqtt devices"] = self._supervise("mqtt devices", self.mqtt.run)
        self.tasks["uplink"] = self._supervise("uplink", self.uplink.run)
        self.tasks["health"] = self._supervise("health", self.report_health)
        self._write_status()
        log.info(
            "gateway %s/%s started: %d buses, %d MQTT topics, outbox %s",
            self.site_id,
            self.station_id,
            len(self.buses),
            len(self.mqtt.routes) if self.mqtt else 0,
            self.outbox_path,
        )

    async def reload(self, config: SiteConfig) -> list[str]:
        """Apply a new configuration: restart only the bus workers whose devices changed."""
        self.config = config
        changed = []
        wanted = {b.id: b for b in self.station.buses}
        for bus_id in list(self.buses):
            if bus_id not in wanted or self._bus_spec(wanted[bus_id]) != self.buses[bus_id].spec:
                await cancel_and_wait(self.buses.pop(bus_id).task)
                changed.append(bus_id)
        for bus_id, bus in wanted.items():
            if bus_id not in self.buses:
                self._start_bus(bus)
                changed.append(bus_id)
        self.rbe.deadbands = self._deadbands()
        log.info(
            "reloaded: restarted buses %s, %d untouched",
            sorted(set(changed)),
            len(self.buses) - len(set(changed) & set(self.buses)),
        )
        return sorted(set(changed))

    async def stop(self, grace_s: float = 5.0) -> None:
        for bus in self.buses.values():
            await cancel_and_wait(bus.task)
        self.write_behind.flush()
        if "mqtt devices" in self.tasks:
            await cancel_and_wait(self.tasks.pop("mqtt devices"))
        await cancel_and_wait(self.tasks.pop("health"))
        await self.uplink.drain(grace_s)
        await self.uplink.say_offline()
        await cancel_and_wait(self.tasks.pop("uplink"))
        if self.metrics is not None:
            await self.metrics.stop()
        self._write_status(running=False)
        waiting = self.outbox.stats().readings
        self.outbox.close()
        log.info("gateway stopped; %d readings wait in the outbox", waiting)
