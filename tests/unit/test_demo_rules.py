"""The demo's alarm rules at its speed: the gateways stamp readings with the real clock
while the physics runs faster, so per-minute limits of rate rules are scaled by the
speed, and nothing else changes."""

from __future__ import annotations

from pathlib import Path

from facility.config import SiteConfig
from ingest.alarms.rules import RateRule, ThresholdRule, load_rules
from tests.conftest import ROOT
from wiring.demo import rules_at_speed

RULES = ROOT / "deploy" / "alarms" / "rules.yaml"


def test_rate_limits_scale_with_the_demo_speed(tmp_path: Path, demo_config: SiteConfig) -> None:
    plain = load_rules(RULES, demo_config)
    scaled_path = rules_at_speed(RULES, 60, tmp_path)
    assert scaled_path != RULES
    scaled = load_rules(scaled_path, demo_config)
    assert scaled.rules.keys() == plain.rules.keys()
    rates = [rid for rid, rule in plain.rules.items() if isinstance(rule, RateRule)]
    assert rates, "the demo rules have a rate rule"
    for rid, rule in plain.rules.items():
        fast = scaled.rules[rid]
        if isinstance(rule, RateRule):
            assert isinstance(fast, RateRule)
            for name in ("max_rise_per_min", "max_fall_per_min", "deadband"):
                before, after = getattr(rule, name), getattr(fast, name)
                assert after == (None if before is None else before * 60), (rid, name)
            assert fast.on_delay == rule.on_delay  # delays pass in real time already
        else:
            assert fast == rule, rid
    assert any(isinstance(r, ThresholdRule) for r in scaled.rules.values())


def test_at_real_speed_the_rules_file_is_used_as_it_is(tmp_path: Path) -> None:
    assert rules_at_speed(RULES, 1, tmp_path) == RULES
    assert list(tmp_path.iterdir()) == []
