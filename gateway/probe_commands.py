"""`facility probe SITE --device SITE/STATION/ASSET`: read one device once and show it.

The command's printing; the reading itself is `gateway/probe.py`, the gateway's own bus
code. Loaded only when `facility probe` runs (wiring/cli.py registers it lazily).
"""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from facility.codec import INTEGER_TYPES, DataType
from facility.config import SiteConfig, load_site_config
from facility.console import exit_on_config_error
from facility.profile import ModbusProfile, ModbusSignal, MqttProfile
from facility.site import AssetRef
from facility.sourcemap import ConfigError
from gateway.probe import ModbusProbe, MqttProbe, bus_address, describe, probe_modbus, probe_mqtt

console = Console(width=160, highlight=False)
err = Console(stderr=True)


def probe(
    path: Annotated[
        Path, typer.Argument(help="Site folder (every *.yaml a site) or one site file.")
    ],
    device: Annotated[str, typer.Option(help="Which device: SITE/STATION/ASSET.")],
    host: Annotated[str | None, typer.Option(help="Override the bus's host (TCP buses).")] = None,
    port: Annotated[int | None, typer.Option(help="Override the bus's port (TCP buses).")] = None,
    serial_port: Annotated[str | None, typer.Option(help="Override the serial port (RTU).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Request timeout, seconds.")] = None,
    broker: Annotated[
        str | None, typer.Option(help="MQTT devices: broker HOST:PORT (default: the site's).")
    ] = None,
    seconds: Annotated[float, typer.Option(help="MQTT devices: listen this long.")] = 10.0,
) -> None:
    """Read one device once with its profile and show what it answers.

    Modbus: each request with its outcome, each signal's raw registers, value, unit and
    quality, the plan learned on exception 2. MQTT: listen, show how each message maps
    and which signals matched nothing and why."""
    for quiet in ("gateway", "pymodbus"):  # the probe prints what happened itself
        logging.getLogger(quiet).setLevel(logging.CRITICAL)
    try:
        config = load_site_config(path)
    except ConfigError as exc:
        exit_on_config_error(err, exc, path)
    ref = _find(config, device)
    profile = config.profile_of(ref)
    if isinstance(profile, MqttProfile):
        mqtt_host, mqtt_port = ref.site.broker.host, ref.site.broker.port
        if broker is not None:
            given_host, _, given_port = broker.rpartition(":")
            mqtt_host, mqtt_port = given_host or "127.0.0.1", int(given_port)
        heard = asyncio.run(probe_mqtt(ref, profile, mqtt_host, mqtt_port, seconds))
        _print_mqtt(heard, seconds)
        raise typer.Exit(1 if heard.error or heard.unmatched() else 0)
    assert isinstance(profile, ModbusProfile) and ref.asset.modbus is not None
    bus = ref.station.bus(ref.asset.modbus.bus)
    update: dict[str, object] = {}
    if host is not None:
        update["host"] = host
    if port is not None:
        update["port"] = port
    if serial_port is not None:
        update["serial_port"] = serial_port
    if timeout is not None:
        update["timeout_s"] = timeout
    result = asyncio.run(probe_modbus(config, ref, bus.model_copy(update=update)))
    _print_modbus(result)
    raise typer.Exit(1 if result.error else 0)


def _find(config: SiteConfig, device: str) -> AssetRef:
    for ref in config.assets():
        if ref.path == device:
            if ref.asset.profile is None:
                err.print(f"[red]error[/red] --device {device!r} has no device profile")
                raise typer.Exit(2)
            return ref
    devices = ", ".join(r.path for r in config.assets() if r.asset.profile)
    err.print(f"[red]error[/red] --device {device!r}: no such device (devices: {devices})")
    raise typer.Exit(2)


def _print_modbus(p: ModbusProbe) -> None:
    unit = p.ref.asset.modbus.unit_id if p.ref.asset.modbus else 0
    console.print(
        f"{p.ref.path}: profile {p.profile.profile}, {bus_address(p.bus)}, unit {unit}, "
        f"byte order {p.profile.byte_order.value}, address base {p.profile.address_base}"
    )
    console.print(f"plan: {len(p.initial_plan)} requests (max_gap {p.bus.max_gap})")
    for i, outcome in enumerate(p.requests, 1):
        style = "green" if outcome.outcome == "ok" else "red"
        console.print(
            f"  request {i}: {describe(outcome.request, p.profile)} -> "
            f"[{style}]{outcome.outcome}[/{style}] ({outcome.rtt_ms:.1f} ms)"
        )
    for text in p.learned:
        console.print(f"learned: {text}")
        for request in p.final_plan:
            console.print(f"  {describe(request, p.profile)}")
    values = {r.signal: r for r in p.readings}
    table = Table(title="signals", title_justify="left")
    for col in ("signal", "table", "address", "type", "raw registers", "value", "unit", "quality"):
        table.add_column(col)
    for signal in p.profile.signals:
        raw = p.raw_of(signal.name)
        reading = values.get(signal.name)
        if signal.name in p.refused:
            value, quality = "-", "refused (exception 2 alone)"
        elif reading is None:
            value, quality = "-", "not read"
        else:
            value = _show(reading.value, signal)
            if signal.enum and isinstance(reading.value, int):
                value += f" ({signal.enum.get(reading.value, 'unknown code')})"
            quality = "good" if reading.quality == "g" else "bad (NaN or infinite)"
        kind = signal.type.value + (f".{signal.bit}" if signal.bit is not None else "")
        order = f" {p.profile.order_of(signal).value}" if signal.count > 1 else ""
        table.add_row(
            signal.name,
            signal.table.value,
            str(signal.address),
            kind + order,
            " ".join(f"{r:04X}" for r in raw) if raw is not None else "-",
            value,
            signal.unit,
            quality,
        )
    console.print(table)
    if p.error:
        console.print(f"[red]device failed[/red]: {p.error}")


def _show(value: object, signal: ModbusSignal) -> str:
    """A value as precise as its encoding: float32 to 7 digits, scaled integers to the
    scale's decimals (not the binary noise of raw x scale)."""
    if not isinstance(value, float):
        return str(value)
    if signal.type is DataType.FLOAT32:
        return f"{value:.7g}"
    if signal.type in INTEGER_TYPES:
        decimals = max(0, -math.floor(math.log10(abs(signal.scale))))
        return f"{value:.{decimals}f}"
    return repr(value)


def _print_mqtt(p: MqttProbe, seconds: float) -> None:
    host, port = p.broker
    console.print(f"{p.ref.path}: profile {p.profile.profile}, mqtt {host}:{port}")
    for topic, key in p.topics.items():
        console.print(f"  topic {key}: {topic}")
    if p.error:
        console.print(f"[red]error[/red] {p.error}")
    extra = f" ({p.not_kept} more not kept)" if p.not_kept else ""
    console.print(f"{len(p.messages)} messages in {seconds:g} s{extra}")
    for message in p.messages:
        text = message.payload[:200].decode("utf-8", errors="replace")
        console.print(f"  {message.topic} {text}")
        for name, value in message.mapped.items():
            console.print(f"    [green]{name}[/green] = {value!r}")
        for name, why in message.problems.items():
            console.print(f"    [red]{name}[/red]: {why}")
    unmatched = p.unmatched()
    if unmatched:
        console.print("signals that matched nothing:")
        for name, why in unmatched.items():
            console.print(f"  {name}: {why}")
    else:
        console.print("every signal matched")
    if p.other_topics:
        seen = ", ".join(f"{t} ({n})" for t, n in p.other_topics.most_common(10))
        console.print(f"messages on other topics: {seen}")
