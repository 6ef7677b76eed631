"""The cuttable uplink: LinkProxy between a gateway's MQTT client and a real Mosquitto.

A gateway publishes through the proxy; a subscriber connected straight to the broker
sees what arrives centrally. Cutting the link drops the gateway's connection and
refuses new ones, as a modem losing its network does; restoring it lets data flow again.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulators.netlink import LinkProxy
from tests.services import Mosquitto

pytestmark = pytest.mark.timeout(60)

TOPIC = "facility/test/uplink"
WAIT_S = 5.0


@pytest.fixture
async def proxy(mosquitto: Mosquitto) -> AsyncIterator[LinkProxy]:
    link = LinkProxy("127.0.0.1", mosquitto.port)
    await link.start()
    try:
        yield link
    finally:
        await link.stop()


def mqtt_client(port: int, name: str, timeout: float = 2.0) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1", port, identifier=f"{name}-{uuid.uuid4().hex[:8]}", timeout=timeout
    )


async def next_message(client: aiomqtt.Client, timeout_s: float = WAIT_S) -> aiomqtt.Message:
    return await asyncio.wait_for(anext(aiter(client.messages)), timeout_s)


async def test_proxied_publish_reaches_the_broker_and_cut_drops_it(
    mosquitto: Mosquitto, proxy: LinkProxy
) -> None:
    async with mqtt_client(mosquitto.port, "central") as central:
        await central.subscribe(f"{TOPIC}/#", qos=1)

        gateway = mqtt_client(proxy.listen_port, "gateway")
        async with gateway:
            await gateway.subscribe(f"{TOPIC}/echo", qos=1)
            await gateway.publish(f"{TOPIC}/data", b"before", qos=1)
            message = await next_message(central)
            assert (message.topic.value, message.payload) == (f"{TOPIC}/data", b"before")
            await central.publish(f"{TOPIC}/echo", b"down", qos=1)  # both directions pass
            assert (await next_message(gateway)).payload == b"down"
            assert (await next_message(central)).topic.value == f"{TOPIC}/echo"

            proxy.set_up(False)
            with pytest.raises(aiomqtt.MqttError):  # "Disconnected during message iteration"
                await next_message(gateway)
            with pytest.raises(aiomqtt.MqttError):
                await gateway.publish(f"{TOPIC}/data", b"lost", qos=1)

        # while the link is down no new connection gets through
        with pytest.raises(aiomqtt.MqttError):
            async with mqtt_client(proxy.listen_port, "gateway-retry", timeout=1.0):
                pytest.fail("connected through a cut link")
        # the broker itself is fine and the central side saw nothing from the gateway
        with pytest.raises(TimeoutError):
            await next_message(central, timeout_s=0.3)

        proxy.set_up(True)
        async with mqtt_client(proxy.listen_port, "gateway-again") as gateway:
            await gateway.publish(f"{TOPIC}/data", b"after", qos=1)
            message = await next_message(central)
            assert (message.topic.value, message.payload) == (f"{TOPIC}/data", b"after")


async def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll without blocking the loop the proxy runs in."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_paho_gateway_sees_the_cut_and_reconnects_by_itself(
    mosquitto: Mosquitto, proxy: LinkProxy
) -> None:
    """A paho client with its own network thread: on_disconnect fires, then auto-reconnect."""
    connects: list[Any] = []
    disconnects: list[Any] = []
    lock = threading.Lock()

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with lock:
            connects.append(reason)

    def on_disconnect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with lock:
            disconnects.append(reason)

    gateway = paho.Client(CallbackAPIVersion.VERSION2, client_id="paho-gateway")
    gateway.on_connect = on_connect
    gateway.on_disconnect = on_disconnect
    gateway.reconnect_delay_set(min_delay=1, max_delay=1)

    async with mqtt_client(mosquitto.port, "central") as central:
        await central.subscribe(f"{TOPIC}/#", qos=1)
        gateway.connect_async("127.0.0.1", proxy.listen_port, keepalive=30)
        gateway.loop_start()
        try:
            await wait_until(lambda: len(connects) == 1, "the first connection")
            assert not connects[0].is_failure
            gateway.publish(f"{TOPIC}/paho", b"one", qos=1)
            assert (await next_message(central)).payload == b"one"

            proxy.set_up(False)
            await wait_until(lambda: len(disconnects) >= 1, "on_disconnect after the cut")
            assert disconnects[0].is_failure  # unexpected, not a clean DISCONNECT
            await asyncio.sleep(1.5)  # paho retries at least once against the cut link
            assert len(connects) == 1 and not gateway.is_connected()

            proxy.set_up(True)
            await wait_until(lambda: len(connects) == 2, "the reconnection", timeout_s=8)
            await wait_until(gateway.is_connected, "is_connected")
            gateway.publish(f"{TOPIC}/paho", b"two", qos=1)
            assert (await next_message(central)).payload == b"two"
        finally:
            gateway.disconnect()
            await asyncio.to_thread(gateway.loop_stop)
