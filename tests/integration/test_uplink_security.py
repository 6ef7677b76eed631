"""The uplink's username/password and TLS against a real Mosquitto configured for them."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from facility.config import SiteConfig
from facility.wire import Reading
from gateway.daemon import Gateway
from ingest.receiver import Receiver
from tests.integration._gateway import one_station
from wiring.services import Mosquitto

PASSWORD_ENV = "FACILITY_TEST_UPLINK_PASSWORD"


def with_uplink(config: SiteConfig, **uplink: object) -> SiteConfig:
    site = config.sites[0]
    settings = site.gateway.model_copy(
        update={"uplink": site.gateway.uplink.model_copy(update=uplink)}
    )
    return dataclasses.replace(config, sites=[site.model_copy(update={"gateway": settings})])


def tank_only(demo_config: SiteConfig) -> SiteConfig:
    """A station whose gateway has nothing to poll: the test feeds readings itself."""
    config = one_station(demo_config, "fengshou", "zhongba")
    site = config.sites[0]
    station = site.stations[0].model_copy(update={"buses": [], "assets": []})
    return dataclasses.replace(config, sites=[site.model_copy(update={"stations": [station]})])


def zhongba_gateway(config: SiteConfig, data_dir: Path, uplink_port: int) -> Gateway:
    """The gateway of `tank_only`'s station, delivering to the broker on `uplink_port`."""
    return Gateway(
        config, "fengshou", "zhongba", data_dir, uplink_address=("127.0.0.1", uplink_port)
    )


async def deliver_one(gateway: Gateway, receiver: Receiver, timeout_s: float) -> bool:
    gateway.accept([Reading("probe", "value", 1, 1.5)])
    try:
        async with asyncio.timeout(timeout_s):
            while receiver.readings == 0:
                await asyncio.sleep(0.05)
    except TimeoutError:
        return False
    return True


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwords = tmp_path / "passwd"
    for user, secret in (("gw-zhongba", "s3cret"), ("ingest", "1ngest")):
        subprocess.run(
            [
                "mosquitto_passwd",
                "-b",
                *(["-c"] if not passwords.exists() else []),
                str(passwords),
                user,
                secret,
            ],
            check=True,
        )
    broker = Mosquitto(
        tmp_path / "mq", listener_options=f"allow_anonymous false\npassword_file {passwords}\n"
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.mark.parametrize("password, delivered", [("s3cret", True), ("wrong", False)])
async def test_username_and_password(
    demo_config: SiteConfig,
    password_broker: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    password: str,
    delivered: bool,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, password)
    config = with_uplink(tank_only(demo_config), username="gw-zhongba", password_env=PASSWORD_ENV)
    receiver = Receiver("127.0.0.1", password_broker.port, username="ingest", password="1ngest")
    await receiver.start()
    gateway = zhongba_gateway(config, tmp_path / "data", password_broker.port)
    gateway.start()
    try:
        assert await deliver_one(gateway, receiver, 5.0 if delivered else 2.0) is delivered
        assert gateway.uplink.stats.connected is delivered
        assert not gateway.tasks["uplink"].done(), "the uplink gave up instead of retrying"
    finally:
        await gateway.stop(grace_s=1.0)
        await receiver.stop()
        password_broker.stop()


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem")
    )
    ext = folder / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=facility test CA",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return ca, cert, key


async def test_tls_with_a_private_ca(
    demo_config: SiteConfig,
    tmp_path: Path,
) -> None:
    ca, cert, key = make_tls_files(tmp_path)
    broker = Mosquitto(
        tmp_path / "mq",
        listener_options=(f"allow_anonymous true\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"),
    )
    broker.start()
    config = with_uplink(tank_only(demo_config), tls=True, ca_file=str(ca))
    receiver = Receiver(
        "127.0.0.1", broker.port, tls_context=ssl.create_default_context(cafile=str(ca))
    )
    await receiver.start()
    gateway = zhongba_gateway(config, tmp_path / "data", broker.port)
    gateway.start()
    try:
        assert await deliver_one(gateway, receiver, 5.0)
    finally:
        await gateway.stop(grace_s=1.0)
        await receiver.stop()
        broker.stop()
