"""The ingest's health as Prometheus samples (served by facility.metrics when the config
or `--metrics-port` names a port; docs/ingest.md lists them)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from facility.metrics import Sample, SampleMaker

if TYPE_CHECKING:
    from ingest.service import IngestService

PREFIX = "facility_ingest_"


def ingest_samples(service: IngestService) -> list[Sample]:
    labels = (("instance", service.config.settings.client_id),)
    r, s = service.receiver, service.store

    make = SampleMaker(PREFIX, labels)
    gauge, counter = make.gauge, make.counter

    samples = [
        gauge("broker_connected", "1 when subscribed at the broker", float(r.connected)),
        counter("broker_losses_total", "broker connections lost or refused", r.broker_losses),
        counter("batches_total", "batches stored and acknowledged", r.batches),
        counter("readings_in_total", "readings in stored batches", r.readings),
        counter("points_written_total", "points InfluxDB took", s.points_written),
        counter("readings_refused_total", "readings and lines sent to the dead letters", s.refused),
        counter(
            "batches_malformed_total",
            "messages that could not be decoded",
            sum(r.malformed.values()),
        ),
        counter("store_failures_total", "batches not stored (resent)", r.store_failures),
        counter(
            "not_stored_replies_total",
            "not-stored answers sent to gateways",
            r.not_stored_replies,
        ),
        Sample(
            PREFIX + "batch_store_seconds",
            "a batch received until stored (before its ack)",
            r.store_times,
            "histogram",
            labels,
        ),
        gauge("dead_letters_pending", "dead letters not replayed", service.dead_letters.count()),
        gauge(
            "influx_auth_failing",
            "1 while InfluxDB refuses the credentials",
            float(service.auth_failing),
        ),
    ]
    if r.broker_error:  # the reason as a label while there is one (refused, unreachable)
        samples.append(
            gauge(
                "broker_error",
                "1 while the broker cannot be reached or refuses us",
                1.0,
                (("reason", r.broker_error[:160]),),
            )
        )
    if service.alarms is not None:
        samples += _alarm_samples(service, gauge, counter)
    if service.notifier is not None:
        stats = service.notifier.stats()
        samples += [
            counter("notifications_sent_total", "notifications delivered", stats.sent),
            counter(
                "notification_failures_total",
                "delivery attempts that failed",
                stats.attempts_failed,
            ),
            gauge("notifications_pending", "deliveries not made yet", stats.pending),
            gauge("notifications_failing", "deliveries whose last try failed", stats.failed),
            counter("notifications_abandoned_total", "deliveries given up", stats.abandoned),
        ]
    return samples


def _alarm_samples(service: IngestService, gauge: _Make, counter: _Make) -> list[Sample]:
    assert service.alarms is not None
    from ingest.alarms.model import AlarmState, Priority

    alarms = service.alarms.book.active()
    counts = Counter((a.priority, a.state) for a in alarms)
    active = Counter(a.priority for a in alarms if a.active and not a.hidden)
    samples = [
        gauge(
            "alarms_active",
            "alarms whose condition is active, in view, by priority",
            active[p],
            (("priority", p.value),),
        )
        for p in Priority
    ]
    samples += [
        gauge(
            "alarms",
            "alarms not normal, by priority and state",
            counts[(p, st)],
            (("priority", p.value), ("state", st.value)),
        )
        for p in Priority
        for st in AlarmState
        if st is not AlarmState.NORMAL
    ]
    samples += [
        gauge("alarms_hidden", "alarms shelved or out of service", sum(a.hidden for a in alarms)),
        counter("alarm_transitions_total", "alarm transitions", service.alarms.transitions),
        counter("alarm_evaluations_total", "rule evaluations", service.alarms.engine.evaluations),
    ]
    return samples


if TYPE_CHECKING:
    from collections.abc import Callable

    _Make = Callable[..., Sample]
