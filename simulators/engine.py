"""The simulation engine: world + faults, stepped in fixed increments of simulated time.

Sources of device data share one small interface (`FeedSource`): the physics engine
(`Simulation`) and the replay of a recorded feed (`simulators.feed.Replay`). The async
runner serves whichever it is given over Modbus and MQTT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from facility.config import SiteConfig
from simulators.faults import FaultEvent, FaultInjector
from simulators.generator import build_generators, model_values
from simulators.modbus_server import UnitFault
from simulators.physics.common import Value
from simulators.physics.parking import DeviceMessage
from simulators.scenario import NOMINAL, Scenario
from simulators.world import AssetKey, World

StationKey = tuple[str, str]


@dataclass
class Advance:
    """What happened while a source moved forward in time."""

    messages: list[tuple[StationKey, DeviceMessage]] = field(default_factory=list)
    faults: list[FaultEvent] = field(default_factory=list)


class FeedSource(Protocol):
    @property
    def t_ms(self) -> int: ...

    @property
    def comms(self) -> dict[AssetKey, UnitFault]: ...

    @property
    def links_down(self) -> set[AssetKey]: ...

    def advance_to(self, t_ms: int) -> Advance: ...

    def values(self, key: AssetKey) -> dict[str, Value]: ...


class Simulation:
    """Physics plus scheduled faults. Deterministic for a given seed and scenario."""

    def __init__(
        self,
        config: SiteConfig,
        *,
        seed: int,
        start_ms: int,
        scenario: Scenario = NOMINAL,
        step_s: float = 1.0,
    ) -> None:
        self.config = config
        self.scenario = scenario
        self.step_s = step_s
        self.start_ms = start_ms
        self.world = World.build(config, seed, start_ms)
        self.generated = build_generators(config, self.world, start_ms)
        self._publishing = {k for k, d in self.generated.items() if d.mqtt}
        self.injector = FaultInjector(scenario, self.world, start_ms)
        self.injector.source_values = self._source_values

    @property
    def t_ms(self) -> int:
        return self.world.t_ms

    @property
    def comms(self) -> dict[AssetKey, UnitFault]:
        return self.injector.comms

    @property
    def links_down(self) -> set[AssetKey]:
        return self.injector.links_down

    def advance_to(self, t_ms: int) -> Advance:
        out = Advance()
        step_ms = int(self.step_s * 1000)
        while self.world.t_ms + step_ms <= t_ms:
            out.faults.extend(self.injector.update(self.world.t_ms))
            out.messages.extend(self._silenced(self.world.step(self.step_s)))
            for device in self.generated.values():
                device.step(self.step_s)
                if device.mqtt and device.key not in self.comms:
                    sent = device.messages(self.values(device.key))
                    out.messages.extend((device.key[:2], m) for m in sent)
        return out

    def _silenced(
        self, messages: list[tuple[StationKey, DeviceMessage]]
    ) -> list[tuple[StationKey, DeviceMessage]]:
        """An MQTT device that is not responding publishes nothing; a device the
        generator publishes for (values, overrides and faults merged) only through it."""
        mute = set(self.comms) | self._publishing
        if not mute:
            return messages
        return [(st, m) for st, m in messages if (*st, m.asset) not in mute]

    def values(self, key: AssetKey) -> dict[str, Value]:
        return self.injector.filter(key, self._source_values(key), self.world.t_ms)

    def _source_values(self, key: AssetKey) -> dict[str, Value]:
        """The asset's model's values, with generated signals over them."""
        values = model_values(self.world, key)
        device = self.generated.get(key)
        if device is not None:
            values.update(device.values())
        return values
