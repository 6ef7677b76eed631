"""The alarm rules held to the simulators' labelled fault scenarios, on an accelerated
clock. Over the whole run of each scenario: every expected alarm is raised exactly once,
on its asset, with its priority, within its deadline of the fault's start; it is back to
normal within the physics' recovery (`clears_within`) plus its rule's off-delay of the
fault's end (or still active at the end, for a fault that lasts); no other alarm is
raised anywhere. A nominal simulated week raises nothing.

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
from ingest.alarms.engine import AlarmEngine
from ingest.alarms.model import ConditionChange
from ingest.alarms.rules import load_rules
from simulators.engine import Simulation
from simulators.scenario import Expectation, Fault, Scenario, load_scenario
from tests.conftest import DEMO_SITE, ROOT
from wiring.history import GatewayView

SCENARIOS = DEMO_SITE / "scenarios"
RULES = ROOT / "deploy" / "alarms" / "rules.yaml"
POLL_MS = 5_000


@dataclass
class Feed:
    """Drives a Simulation and hands each station's poll to the engine as a batch."""

    sim: Simulation
    engine: AlarmEngine
    poll_ms: int = POLL_MS
    changes: list[ConditionChange] = field(default_factory=list)
    view: GatewayView = field(init=False)

    def __post_init__(self) -> None:
        self.view = GatewayView(self.sim)

    @property
    def raised(self) -> list[ConditionChange]:
        return [c for c in self.changes if c.active]

    def run_until(self, end_ms: int) -> None:
        while self.sim.t_ms < end_ms:
            polls = self.view.poll(self.sim.advance_to(self.sim.t_ms + self.poll_ms))
            for (site, station), readings in polls.items():
                if (site, station, "gateway") in self.sim.links_down:
                    continue
                self.changes += self.engine.observe(site, station, readings, self.sim.t_ms)
            self.changes += self.engine.tick(self.sim.t_ms)


def start(config: SiteConfig, scenario: Scenario, poll_s: float = 5.0) -> Feed:
    assert scenario.start is not None
    start_ms = int(scenario.start.timestamp() * 1000)
    sim = Simulation(
        config, seed=scenario.seed or 1, start_ms=start_ms, scenario=scenario, step_s=poll_s
    )
    return Feed(sim, AlarmEngine(load_rules(RULES, config), config), int(poll_s * 1000))


def fault_scenarios() -> list[Path]:
    return sorted(p for p in SCENARIOS.glob("*.yaml") if p.stem not in ("nominal",))


Which = tuple[str, str]  # (rule, site/station/asset)


def expected_alarms(scenario: Scenario) -> dict[Which, list[tuple[Fault, Expectation]]]:
    """Per alarm, the faults that must raise it, in time order (one raise each)."""
    expected: dict[Which, list[tuple[Fault, Expectation]]] = {}
    for fault in sorted(scenario.faults, key=lambda f: f.at_s):
        assert fault.expectations, f"{fault.kind} on {fault.target} names no alarm"
        site, station, asset = fault.key
        for e in fault.expectations:
            expected.setdefault((e.alarm, f"{site}/{station}/{e.asset or asset}"), []).append(
                (fault, e)
            )
    return expected


@pytest.mark.parametrize("path", fault_scenarios(), ids=lambda p: p.stem)
def test_each_fault_raises_exactly_its_alarm_once_in_time_and_it_returns_to_normal(
    path: Path, demo_config: SiteConfig
) -> None:
    scenario = load_scenario(path, demo_config)
    feed = start(demo_config, scenario)
    begin_ms = feed.sim.t_ms
    feed.run_until(begin_ms + int(scenario.duration_s * 1000))
    expected = expected_alarms(scenario)
    unexpected = [str(c.key) for c in feed.raised if (c.key.rule, c.key.asset_path) not in expected]
    assert not unexpected, f"alarms nobody expected: {unexpected}"
    for which, faults in expected.items():
        history = [c for c in feed.changes if (c.key.rule, c.key.asset_path) == which]
        raised = [i for i, c in enumerate(history) if c.active]
        assert len(raised) == len(faults), f"{which}: raised {len(raised)} times in the run"
        for (fault, expectation), i in zip(faults, raised, strict=True):
            check_raised(history[i], fault, expectation, begin_ms)
            check_back_to_normal(history[i + 1 :], fault, expectation, begin_ms, feed)


def check_raised(
    change: ConditionChange, fault: Fault, expectation: Expectation, begin_ms: int
) -> None:
    assert change.priority == expectation.priority, change.key
    late_s = (change.at_ms - begin_ms) / 1000 - fault.at_s
    assert 0 <= late_s <= expectation.within_s, (
        f"{change.key} raised {late_s:.0f} s after the start"
    )


def check_back_to_normal(
    after: list[ConditionChange], fault: Fault, expectation: Expectation, begin_ms: int, feed: Feed
) -> None:
    """The change that follows the raise ends it, soon enough after the fault ends; a
    fault that lasts to the end keeps its alarm active."""
    if fault.duration_s is None:
        assert not after, f"{expectation.alarm} cleared while its fault lasts"
        return
    assert after and not after[0].active, f"{expectation.alarm} still active at the end"
    off_delay_s = feed.engine.rules.rules[expectation.alarm].off_delay
    ends_ms = begin_ms + int((fault.at_s + fault.duration_s) * 1000)
    back_s = (after[0].at_ms - ends_ms) / 1000
    allowed_s = expectation.clears_within_s + off_delay_s
    assert back_s <= allowed_s, f"{after[0].key} back to normal {back_s:.0f} s after the fault"


def test_a_nominal_week_raises_no_alarm(demo_config: SiteConfig) -> None:
    scenario = load_scenario(SCENARIOS / "nominal.yaml", demo_config)
    feed = start(demo_config, scenario, poll_s=30.0)  # a week at 5 s polls takes minutes
    feed.run_until(feed.sim.t_ms + 7 * 86_400_000)
    assert [str(c.key) for c in feed.raised] == []
    assert feed.engine.evaluations > 1_000_000
