"""`facility broker config` against a real Mosquitto: TLS from the private CA it makes,
one credential per station and ingest instance, an ACL keeping each gateway to its own
topics. The gateways run as real processes, each with only its own env file (as systemd
gives it), and deliver to the ingest's receiver logged in with its own credential."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
import yaml
from typer.testing import CliRunner

from facility.broker import password_hash
from facility.config import SiteConfig
from facility.wire import topic
from ingest.receiver import Receiver, subscription_topics
from tests.integration._gateway import one_station, served_at
from tests.integration._ingest import read_log_until
from tests.integration.test_gateway_crash import write_site
from tests.integration.test_gateway_e2e import start_site
from tests.services import Mosquitto, free_port, require, wait_for_port
from wiring.cli import app

STATIONS = ("xiba", "sankeshu")
PASSWORD_ENV = "FACILITY_UPLINK_PASSWORD"


@dataclass
class SecuredBroker:
    port: int
    out: Path
    site_dir: Path
    proc: subprocess.Popen[bytes]

    @property
    def ca(self) -> Path:
        return self.out / "mosquitto" / "tls" / "ca.crt"

    def password(self, env_file: str) -> str:
        for line in (self.out / "secrets" / env_file).read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                return line.partition("=")[2]
        raise AssertionError(f"no password in {env_file}")

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def client(self, username: str | None, password: str | None, name: str) -> aiomqtt.Client:
        return aiomqtt.Client(
            "127.0.0.1",
            self.port,
            identifier=name,
            username=username,
            password=password,
            tls_context=self.tls(),
            timeout=5,
        )


def secured_site(config: SiteConfig, folder: Path, port: int, ca: Path) -> SiteConfig:
    """Two stations of one site, their uplink set up as docs/deploy.md says."""
    cut = one_station(config, "fengshou", STATIONS[0])
    site = config.site("fengshou")
    uplink = {
        "host": "127.0.0.1",
        "port": port,
        "tls": True,
        "ca_file": str(ca),
        "username": "{site}-{station}",
        "password_env": PASSWORD_ENV,
    }
    settings = cut.sites[0].gateway.model_copy(
        update={"uplink": site.gateway.uplink.model_copy(update=uplink)}
    )
    stations = [site.station(s) for s in STATIONS]
    both = cut.sites[0].model_copy(update={"stations": stations, "gateway": settings})
    return SiteConfig(root=folder, sites=[both], profiles=config.profiles)


def broker_config(site_dir: Path, out: Path, port: int, *extra: str) -> str:
    result = CliRunner().invoke(
        app,
        [
            *("broker", "config", str(site_dir), "--out", str(out), "--port", str(port)),
            *("--bind", "127.0.0.1", "--install-dir", str(out / "mosquitto")),
            *("--hostname", "127.0.0.1", *extra),
        ],
    )
    assert result.exit_code == 0, result.output
    return result.output


def start_mosquitto(out: Path, port: int) -> subprocess.Popen[bytes]:
    conf = out / "run.conf"
    conf.write_text(
        f"user root\npersistence false\nlog_dest file {out}/mosquitto.log\nlog_type all\n"
        + (out / "mosquitto" / "facility.conf").read_text()
    )
    proc = subprocess.Popen(
        [require("mosquitto"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
    except TimeoutError:
        proc.kill()
        raise RuntimeError((out / "mosquitto.log").read_text()) from None
    return proc


@pytest.fixture
def secured(demo_config: SiteConfig, tmp_path: Path) -> Iterator[SecuredBroker]:
    port = free_port()
    out = tmp_path / "broker"
    site_dir = tmp_path / "site"
    config = secured_site(demo_config, site_dir, port, out / "mosquitto" / "tls" / "ca.crt")
    write_site(config, site_dir)
    broker_config(site_dir, out, port)
    proc = start_mosquitto(out, port)
    try:
        yield SecuredBroker(port, out, site_dir, proc)
    finally:
        proc.kill()
        proc.wait(10)


@contextlib.asynccontextmanager
async def ingest_receiver(secured: SecuredBroker) -> AsyncIterator[Receiver]:
    """The ingest as it runs in production: its own user, TLS, a shared subscription."""
    receiver = Receiver(
        "127.0.0.1",
        secured.port,
        client_id="ingest-1",
        username="ingest-1",
        password=secured.password("ingest-1.env"),
        tls_context=secured.tls(),
        topics=subscription_topics((), "ingest"),
    )
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


def start_gateway(
    secured: SecuredBroker, site_dir: Path, station: str, data_dir: Path, password: str
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    env[PASSWORD_ENV] = password
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "wiring.cli", "gateway", "run", "--site", str(site_dir)),
            *("--gateway", f"fengshou-{station}", "--data-dir", str(data_dir), "--log-json"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def until(predicate: object, timeout_s: float, what: str) -> None:
    assert callable(predicate)
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def settled(count: Callable[[], int], quiet_s: float = 2.0, timeout_s: float = 30) -> int:
    """The count once it has not changed for quiet_s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last, since = count(), loop.time()
    while loop.time() < deadline:
        await asyncio.sleep(0.1)
        if (now := count()) != last:
            last, since = now, loop.time()
        elif loop.time() - since >= quiet_s:
            return now
    raise AssertionError(f"the count kept changing for {timeout_s} s")


