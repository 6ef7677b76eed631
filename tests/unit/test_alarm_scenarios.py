"""The alarm rules held to the simulators' labelled fault scenarios, on an accelerated
clock: every fault raises exactly its expected alarm, on its asset, with its priority,
within its deadline, once; a nominal simulated week raises nothing.

The feed is what the gateways would send: every asset's reported values each poll
(5 s), the device status a gateway derives from the simulated comms faults (a device
that does not answer, or answers with an exception), and no batch at all from a
station whose uplink is cut. The same path through real gateways is in
tests/integration/test_alarms_e2e.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from facility.config import SiteConfig
from facility.history import GatewayView
from ingest.alarms.engine import AlarmEngine
from ingest.alarms.model import ConditionChange
from ingest.alarms.rules import load_rules
from simulators.engine import Simulation
from simulators.scenario import Scenario, load_scenario
from tests.conftest import DEMO_SITE, ROOT

SCENARIOS = DEMO_SITE / "scenarios"
RULES = ROOT / "deploy" / "alarms" / "rules.yaml"
POLL_MS = 5_000


@dataclass
class Feed:
    """Drives a Simulation and hands each station's poll to the engine as a batch."""

    sim: Simulation
    engine: AlarmEngine
    poll_ms: int = POLL_MS
    raised: list[ConditionChange] = field(default_factory=list)
    cleared: list[ConditionChange] = field(default_factory=list)
    view: GatewayView = field(init=False)

    def __post_init__(self) -> None:
        self.view = GatewayView(self.sim)

    def run_until(self, end_ms: int) -> None:
        while self.sim.t_ms < end_ms:
            polls = self.view.poll(self.sim.advance_to(self.sim.t_ms + self.poll_ms))
            for (site, station), readings in polls.items():
                if (site, station, "gateway") in self.sim.links_down:
                    continue
                self._take(self.engine.observe(site, station, readings, self.sim.t_ms))
            self._take(self.engine.tick(self.sim.t_ms))

    def _take(self, changes: list[ConditionChange]) -> None:
        for change in changes:
            (self.raised if change.active else self.cleared).append(change)


def start(config: SiteConfig, scenario: Scenario, poll_s: float = 5.0) -> Feed:
    assert scenario.start is not None
    start_ms = int(scenario.start.timestamp() * 1000)
    sim = Simulation(
        config, seed=scenario.seed or 1, start_ms=start_ms, scenario=scenario, step_s=poll_s
    )
    return Feed(sim, AlarmEngine(load_rules(RULES, config), config), int(poll_s * 1000))


def fault_scenarios() -> list[Path]:
    return sorted(p for p in SCENARIOS.glob("*.yaml") if p.stem not in ("nominal",))


@pytest.mark.parametrize("path", fault_scenarios(), ids=lambda p: p.stem)
def test_each_fault_raises_exactly_its_alarm_within_its_deadline_once(
    path: Path, demo_config: SiteConfig
) -> None:
    scenario = load_scenario(path, demo_config)
    feed = start(demo_config, scenario)
    feed.run_until(feed.sim.t_ms + int(scenario.duration_s * 1000))
    begin_ms = feed.sim.t_ms - int(scenario.duration_s * 1000)
    expected = [
        (f, e, (e.alarm, e.asset or f.target)) for f in scenario.faults for e in f.expectations
    ]
    assert all(f.expectations for f in scenario.faults), "every fault names its alarm"
    got = [((c.key.rule, c.key.asset_path), c) for c in feed.raised]
    unexpected = [str(c.key) for which, c in got if which not in {w for _, _, w in expected}]
    assert not unexpected, f"alarms nobody expected: {unexpected}"
    for fault, expectation, which in expected:
        begins = begin_ms + int(fault.at_s * 1000)
        ends = begins + int((fault.duration_s or scenario.duration_s) * 1000)
        raised = [c for w, c in got if w == which and begins <= c.at_ms <= ends]
        assert len(raised) == 1, f"{which}: raised {len(raised)} times during the fault"
        assert raised[0].priority == expectation.priority
        late_s = (raised[0].at_ms - begins) / 1000
        assert late_s <= expectation.within_s, f"{which} raised {late_s:.0f} s after the start"


def test_a_nominal_week_raises_no_alarm(demo_config: SiteConfig) -> None:
    scenario = load_scenario(SCENARIOS / "nominal.yaml", demo_config)
    feed = start(demo_config, scenario, poll_s=30.0)  # a week at 5 s polls takes minutes
    feed.run_until(feed.sim.t_ms + 7 * 86_400_000)
    assert [str(c.key) for c in feed.raised] == []
    assert feed.engine.evaluations > 1_000_000
