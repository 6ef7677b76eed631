"""Why a broker connection failed, in words an operator can act on."""

from __future__ import annotations

from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode


def connect_reason(exc: Exception) -> str:
    """What went wrong; a broker's refusal names its CONNACK reason code."""
    if isinstance(exc, MqttConnectError):
        code = getattr(exc.rc, "value", exc.rc)
        words = exc.rc.getName() if isinstance(exc.rc, ReasonCode) else str(exc)
        return f"connection refused by the broker: {words} (CONNACK reason code {code})"
    return str(exc) or type(exc).__name__


def refused(exc: Exception) -> bool:
    """The broker answered and said no: retrying will not help until someone acts."""
    return isinstance(exc, MqttConnectError)
