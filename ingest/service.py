"""The ingest service: receiver → validate → InfluxDB → ack, plus its own health.

`facility ingest run --config FILE` runs one IngestService. Nothing here assumes it is
the only instance: it serves the gateways its subscription names (docs/ingest.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from facility.aio import cancel_and_wait, honour_cancellation
from facility.clock import now_ms
from facility.config import SiteConfig
from facility.metrics import MetricsServer
from facility.wire import BadRow, Batch
from ingest.alarms.book import Transition
from ingest.alarms.engine import AlarmEngine
from ingest.alarms.kpi import DAY_MS, AlarmKpis, Positions, compute, kpi_lines, positions_for
from ingest.alarms.notify import Notifier, load_notify_config
from ingest.alarms.notify.dispatch import duty_board
from ingest.alarms.pipeline import AlarmPipeline
from ingest.alarms.rules import load_rules
from ingest.api import ApiServer, AuditLog, Tokens, create_app
from ingest.config import AlarmSettings, InfluxV1Target, IngestConfig, IngestSettings
from ingest.deadletters import DeadLetters
from ingest.influx import InfluxAuthError, InfluxError, InfluxV1Writer, WriteResult
from ingest.lineproto import encode_point
from ingest.metrics import ingest_samples
from ingest.receiver import Receiver, subscription_topics
from ingest.store import InfluxStore, StoreResult
from ingest.validate import Validator

log = logging.getLogger(__name__)

AUTH_ALARM_EVERY_S = 30.0
BROKER_START_WAIT_S = 5.0  # at start, for the subscription before saying we serve
DEAD_LETTER_LOG_EVERY_S = 60.0  # a burst of dead letters is told at most this often


class Writer(Protocol):
    async def write(self, lines: Sequence[str]) -> WriteResult: ...

    async def close(self) -> None: ...


def make_writer(config: IngestConfig) -> Writer:
    target, write = config.settings.influxdb, config.settings.write
    options: dict[str, Any] = {
        "timeout_s": write.timeout_s,
        "max_lines": write.batch_lines,
        "max_retries": write.max_retries,
        "backoff_cap_s": write.backoff_cap_s,
    }
    if isinstance(target, InfluxV1Target):
        return InfluxV1Writer(
            target.url,
            target.database,
            retention_policy=target.retention_policy,
            username=target.username,
            password=config.secret(target.password_env),
            **options,
        )
    from ingest.influx_v2 import InfluxV2Writer  # influxdb-client is only needed for v2

    token = config.secret(target.token_env) or ""
    return InfluxV2Writer(target.url, target.org, target.bucket, token, **options)


def restart_notes(running: IngestConfig, settings: IngestSettings) -> list[str]:
    """The ingest config's sections that changed on disk and are only read at the start
    (the site model, the rules and the notifier's file are reloaded, not these)."""
    now, then = settings.model_dump(), running.settings.model_dump()
    changed = [k for k in now if k not in ("site_config", "alarms") and now[k] != then[k]]
    if now["alarms"] != then["alarms"]:
        changed.append("alarms")
    return [
        f"{running.file}: ingest.{name} changed: takes effect after a restart" for name in changed
    ]


@dataclass
class IngestService:
    config: IngestConfig
    writer: Writer = field(init=False)
    dead_letters: DeadLetters = field(init=False)
    validator: Validator = field(init=False)
    store: InfluxStore = field(init=False)
    receiver: Receiver = field(init=False)
    alarms: AlarmPipeline | None = None
    notifier: Notifier | None = None
    api: ApiServer | None = None
    metrics: MetricsServer | None = None
    metrics_port: int | None = None  # overrides the config's metrics_port
    positions: Positions = field(default_factory=Positions)
    auth_failing: bool = False
    _last_auth_alarm: float = 0.0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _letters_seen: int = 0  # refused + malformed at the last dead-letter report
    _letters_told: float = 0.0

    def __post_init__(self) -> None:
        settings = self.config.settings
        self.writer = make_writer(self.config)
        letters = settings.dead_letters
        self.dead_letters = DeadLetters(
            self.config.dead_letters_path,
            max_bytes=letters.max_mb * 1_000_000,
            max_body_bytes=letters.max_body_kb * 1024,
            max_payload_bytes=letters.max_payload_kb * 1024,
        )
        self.validator = Validator(self.config.site)
        self.store = InfluxStore(self.validator, self.writer, self.dead_letters)
        broker = settings.broker
        self.receiver = Receiver(
            broker.host,
            broker.port,
            self._store,
            client_id=settings.client_id,
            username=broker.username,
            password=self.config.secret(broker.password_env),
            tls_context=ssl.create_default_context(cafile=broker.ca_file) if broker.tls else None,
            topics=subscription_topics(
                settings.subscription.sites, settings.subscription.shared_group
            ),
            quarantine=self.dead_letters.add_batch,
        )
        if settings.alarms is not None:
            self._open_alarms(settings.alarms)

    def _open_alarms(self, settings: AlarmSettings) -> None:
        self.alarms = AlarmPipeline.open(
            self.config.relative(settings.rules),
            self.config.site,
            self.config.alarm_book_path,
            self.writer,
        )
        links = None
        if settings.notify is not None:
            notify = load_notify_config(self.config.relative(settings.notify))
            links = notify.ack_links.signer() if notify.ack_links else None
            self.notifier = Notifier(
                notify,
                self.alarms.book,
                links,
                self.config.data_dir / "notify.sqlite",
                site_timezones={s.id: s.timezone for s in self.config.site.sites},
            )
            self.alarms.listeners.append(self.notifier.on_transitions)
            self.alarms.listeners.append(self._wake_notifier)
        routed = self.notifier.config if self.notifier is not None else None
        self.positions = positions_for(settings.kpi, routed, self._site_ids())
        if settings.api is not None:
            app = create_app(
                self.alarms.book,
                self.alarms,
                Tokens.load(self.config.relative(settings.api.tokens)),
                AuditLog(self.config.data_dir / "audit.sqlite"),
                links,
                rosters=self._rosters if self.notifier is not None else None,
                kpis=self._kpis,
                deliveries=self.notifier,
                known_asset=self._known_asset,
                link_people=self._link_people if self.notifier is not None else None,
            )
            self.api = ApiServer(app, settings.api.host, settings.api.port)

    async def start(self) -> None:
        # The broker may be down at start (a reboot of the central server brings them up
        # in any order): the receiver keeps trying, and the API serves meanwhile.
        # Ports first: one that is taken stops the start at once.
        if self.api is not None:
            await self.api.start()
        await self._serve_metrics()
        await self.receiver.start(wait_s=None)
        await self.receiver.wait_connected(BROKER_START_WAIT_S)
        self._tasks.append(asyncio.create_task(self._report_health(), name="ingest health"))
        if self.alarms is not None:
            self._tasks.append(asyncio.create_task(self._alarm_clock(), name="alarm clock"))
        log.info("ingest %s serving %s", self.config.settings.client_id, self.receiver.topics)

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        if self.metrics is not None:
            await self.metrics.stop()
        if self.api is not None:
            await self.api.stop()
        await self.receiver.stop()
        await self.writer.close()
        self.dead_letters.close()
        if self.notifier is not None:
            self.notifier.close()
        if self.alarms is not None:
            self.alarms.close()

    def reload(self, site: SiteConfig, settings: IngestSettings | None = None) -> list[str]:
        """A new site model (SIGHUP): validation follows it from the next batch on. The
        alarm rules are bound to the model, so they are bound again, keeping states; the
        notifier reads its config again (rosters, routes, escalation). All is loaded
        before anything changes, so a mistake anywhere keeps everything as it runs.
        Returns, in words for the log, what changed but takes a restart (`settings`: the
        ingest config file as it is now)."""
        alarms = self.config.settings.alarms
        rules = notify = None
        if self.alarms is not None and alarms is not None:
            rules = load_rules(self.config.relative(alarms.rules), site)
            if self.notifier is not None and alarms.notify is not None:
                notify = load_notify_config(self.config.relative(alarms.notify))
        notes = restart_notes(self.config, settings) if settings is not None else []
        self.validator.config = site
        self.config.site = site
        if self.alarms is not None and rules is not None:
            self.alarms.engine = AlarmEngine(rules, site)
            self.alarms.engine.restore(self.alarms.book.active_conditions())
        if self.notifier is not None and notify is not None and alarms is not None:
            notes += self.notifier.reload(notify)
            self.positions = positions_for(alarms.kpi, self.notifier.config, self._site_ids())
        return notes

    async def _serve_metrics(self) -> None:
        settings = self.config.settings
        port = self.metrics_port if self.metrics_port is not None else settings.metrics_port
        if port is None:
            return
        self.metrics = MetricsServer(lambda: ingest_samples(self), settings.metrics_host, port)
        await self.metrics.start()  # a port that cannot be had stops the start: OSError

    async def _store(self, batch: Batch, bad_rows: list[BadRow]) -> StoreResult:
        try:
            result = await self.store(batch, bad_rows)
        except InfluxAuthError as exc:
            self._alarm_auth(exc)
            raise
        self.auth_failing = False
        if self.alarms is not None:
            # Before the ack: a crash here means a resend, which the engine and the book
            # take as old news, so no alarm is lost and none is told twice.
            await self.alarms.observe(batch.site, batch.station, result.valid)
        return result

    def _link_people(self) -> list[str]:
        """The notifier's people now (its config may be reloaded)."""
        assert self.notifier is not None
        return list(self.notifier.config.people)

    def _known_asset(self, path: str) -> bool:
        return any("/".join(ref.key) == path for ref in self.config.site.assets())

    def _site_ids(self) -> list[str]:
        return [s.id for s in self.config.site.sites]

    async def _alarm_clock(self) -> None:
        assert self.alarms is not None and self.config.settings.alarms is not None
        kpi_every_s = self.config.settings.alarms.kpi.write_every_s
        next_kpis = time.monotonic() + kpi_every_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.settings.alarms.tick_s):
                    await self._wake.wait()
            self._wake.clear()
            honour_cancellation()
            await self.alarms.tick()
            if self.notifier is not None:
                await self.notifier.tick()  # never raises for a failed delivery
            if time.monotonic() >= next_kpis:
                next_kpis = max(next_kpis + kpi_every_s, time.monotonic())
                await self._write_kpis()

    async def _wake_notifier(self, transitions: list[Transition]) -> None:
        """News for the crew: run the notifier now rather than at the next tick, so a
        raise is on its way within a second, not within tick_s."""
        if any(t.notify for t in transitions):
            self._wake.set()

    def _rosters(self) -> list[dict[str, object]]:
        assert self.notifier is not None
        return duty_board(self.notifier.config, now_ms())

    async def _kpis(self, since_ms: int, until_ms: int) -> AlarmKpis:
        """The KPIs of a window, off the event loop: a year of history takes a while."""
        assert self.alarms is not None
        book, window = self.alarms.book, until_ms - since_ms
        sites = self._site_ids()
        return await asyncio.to_thread(compute, book, until_ms, window, self.positions, sites)

    async def _write_kpis(self) -> None:
        now = now_ms()
        kpis = await self._kpis(now - DAY_MS, now)
        try:
            await self.writer.write(kpi_lines(kpis))
        except InfluxError as exc:
            log.warning("alarm KPIs not written: %s", exc)

    def _alarm_auth(self, exc: InfluxAuthError) -> None:
        """Loud and repeated: data is safe in the gateways' outboxes, but nothing lands
        until someone fixes the credentials."""
        self.auth_failing = True
        now = time.monotonic()
        if now - self._last_auth_alarm >= AUTH_ALARM_EVERY_S:
            self._last_auth_alarm = now
            log.critical(
                "InfluxDB refuses our credentials (%s): nothing is acknowledged, gateways "
                "are holding the data; fix %s",
                exc,
                self.config.file,
            )

    def health(self) -> dict[str, bool | int | float]:
        r, s = self.receiver, self.store
        return {
            "connected": r.connected,
            "batches": r.batches,
            "readings": r.readings,
            "points_written": s.points_written,
            "refused": s.refused,
            "malformed": sum(r.malformed.values()),
            "store_failures": r.store_failures,
            "not_stored_replies": r.not_stored_replies,
            # As of its last write: count() would wait for a batch's letters being written.
            "dead_letters_pending": self.dead_letters.pending,
            "dead_letters_dropped": self.dead_letters.dropped,
            "influx_auth_failing": self.auth_failing,
            "alarm_evaluations": self.alarms.engine.evaluations if self.alarms else 0,
            "alarm_transitions": self.alarms.transitions if self.alarms else 0,
            **self._notifier_health(),
        }

    def _tell_dead_letters(self) -> None:
        """A WARNING when readings or batches went to the dead letters, at most once a
        minute with the count since the last one: a flood is one line a minute."""
        now = time.monotonic()
        if now - self._letters_told < DEAD_LETTER_LOG_EVERY_S:
            return
        total = self.store.refused + sum(self.receiver.malformed.values())
        new = total - self._letters_seen
        if new <= 0:
            return
        self._letters_seen, self._letters_told = total, now
        log.warning(
            "%d readings or batches went to the dead letters since the last report (%d in "
            "all since start); `facility ingest dead-letters list --config %s` shows why",
            new,
            total,
            self.config.file,
        )

    def _notifier_health(self) -> dict[str, int]:
        if self.notifier is None:
            return {}
        stats = self.notifier.stats()
        return {
            "notifications_sent": stats.sent,
            "notifications_failed": stats.failed,
            "notifications_pending": stats.pending,
            "notifications_abandoned": stats.abandoned,
        }

    async def _report_health(self) -> None:
        tags = {"instance": self.config.settings.client_id}
        while True:
            await asyncio.sleep(self.config.settings.health_every_s)
            honour_cancellation()
            self._tell_dead_letters()
            line = encode_point("ingest_health", tags, self.health(), now_ms())
            try:
                await self.writer.write([line])
            except InfluxError as exc:  # its own health is the least of what cannot land
                log.warning("ingest health not written: %s", exc)
