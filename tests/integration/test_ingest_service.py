"""The ingest as a service: `facility ingest run` killed mid-write, several instances
sharing the load, all against real Mosquitto, InfluxDB, Modbus simulators and gateways."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

from facility.config import SiteConfig
from gateway.daemon import Gateway
from ingest.config import load_ingest_config
from ingest.influx import InfluxV1Writer
from ingest.service import IngestService
from tests.integration._gateway import Recorder, gateway_for, one_station, served_at
from tests.integration._ingest import (
    DB,
    SITE_DIR,
    acquired,
    read_log_until,
    start_ingest,
    stored_readings,
    write_ingest_config,
)
from tests.integration.test_gateway_e2e import RunningSite, start_site
from tests.services import Mosquitto
from wiring.services import InfluxDB, VictoriaMetrics

SMALL_BATCHES = {"batch_max_readings": 40}


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not await condition():
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def drained(gateways: list[Gateway]) -> bool:
    return all(g.outbox.stats().readings == 0 and not g.uplink.in_flight_readings for g in gateways)


async def run_xiba(
    config: SiteConfig, runner: RunningSite, tmp_path: Path, broker: int, settle_s: float
) -> tuple[Gateway, Recorder]:
    """Xiba's gateway for settle_s, then until its outbox has drained; stopped after."""
    gateway = gateway_for(served_at(config, runner), "fengshou", "xiba", tmp_path / "gw", broker)
    recorder = Recorder(gateway)
    gateway.start()
    try:
        await asyncio.sleep(settle_s)
        await until(lambda: drained([gateway]), 20, "the outbox to drain")
    finally:
        await gateway.stop()
    return gateway, recorder


async def assert_stored_exactly(writer: InfluxV1Writer, station: str, recorder: Recorder) -> int:
    sent = acquired(recorder.readings)
    assert len(sent) > 100, "the gateway acquired readings"
    stored = await stored_readings(writer, station)
    missing = set(sent) - set(stored)
    extra = set(stored) - set(sent)
    assert not missing, f"{len(missing)} readings never landed, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} points nobody acquired, e.g. {sorted(extra)[:3]}"
    wrong = [k for k, v in sent.items() if stored[k] != v]
    assert not wrong, f"values differ at {wrong[:3]}"
    return len(sent)


async def test_ingest_killed_between_write_and_ack_loses_and_doubles_nothing(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    tmp_path: Path,
) -> None:
    """The write is on its way when the ingest dies: influxd is frozen (SIGSTOP) with a
    request in its socket, the ingest is killed with -9, influxd thawed. The points land
    but no ack ever leaves, so the gateway resends the batch onto the same points."""
    config = one_station(demo_config, "fengshou", "xiba", **SMALL_BATCHES)
    runner = await start_site(config, mosquitto)
    ingest_file = write_ingest_config(tmp_path / "ingest", mosquitto.port, influxdb.url)
    writer = InfluxV1Writer(influxdb.url, DB)
    await writer.create_database(DB)
    gateway = gateway_for(
        served_at(config, runner), "fengshou", "xiba", tmp_path / "gw", mosquitto.port
    )
    recorder = Recorder(gateway)
    gateway.start()
    process = start_ingest(ingest_file)
    assert influxdb.proc is not None
    try:
        await until(lambda: _has_points(writer), 20, "the first points in InfluxDB")
        os.kill(influxdb.proc.pid, signal.SIGSTOP)
        await asyncio.sleep(1.5)  # the ingest is now inside a write
        process.kill()
        process.wait(10)
        os.kill(influxdb.proc.pid, signal.SIGCONT)
        await asyncio.sleep(1.0)
        unacked = gateway.uplink.in_flight_readings + gateway.outbox.stats().readings
        process = start_ingest(ingest_file)
        await asyncio.sleep(2.0)
        await until(lambda: drained([gateway]), 40, "the outbox to drain")
    finally:
        process.kill()
        process.wait(10)
        await gateway.stop()
        await runner.stop()
    assert unacked > 0, "the kill left readings unacknowledged"
    assert gateway.uplink.stats.batches_expired > 0, "a batch was resent after the kill"
    await assert_stored_exactly(writer, "xiba", recorder)
    await writer.close()


async def _has_points(writer: InfluxV1Writer) -> bool:
    answer = await writer.query('SELECT count("flow_m3h") FROM "pump"')
    return bool(answer["results"][0].get("series"))


async def test_two_instances_in_a_shared_group_split_the_batches(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    tmp_path: Path,
) -> None:
    config = one_station(demo_config, "fengshou", "xiba", **SMALL_BATCHES)
    runner = await start_site(config, mosquitto)
    services = [
        IngestService(
            load_ingest_config(
                write_ingest_config(
                    tmp_path / name,
                    mosquitto.port,
                    influxdb.url,
                    client_id=name,
                    shared_group="ingest",
                )
            )
        )
        for name in ("ingest-a", "ingest-b")
    ]
    writer = InfluxV1Writer(influxdb.url, DB)
    await writer.create_database(DB)
    for service in services:
        await service.start()
    try:
        gateway, recorder = await run_xiba(config, runner, tmp_path, mosquitto.port, 4.0)
    finally:
        for service in services:
            await service.stop()
        await runner.stop()
    shares = [s.receiver.batches for s in services]
    stats = gateway.uplink.stats
    assert all(share > 0 for share in shares), f"one instance took every batch: {shares}"
    assert stats.batches_expired == 0
    assert sum(shares) == stats.batches_acked, "a batch went to both instances"
    await assert_stored_exactly(writer, "xiba", recorder)
    await writer.close()


