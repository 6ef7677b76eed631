"""Stage five, deliver: a stored message to one contact, through Apprise or MQTT.

A channel answers None when the contact accepted the message, else the reason it did
not; the notifier records either and retries failures (notifier.py). Nothing here
raises for a failed delivery: a channel that cannot deliver is an ordinary event.

Apprise: a fresh Apprise object per delivery and contact. One object per contact keeps
one contact's failure from failing the others; fresh each time because Apprise's
plugins throttle per object (the e-mail plugin sleeps up to 5.5 s between two sends
of the same object, in a worker thread) and remember what they delivered for their
own retries. The body is sent as plain text: without body_format Apprise's e-mail
plugin sends HTML and a text part with every line break squashed into a space.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import defaultdict
from typing import Any, Protocol

import aiomqtt
import apprise

from ingest.alarms.notify.config import Contact, MqttSettings
from ingest.alarms.notify.store import Delivery


class Channel(Protocol):
    async def send(self, contact: Contact, delivery: Delivery) -> str | None: ...


class AppriseChannel:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    async def send(self, contact: Contact, delivery: Delivery) -> str | None:
        notifier = apprise.Apprise()
        if contact.url is None or not notifier.add(contact.url):
            return f"not a valid Apprise URL: {contact.label}"
        result = await notifier.async_notify(
            body=delivery.body,
            title=delivery.title,
            notify_type=apprise.NotifyType(delivery.notify_type),
            body_format=apprise.NotifyFormat.TEXT,
            timeout=self.timeout_s,
        )
        if result:
            return None
        return _why(result) or f"{contact.label}: {result.status.name.lower()}"


def _why(result: apprise.AppriseResult) -> str:
    """Apprise's own account of a failure: its warnings and errors, in order."""
    loud = ("WARNING", "ERROR", "CRITICAL")
    words = [str(entry.message) for entry in result.logs() if str(entry.level) in loud]
    return "; ".join(dict.fromkeys(words))


class MqttChannel:
    """Publishes one JSON message per site of the message's alarms, QoS as configured,
    to the configured topic with {site} and {person} filled in. Whoever may subscribe
    there can use the ack links in it: keep the topic behind the broker's ACLs, or put
    {person} in it and give each person's device only its own topic."""

    _connections = itertools.count()

    def __init__(self, settings: MqttSettings, timeout_s: float) -> None:
        self.settings = settings
        self.timeout_s = timeout_s

    async def send(self, contact: Contact, delivery: Delivery) -> str | None:
        s = self.settings
        identifier = f"{s.client_id}-{os.getpid()}-{next(self._connections)}"
        try:
            async with aiomqtt.Client(
                s.host,
                s.port,
                identifier=identifier,
                username=s.username,
                password=s.password,
                timeout=self.timeout_s,
            ) as client:
                for topic, payload in mqtt_messages(s.topic, delivery):
                    await client.publish(topic, payload, qos=s.qos, timeout=self.timeout_s)
        except (aiomqtt.MqttError, OSError) as exc:
            return f"MQTT {s.host}:{s.port}: {exc}"
        return None


def mqtt_messages(topic: str, delivery: Delivery) -> list[tuple[str, bytes]]:
    by_site: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for alarm in delivery.alarms:
        by_site[str(alarm["site"])].append(alarm)
    out: list[tuple[str, bytes]] = []
    for site, alarms in sorted(by_site.items()):
        payload = {
            "version": 1,
            "kind": delivery.kind,
            "person": delivery.person,
            "title": delivery.title,
            "text": delivery.body,
            "notify_type": delivery.notify_type,
            "message_id": delivery.message_id,
            "created_ms": delivery.created_ms,
            "alarms": alarms,
        }
        out.append((topic.format(site=site, person=delivery.person), json.dumps(payload).encode()))
    return out
