"""A site of the tutorial's four devices (docs/your-own-devices.md), written for a test.

The profiles are the shipped examples (facility/profiles/examples/), copied into the
site's profiles/ folder as a user would. Asset kinds: `water_quality` stands in for any
kind here (its physics provides none of these profiles' signals, so every signal is
generated), which keeps these tests independent of the kinds as data work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "facility" / "profiles" / "examples"


def write_site(
    folder: Path,
    *,
    rtu_bus: str = "{id: rs485, transport: rtu_over_tcp, port: 15299}",
    meters_bus_extra: str = "",
    broker_port: int = 1883,
    flow_meter_extra: str = "",
    flow_meter_modbus: str = "",
) -> Path:
    """The four devices' site folder; returns it. `rtu_bus` is the pressure
    transmitter's bus (a real pty for serial tests)."""
    (folder / "profiles").mkdir(parents=True, exist_ok=True)
    for profile in EXAMPLES.glob("*.yaml"):
        shutil.copy(profile, folder / "profiles" / profile.name)
    (folder / "plant.yaml").write_text(
        f"""\
id: plant
kind: water_supply
broker: {{host: 127.0.0.1, port: {broker_port}}}
stations:
  - id: works
    buses:
      - {{id: meters, transport: tcp, port: 15298{meters_bus_extra}}}
      - {rtu_bus}
    assets:
      - {{id: gateway, kind: gateway}}
      - id: energy_meter
        kind: water_quality
        profile: energy_meter_sdm630
        modbus: {{bus: meters, unit_id: 1}}
      - id: flow_meter
        kind: water_quality
        profile: flow_meter_emf
        modbus: {{bus: meters, unit_id: 2{flow_meter_modbus}}}
{flow_meter_extra}\
      - id: outlet_pressure
        kind: water_quality
        profile: pressure_transmitter_rtu
        modbus: {{bus: rs485, unit_id: 5}}
        limits: {{pressure_bar: {{low: 3.0, high: 5.5}}}}
      - id: chlorine
        kind: water_quality
        profile: chlorine_analyser_mqtt
""",
        encoding="utf-8",
    )
    return folder
