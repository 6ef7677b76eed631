"""A site of the tutorial's four kinds of device (docs/your-own-devices.md), for tests.

Their profiles (tests/data/own_devices/profiles/) carry `simulate:` blocks and are
copied into the site's profiles/ folder as a user would add their own. Asset kinds:
`water_quality` stands in for any kind (its ClO2 physics shares only `ph` and
`water_temp_c` with these profiles, and their `simulate:` blocks win), which keeps
these tests independent of the kinds-as-data work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

PROFILES = Path(__file__).resolve().parent / "data" / "own_devices" / "profiles"


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
    for profile in PROFILES.glob("*.yaml"):
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
        profile: pressure_transmitter_485
        modbus: {{bus: rs485, unit_id: 5}}
        limits: {{pressure_bar: {{low: 3.0, high: 5.5}}}}
      - id: chlorine
        kind: water_quality
        profile: chlorine_analyser_mqtt
""",
        encoding="utf-8",
    )
    return folder