async def test_instances_partitioned_by_site_serve_only_their_sites(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    tmp_path: Path,
) -> None:
    cut = [
        one_station(demo_config, "fengshou", "xiba", **SMALL_BATCHES).sites[0],
        one_station(demo_config, "huilongba", "nongken", **SMALL_BATCHES).sites[0],
    ]
    config = dataclasses.replace(demo_config, sites=cut)
    runner = await start_site(config, mosquitto)
    served = served_at(config, runner)
    services = {
        site: IngestService(
            load_ingest_config(
                write_ingest_config(
                    tmp_path / site, mosquitto.port, influxdb.url, client_id=site, sites=[site]
                )
            )
        )
        for site in ("fengshou", "huilongba")
    }
    writer = InfluxV1Writer(influxdb.url, DB)
    await writer.create_database(DB)
    for service in services.values():
        await service.start()
    gateways = [
        gateway_for(served, "fengshou", "xiba", tmp_path / "gw", mosquitto.port),
        gateway_for(served, "huilongba", "nongken", tmp_path / "gw", mosquitto.port),
    ]
    recorders = [Recorder(g) for g in gateways]
    for gateway in gateways:
        gateway.start()
    try:
        await asyncio.sleep(3.0)
        await until(lambda: drained(gateways), 20, "the outboxes to drain")
    finally:
        for gateway in gateways:
            await gateway.stop()
        for service in services.values():
            await service.stop()
        await runner.stop()
    for site, service in services.items():
        assert {s for s, _ in service.receiver.per_station} == {site}
    await assert_stored_exactly(writer, "xiba", recorders[0])
    await assert_stored_exactly(writer, "nongken", recorders[1])
    await writer.close()


async def test_the_v2_write_path_carries_the_same_readings_end_to_end(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    victoria_metrics: VictoriaMetrics,
    tmp_path: Path,
) -> None:
    """Gateway → broker → ingest configured with `influxdb.api: v2` → VictoriaMetrics,
    read back through its export API (metric `{measurement}_{field}`, floats only)."""
    config = one_station(demo_config, "fengshou", "xiba")
    runner = await start_site(config, mosquitto)
    config_file = write_ingest_config(tmp_path / "ingest", mosquitto.port, "unused")
    text = yaml.safe_load(config_file.read_text())
    text["ingest"]["influxdb"] = {"api": "v2", "url": victoria_metrics.url, "bucket": "facility"}
    config_file.write_text(yaml.safe_dump(text))
    service = IngestService(load_ingest_config(config_file))
    await service.start()
    try:
        _, recorder = await run_xiba(config, runner, tmp_path, mosquitto.port, 3.0)
    finally:
        await service.stop()
        await runner.stop()
    sent = {
        ts: value
        for (asset, signal, ts), value in acquired(recorder.readings).items()
        if (asset, signal) == ("tank_no4", "level_m")
    }
    [series] = victoria_metrics.export('{__name__="tank_level_m",asset="tank_no4"}')
    assert series["metric"]["station"] == "xiba"
    assert dict(zip(series["timestamps"], series["values"], strict=True)) == sent
    assert len(sent) >= 4


async def test_sighup_reload_refuses_a_broken_site_model_and_sigterm_exits_0(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    site_dir = tmp_path / "site"
    shutil.copytree(SITE_DIR, site_dir)
    config_file = write_ingest_config(
        tmp_path / "ingest", mosquitto.port, influxdb.url, site_dir=site_dir
    )
    process = start_ingest(config_file)
    try:
        started = await asyncio.to_thread(read_log_until, process, "serving", 60)
        wanda = site_dir / "wanda.yaml"
        wanda.write_text(wanda.read_text().replace("kind: parking", "kind: parkign", 1))
        process.send_signal(signal.SIGHUP)
        await asyncio.sleep(1.0)
        assert process.poll() is None, "a broken reload must not stop the service"
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        process.kill()
    assert process.stderr is not None
    log = started + process.stderr.read().decode()
    assert "reload refused" in log and "wanda.yaml" in log


def test_a_config_mistake_stops_the_start_with_file_line_and_field(tmp_path: Path) -> None:
    config_file = write_ingest_config(tmp_path, 1883, "http://127.0.0.1:1", sites=["atlantis"])
    process = start_ingest(config_file)
    assert process.wait(30) == 1
    assert process.stderr is not None
    text = process.stderr.read().decode()
    assert f"{config_file}:" in text and "ingest.subscription.sites[0]" in text
    assert "no site 'atlantis'" in text