async def test_each_gateway_delivers_with_its_own_credential_a_wrong_one_is_refused(
    secured: SecuredBroker, demo_config: SiteConfig, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = secured_site(demo_config, secured.site_dir, secured.port, secured.ca)
    runner = await start_site(config, mosquitto)  # `mosquitto`: the devices' own broker
    site_dir = write_site(served_at(config, runner), tmp_path / "served")
    gateways: list[subprocess.Popen[bytes]] = []
    try:
        async with ingest_receiver(secured) as receiver:
            for station in STATIONS:
                password = secured.password(f"gateway-fengshou-{station}.env")
                gateways.append(
                    start_gateway(secured, site_dir, station, tmp_path / station, password)
                )
            await until(
                lambda: all(receiver.per_station[("fengshou", s)] > 0 for s in STATIONS),
                30,
                "readings from both stations",
            )
            # the same gateway with the other station's password: refused, nothing arrives
            gateways[0].terminate()
            gateways[0].wait(20)
            # what the stopped gateway sent may still be on its way to the receiver on a busy
            # machine (parallel workers): count once that has arrived
            before = await settled(lambda: receiver.per_station[("fengshou", "xiba")])
            wrong = secured.password("gateway-fengshou-sankeshu.env")
            gateways[0] = start_gateway(secured, site_dir, "xiba", tmp_path / "xiba-2", wrong)
            said = await asyncio.to_thread(
                read_log_until, gateways[0], "connection refused by the broker", 30
            )
            refusal = json.loads(next(line for line in said.splitlines() if "refused" in line))
            assert refusal["level"] == "error", refusal
            assert "not authori" in refusal["msg"].lower(), refusal  # the broker's own reason
            await asyncio.sleep(2.0)
            assert receiver.per_station[("fengshou", "xiba")] == before
            assert gateways[0].poll() is None, "the gateway keeps running and retrying"
            log = (secured.out / "mosquitto.log").read_text()
            assert "fengshou-xiba" in log and "not authorised" in log.lower()
    finally:
        for process in gateways:
            process.kill()
            process.wait(10)
        await runner.stop()


async def test_a_gateway_cannot_publish_or_read_another_stations_topics(
    secured: SecuredBroker,
) -> None:
    xiba = secured.password("gateway-fengshou-xiba.env")
    async with (
        secured.client("ingest-1", secured.password("ingest-1.env"), "watch") as watch,
        secured.client("fengshou-xiba", xiba, "facility-gw-fengshou-xiba") as gateway,
    ):
        await watch.subscribe("facility/v1/+/+/up", qos=1)
        await watch.subscribe("facility/v1/+/+/status", qos=1)
        # Mosquitto grants any subscription; the ACL decides what is delivered
        await gateway.subscribe("facility/v1/fengshou/+/ack", qos=1)
        for leaf in ("up", "status"):
            await gateway.publish(topic("fengshou", "sankeshu", leaf), b"forged", qos=1)
        await gateway.publish(topic("fengshou", "xiba", "status"), b"own", qos=1)
        for station in STATIONS:
            await watch.publish(topic("fengshou", station, "ack"), b"ack", qos=1)
        at_ingest = await _arrivals(watch, 2.0)
        at_gateway = await _arrivals(gateway, 0.5)
    assert at_ingest == [topic("fengshou", "xiba", "status")], at_ingest
    assert at_gateway == [topic("fengshou", "xiba", "ack")], at_gateway


async def _arrivals(client: aiomqtt.Client, quiet_s: float) -> list[str]:
    arrived: list[str] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(quiet_s):
            async for message in client.messages:
                arrived.append(str(message.topic))
    return arrived


async def test_wrong_missing_or_other_users_password_is_refused(secured: SecuredBroker) -> None:
    xiba = secured.password("gateway-fengshou-xiba.env")
    sankeshu = secured.password("gateway-fengshou-sankeshu.env")
    for username, password in (
        ("fengshou-xiba", xiba + "x"),
        ("fengshou-xiba", sankeshu),
        ("fengshou-xiba", None),
        (None, None),
        ("nobody", xiba),
    ):
        with pytest.raises(aiomqtt.MqttError):
            async with secured.client(username, password, "intruder"):
                pass
    # and no TLS at all: the listener speaks only TLS
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", secured.port, timeout=3, username="x"):
            pass


def test_password_lines_are_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    file = tmp_path / "pw"
    subprocess.run([require("mosquitto_passwd"), "-c", "-b", str(file), "u", "s3cret"], check=True)
    line = file.read_text().strip().partition(":")[2]
    salt = base64.b64decode(line.split("$")[3])
    assert password_hash("s3cret", salt) == line


def test_a_rerun_keeps_passwords_rotate_changes_them(
    demo_config: SiteConfig, tmp_path: Path
) -> None:
    site_dir = tmp_path / "site"
    write_site(secured_site(demo_config, site_dir, 8883, tmp_path / "ca.crt"), site_dir)
    out = tmp_path / "out"
    broker_config(site_dir, out, 8883)
    first = {p.name: p.read_text() for p in (out / "secrets").iterdir()}
    assert sorted(first) == [
        "gateway-fengshou-sankeshu.env",
        "gateway-fengshou-xiba.env",
        "ingest-1.env",
    ]
    assert all(oct(p.stat().st_mode)[-3:] == "600" for p in (out / "secrets").iterdir())
    ca = (out / "mosquitto" / "tls" / "ca.crt").read_bytes()
    broker_config(site_dir, out, 8883)
    assert {p.name: p.read_text() for p in (out / "secrets").iterdir()} == first
    assert (out / "mosquitto" / "tls" / "ca.crt").read_bytes() == ca
    broker_config(site_dir, out, 8883, "--rotate")
    rotated = {p.name: p.read_text() for p in (out / "secrets").iterdir()}
    assert all(rotated[name] != first[name] for name in first)
    acl = (out / "mosquitto" / "acl").read_text()
    assert "user fengshou-xiba\ntopic write facility/v1/fengshou/xiba/up\n" in acl


def test_a_site_without_per_station_users_is_refused_with_file_and_field(
    demo_config: SiteConfig, tmp_path: Path
) -> None:
    site_dir = tmp_path / "site"
    config = secured_site(demo_config, site_dir, 8883, tmp_path / "ca.crt")
    write_site(config, site_dir)
    file = site_dir / "fengshou.yaml"
    data = yaml.safe_load(file.read_text())
    data["gateway"]["uplink"]["username"] = "{site}"  # both stations would share it
    file.write_text(yaml.safe_dump(data, allow_unicode=True))
    result = CliRunner().invoke(app, ["broker", "config", str(site_dir), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{file}:" in result.output and "gateway.uplink.username" in result.output
    assert "would share the user 'fengshou'" in result.output
    assert not (tmp_path / "secrets").exists(), "nothing written from a refused model"


async def test_client_certificates_when_asked_a_password_alone_is_refused(
    demo_config: SiteConfig, tmp_path: Path
) -> None:
    port = free_port()
    out = tmp_path / "broker"
    site_dir = tmp_path / "site"
    ca = out / "mosquitto" / "tls" / "ca.crt"
    write_site(secured_site(demo_config, site_dir, port, ca), site_dir)
    broker_config(site_dir, out, port, "--client-certs")
    assert "require_certificate true" in (out / "mosquitto" / "facility.conf").read_text()
    proc = start_mosquitto(out, port)
    secured = SecuredBroker(port, out, site_dir, proc)
    password = secured.password("gateway-fengshou-xiba.env")
    try:
        with pytest.raises(aiomqtt.MqttError):
            async with secured.client("fengshou-xiba", password, "no-cert"):
                pass
        with_cert = secured.tls()
        clients = out / "clients"
        with_cert.load_cert_chain(
            clients / "client-fengshou-xiba.crt", clients / "client-fengshou-xiba.key"
        )
        async with aiomqtt.Client(
            "127.0.0.1",
            port,
            username="fengshou-xiba",
            password=password,
            tls_context=with_cert,
            timeout=5,
        ) as client:
            await client.publish(topic("fengshou", "xiba", "status"), b"own", qos=1)
    finally:
        proc.kill()
        proc.wait(10)
