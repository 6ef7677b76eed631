"""The gateway's health as Prometheus samples and as a status file on its own disk.

The same samples go to `/metrics` (when a metrics port is set: facility.metrics) and,
every health interval and at stop, to `<site>-<station>.status.json` next to the outbox,
so `facility gateway status` can show them with no network at all (docs/gateway.md).
No prometheus_client here: a gateway without a metrics port never imports it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facility.clock import now_ms
from facility.metrics import Sample, SampleMaker, samples_as_json

if TYPE_CHECKING:
    from gateway.daemon import Gateway

PREFIX = "facility_gateway_"
STATUS_VERSION = 1


def gateway_samples(gw: Gateway) -> list[Sample]:
    labels = (("site", gw.site_id), ("station", gw.station_id))
    now = now_ms()
    box = gw.outbox.stats()
    up = gw.uplink.stats
    polled = [d for b in gw.buses.values() for d in b.worker.devices]
    answering = sum(1 for d in polled if d.status.ok)

    make = SampleMaker(PREFIX, labels)
    gauge, counter = make.gauge, make.counter

    oldest_age = (now - box.oldest_ts_ms) / 1000 if box.oldest_ts_ms else 0.0
    last_ack_age = (now - up.last_ack_ms) / 1000 if up.last_ack_ms else -1.0
    dropped = (
        ("overflow", box.dropped_readings_overflow),
        ("age", box.dropped_readings_age),
        ("disk_full", gw.counters.readings_lost_disk_full),
    )
    samples = [
        gauge("outbox_readings", "readings waiting in the outbox", box.readings),
        gauge("outbox_bytes", "bytes of the outbox's chunks", box.bytes),
        gauge("outbox_chunks", "chunks in the outbox", box.chunks),
        gauge("outbox_oldest_age_seconds", "age of the oldest waiting reading", oldest_age),
        gauge("in_flight_readings", "readings sent, not yet acknowledged", box.in_flight_readings),
        counter("readings_in_total", "readings acquired from devices", gw.counters.readings_in),
        counter(
            "readings_suppressed_total",
            "readings left out by report by exception",
            gw.counters.readings_suppressed,
        ),
        counter("readings_sent_total", "readings sent upstream (resends too)", up.readings_sent),
        counter("readings_out_total", "readings acknowledged by the ingest", up.readings_acked),
        *(
            counter("readings_dropped_total", "readings lost, by reason", n, (("reason", why),))
            for why, n in dropped
        ),
        gauge("devices", "polled devices", len(polled)),
        gauge("devices_answering", "polled devices whose last poll succeeded", answering),
        counter("device_errors_total", "failed polls", sum(d.status.failures for d in polled)),
        counter("poll_overruns_total", "polls that overran", sum(d.overruns for d in polled)),
        gauge("uplink_connected", "1 when connected to the central broker", float(up.connected)),
        counter("uplink_connects_total", "connections made to the central broker", up.connects),
        counter("batches_sent_total", "batches sent upstream", up.batches_sent),
        counter("batches_acked_total", "batches acknowledged", up.batches_acked),
        counter("batches_expired_total", "batches resent after no ack", up.batches_expired),
        counter(
            "batches_not_stored_total",
            "batches resent after the ingest answered not stored",
            up.batches_not_stored,
        ),
        gauge("last_ack_age_seconds", "since the last ack (-1: none yet)", last_ack_age),
        Sample(
            PREFIX + "batch_round_trip_seconds",
            "a batch sent until its ack",
            up.round_trips,
            "histogram",
            labels,
        ),
        counter("task_restarts_total", "supervised tasks restarted", gw.counters.task_restarts),
        gauge("stalled_tasks", "bus workers not finishing polls", len(gw.stalled())),
    ]
    # Why the broker refuses or dropped us (gateway/uplink fills it when it can say):
    # a sample with the reason as its label while there is one, the usual "info" shape.
    uplink_error = _text(getattr(up, "error", ""))
    if uplink_error:
        samples.append(
            gauge(
                "uplink_error",
                "1 while the central broker refuses or dropped us",
                1.0,
                (("reason", uplink_error),),
            )
        )
    if gw.mqtt is not None:
        samples += [
            gauge(
                "device_broker_connected",
                "1 when connected to the device broker",
                gw.mqtt.connected,
            ),
            counter("mqtt_received_total", "device messages received", gw.mqtt.received),
            counter(
                "mqtt_rejected_total", "device messages refused", sum(gw.mqtt.rejected.values())
            ),
        ]
        for name, attribute, help_ in (
            ("mqtt_unmatched_total", "unmatched", "a profile's JSON path found nothing"),
            ("mqtt_restamped_total", "restamped", "device readings stamped on receipt"),
        ):
            count = getattr(gw.mqtt, attribute, None)
            if isinstance(count, int):
                samples.append(counter(name, help_, count))
        device_error = _text(getattr(gw.mqtt, "connect_error", ""))
        if device_error:
            samples.append(
                gauge(
                    "device_broker_error",
                    "1 while the device broker refuses or dropped us",
                    1.0,
                    (("reason", device_error),),
                )
            )
    return samples


def _text(value: object, limit: int = 160) -> str:
    return value[:limit] if isinstance(value, str) else ""


def status_path(data_dir: Path, site: str, station: str) -> Path:
    return data_dir / f"{site}-{station}.status.json"


def write_status(gw: Gateway, path: Path, running: bool = True) -> None:
    """Atomically: a reader never sees half a file, a crash leaves the previous one."""
    document: dict[str, Any] = {
        "version": STATUS_VERSION,
        "site": gw.site_id,
        "station": gw.station_id,
        "pid": os.getpid(),
        "running": running,
        "written_ms": now_ms(),
        "started_ms": gw.started_ms,
        "uplink_error": _text(getattr(gw.uplink.stats, "error", "")),
        "samples": samples_as_json(gateway_samples(gw)),
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)
