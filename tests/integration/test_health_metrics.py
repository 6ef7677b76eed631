"""Health you can see: Prometheus /metrics of a real gateway and a real `facility ingest
run` process scraped over HTTP through a broker outage, `facility gateway status` from
the disk alone, and an ingest started before its broker (real Mosquitto started late)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from facility.clock import now_ms
from facility.config import SiteConfig
from facility.wire import Batch, Reading, decode_ack, encode_batch, topic
from ingest.influx import InfluxV1Writer
from tests.integration._gateway import gateway_for, gateway_process, one_station, served_at
from tests.integration._ingest import DB, SITE_DIR, read_log_until, write_ingest_config
from tests.integration.test_gateway_e2e import start_site
from tests.services import Mosquitto, free_port, require
from wiring.services import InfluxDB

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Scrape:
    """Every sample of a /metrics page, parsed by prometheus_client's own parser."""
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(url)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    out: Scrape = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Scrape, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    found = [
        v for (n, have), v in samples.items() if n == name and set(labels.items()) <= set(have)
    ]
    assert found, f"no sample {name} {labels} in {sorted({n for n, _ in samples})}"
    return sum(found)


async def eventually(
    url: str, check: str, test: Callable[[Scrape], object], timeout_s: float
) -> Scrape:
    """Scrape until `test(samples)` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = await scrape(url)
        if test(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        await asyncio.sleep(0.3)


def start_ingest(config: Path, metrics_port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wiring.cli",
            "ingest",
            "run",
            "--config",
            str(config),
            "--metrics-port",
            str(metrics_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(process: subprocess.Popen[bytes]) -> str:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    assert process.stderr is not None
    return process.stderr.read().decode()


async def test_an_ingest_started_before_its_broker_keeps_trying_and_then_delivers(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    """The broker comes up 12 s after the ingest (past the 10 s the ingest used to give
    it before exiting 1): the ingest says so once, keeps trying, serves its metrics
    meanwhile, and stores and acknowledges the first batch once the broker is there."""
    broker = Mosquitto(tmp_path / "mosquitto")  # its port chosen, not started yet
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    config = write_ingest_config(tmp_path / "ingest", broker.port, influxdb.url)
    writer = InfluxV1Writer(influxdb.url, DB)
    await writer.create_database(DB)
    started = time.monotonic()
    process = start_ingest(config, metrics_port)
    try:
        log = await asyncio.to_thread(read_log_until, process, "serving", 30)
        assert "cannot reach the broker" in log, log
        down = await scrape(url)
        assert value(down, "facility_ingest_broker_connected") == 0
        assert value(down, "facility_ingest_broker_losses_total") >= 1
        assert value(down, "facility_ingest_broker_error", reason="[Errno 111] Connection refused")
        await asyncio.sleep(max(0.0, started + 12 - time.monotonic()))
        assert process.poll() is None, "the ingest gave up while the broker was down"

        broker.start()
        await eventually(
            url, "the ingest to connect", lambda s: value(s, "facility_ingest_broker_connected"), 10
        )
        readings = [Reading("pump_1", "flow_m3h", now_ms() - i, 12.5) for i in range(5)]
        batch = Batch("fengshou", "xiba", boot=1, seq=1, lane="live", sent_ms=0, readings=readings)
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="test-gateway") as client:
            await client.subscribe(topic("fengshou", "xiba", "ack"), qos=1)
            await client.publish(topic("fengshou", "xiba", "up"), encode_batch(batch), qos=1)
            async with asyncio.timeout(10):
                message = await anext(aiter(client.messages))
        ack = decode_ack(message.payload if isinstance(message.payload, bytes) else b"")
        assert (ack.boot, ack.seq) == (1, 1)
        up = await scrape(url)
        assert value(up, "facility_ingest_readings_in_total") == 5
        assert not [n for n, _ in up if n == "facility_ingest_broker_error"], "gone when back"
        assert value(up, "facility_ingest_batch_store_seconds_count") == 1
        assert value(up, "facility_ingest_points_written_total") == 5
        assert process.poll() is None

        # a burst of refused readings: one WARNING with the count, not one per reading
        unknown = [Reading("pump_99", "flow_m3h", readings[0].ts_ms - i, 1.0) for i in range(30)]
        bad = Batch("fengshou", "xiba", boot=1, seq=2, lane="live", sent_ms=0, readings=unknown)
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="test-gateway-2") as client:
            await client.publish(topic("fengshou", "xiba", "up"), encode_batch(bad), qos=1)
        refused = await eventually(
            url,
            "the refused readings",
            lambda s: value(s, "facility_ingest_readings_refused_total") == 30,
            10,
        )
        assert value(refused, "facility_ingest_dead_letters_pending") == 30
        log += await asyncio.to_thread(read_log_until, process, "went to the dead letters", 10)
    finally:
        log += stop(process)
        broker.stop()
        await writer.close()
    assert log.count("cannot reach the broker") == 1, "told once, not every 0.5 s"
    assert "back after" in log
    assert log.count("went to the dead letters") == 1
    assert "30 readings or batches went to the dead letters" in log


def test_a_gateway_process_serves_metrics_while_its_uplink_is_down(tmp_path: Path) -> None:
    """`facility gateway run --metrics-port`, no broker, no devices: the outbox fills
    with its own health and device status, /metrics and `gateway status` say so."""
    port = free_port()
    data_dir = tmp_path / "data"
    site_dir = tmp_path / "site"
    shutil.copytree(SITE_DIR, site_dir)
    fengshou = site_dir / "fengshou.yaml"  # xiba's bus on a port nobody serves (not 15021)
    fengshou.write_text(fengshou.read_text().replace("port: 15021", f"port: {free_port()}"))
    process = gateway_process(
        site_dir,
        "fengshou/xiba",
        data_dir,
        f"127.0.0.1:{free_port()}",
        "--metrics-port",
        str(port),
    )
    try:
        read_log_until(process, "started", 60)
        samples = asyncio.run(
            eventually(
                f"http://127.0.0.1:{port}/metrics",
                "readings in the outbox",
                lambda s: value(s, "facility_gateway_outbox_readings") > 0,
                15,
            )
        )
        assert value(samples, "facility_gateway_uplink_connected") == 0
        assert value(samples, "facility_gateway_devices") == 5
        assert value(samples, "facility_gateway_devices_answering") == 0
        [report] = gateway_status(data_dir)
        assert report["status"] == "running" and report["outbox"]["readings"] > 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        process.kill()
    [report] = gateway_status(data_dir)
    assert report["status"] == "not running" and report["outbox"]["readings"] > 0
    assert sample_of(report, "facility_gateway_uplink_connected") == 0


async def test_metrics_and_status_of_a_gateway_and_the_ingest_through_a_broker_outage(
    demo_config: SiteConfig, mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    config = one_station(demo_config, "fengshou", "xiba", batch_max_readings=40)
    runner = await start_site(config, mosquitto)
    gateway_metrics, ingest_metrics = free_port(), free_port()
    gw_url = f"http://127.0.0.1:{gateway_metrics}/metrics"
    in_url = f"http://127.0.0.1:{ingest_metrics}/metrics"
    ingest_config = write_ingest_config(tmp_path / "ingest", mosquitto.port, influxdb.url)
    writer = InfluxV1Writer(influxdb.url, DB)
    await writer.create_database(DB)
    await writer.close()
    process = start_ingest(ingest_config, ingest_metrics)
    data_dir = tmp_path / "gw"
    gateway = gateway_for(served_at(config, runner), "fengshou", "xiba", data_dir, mosquitto.port)
    gateway.metrics_port = gateway_metrics
    try:
        await asyncio.to_thread(read_log_until, process, "serving", 30)
        await gateway.serve_metrics()
        gateway.start()
        first = await eventually(
            in_url,
            "readings at the ingest",
            lambda s: value(s, "facility_ingest_readings_in_total") > 0,
            20,
        )
        flowing = await eventually(
            gw_url,
            "acknowledged batches",
            lambda s: value(s, "facility_gateway_batches_acked_total") > 0,
            20,
        )
        labels = {"site": "fengshou", "station": "xiba"}
        assert value(flowing, "facility_gateway_uplink_connected", **labels) == 1
        assert value(flowing, "facility_gateway_devices_answering") >= 1
        assert value(flowing, "facility_gateway_batch_round_trip_seconds_count") >= 1
        assert value(flowing, "facility_gateway_readings_in_total") > 0
        assert value(flowing, "process_resident_memory_bytes") > 0
        later = await eventually(
            in_url,
            "readings_in to grow",
            lambda s: (
                value(s, "facility_ingest_readings_in_total")
                > value(first, "facility_ingest_readings_in_total")
            ),
            10,
        )
        assert value(later, "facility_ingest_points_written_total") > 0
        assert value(later, "facility_ingest_broker_losses_total") == 0

        mosquitto.stop()  # the outage: the outbox fills, the ingest says it lost the broker
        outage = await eventually(
            gw_url,
            "the uplink to be down",
            lambda s: value(s, "facility_gateway_uplink_connected") == 0,
            10,
        )
        grown = await eventually(
            gw_url,
            "the outbox to grow",
            lambda s: (
                value(s, "facility_gateway_outbox_readings")
                > value(outage, "facility_gateway_outbox_readings") + 10
            ),
            15,
        )
        assert value(grown, "facility_gateway_outbox_oldest_age_seconds") > 0
        ingest_down = await scrape(in_url)
        assert value(ingest_down, "facility_ingest_broker_connected") == 0

        # The status file is rewritten every health_every_s: read until it shows the outage.
        deadline = time.monotonic() + 10
        while True:
            [report] = await asyncio.to_thread(gateway_status, data_dir)
            if sample_of(report, "facility_gateway_uplink_connected") == 0:
                break
            assert time.monotonic() < deadline, "the status file never showed the outage"
            await asyncio.sleep(0.2)
        assert report["gateway"] == "fengshou-xiba" and report["status"] == "running"
        assert report["outbox"]["readings"] > 0
        assert sample_of(report, "facility_gateway_uplink_connected") == 0
        assert sample_of(report, "facility_gateway_readings_in_total") > 0

        mosquitto.start()
        drained = await eventually(
            gw_url,
            "the outbox to drain",
            lambda s: (
                value(s, "facility_gateway_outbox_readings") == 0
                and value(s, "facility_gateway_uplink_connected") == 1
            ),
            30,
        )
        assert value(drained, "facility_gateway_readings_out_total") > value(
            grown, "facility_gateway_readings_out_total"
        )
        back = await eventually(
            in_url,
            "the ingest to be back",
            lambda s: (
                value(s, "facility_ingest_broker_connected") == 1
                and value(s, "facility_ingest_readings_in_total")
                > value(later, "facility_ingest_readings_in_total")
            ),
            20,
        )
        assert value(back, "facility_ingest_broker_losses_total") >= 1
    finally:
        await gateway.stop()
        log = stop(process)
        await runner.stop()
    assert "lost the broker" in log and "back after" in log
    assert "HTTP Request" not in log, "per-request HTTP logs are off by default"
    stopped = gateway_status(data_dir)[0]
    assert stopped["status"] == "not running" and stopped["outbox"]["readings"] == 0


def gateway_status(data_dir: Path) -> list[dict[str, Any]]:
    answer = subprocess.run(
        [
            sys.executable,
            "-m",
            "wiring.cli",
            "gateway",
            "status",
            "--data-dir",
            str(data_dir),
            "--json",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    reports = json.loads(answer.stdout)
    assert isinstance(reports, list)
    return reports


def sample_of(report: dict[str, Any], name: str) -> float:
    samples = report["samples"]
    assert isinstance(samples, list)
    return sum(float(s["value"]) for s in samples if s["name"] == name)


def test_a_gateway_status_without_any_gateway_says_so(tmp_path: Path) -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "wiring.cli", "gateway", "status", "--data-dir", str(tmp_path)],
        capture_output=True,
        timeout=30,
    )
    assert answer.returncode == 1 and b"no gateway outbox" in answer.stderr


def test_an_ingest_whose_metrics_port_is_taken_stops_at_once_saying_why(tmp_path: Path) -> None:
    config = write_ingest_config(tmp_path, free_port(), "http://127.0.0.1:1")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        process = start_ingest(config, port)
        assert process.wait(60) == 1
    assert process.stderr is not None
    log = process.stderr.read().decode()
    assert "cannot start" in log and "address already in use" in log and str(port) in log
    assert "cannot reach the broker" not in log, "the port is checked before the broker"


async def test_a_refused_uplink_shows_the_broker_s_reason_in_the_metrics(
    demo_config: SiteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway whose central broker refuses its password: /metrics carries the reason
    (facility_gateway_uplink_error{reason}) while the outbox fills."""
    passwords = tmp_path / "passwd"
    subprocess.run(
        [require("mosquitto_passwd"), "-b", "-c", str(passwords), "gw-xiba", "right-password"],
        check=True,
    )
    broker = Mosquitto(
        tmp_path / "mosquitto",
        listener_options=f"allow_anonymous false\npassword_file {passwords}\n",
    )
    broker.start()
    monkeypatch.setenv("FACILITY_TEST_UPLINK_PASSWORD", "wrong-password")
    site = demo_config.site("fengshou")
    uplink = site.gateway.uplink.model_copy(
        update={"username": "gw-xiba", "password_env": "FACILITY_TEST_UPLINK_PASSWORD"}
    )
    config = one_station(demo_config, "fengshou", "xiba", uplink=uplink)
    port = free_port()
    gateway = gateway_for(config, "fengshou", "xiba", tmp_path / "gw", broker.port)
    gateway.metrics_port = port
    try:
        await gateway.serve_metrics()
        gateway.start()
        samples = await eventually(
            f"http://127.0.0.1:{port}/metrics",
            "the refusal in the metrics",
            lambda s: any(n == "facility_gateway_uplink_error" for n, _ in s),
            15,
        )
        [(_, labels)] = [k for k in samples if k[0] == "facility_gateway_uplink_error"]
        reason = dict(labels)["reason"].lower()
        assert "password" in reason or "authori" in reason, reason
        assert value(samples, "facility_gateway_uplink_connected") == 0
    finally:
        await gateway.stop()
        broker.stop()
