"""The alarm notifier: route alarm transitions to the crew on duty, group them, tell
people through Apprise and MQTT, remind and escalate until acknowledged. See README.md."""

from ingest.alarms.notify.config import NotifyConfig, load_notify_config
from ingest.alarms.notify.notifier import Notifier, NotifierStats
from ingest.alarms.notify.store import Delivery, DeliveryStatus

__all__ = [
    "Delivery",
    "DeliveryStatus",
    "Notifier",
    "NotifierStats",
    "NotifyConfig",
    "load_notify_config",
]
