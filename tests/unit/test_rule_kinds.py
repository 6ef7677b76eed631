"""Rule kinds chosen once: every rule model has its evaluator, and a kind added as one
model plus one registered evaluator runs through the engine's delays, inhibition and
words with no change to the engine."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Literal, cast, get_args

import pytest

from facility.config import SiteConfig
from facility.wire import Reading, Value
from ingest.alarms.engine import AlarmEngine
from ingest.alarms.evaluators import EVALUATORS, AssetValues, Evaluator, evaluates
from ingest.alarms.model import AlarmKey, Priority
from ingest.alarms.rules import Rule, RuleBase, RuleSet, load_rules
from tests.conftest import ROOT

RULES = ROOT / "deploy" / "alarms" / "rules.yaml"
T0 = 1_780_264_800_000
TANK = "fengshou/xiba/tank_no4"


class OddLevelRule(RuleBase):
    """A made-up kind: the level's centimetres are odd."""

    kind: Literal["odd_level"]
    signal: str


class OddLevelEvaluator(Evaluator):
    def condition(self, state: AssetValues, ts: int, active: bool) -> tuple[bool | None, Value]:
        value = state.values.get("level_m")
        if not isinstance(value, float):
            return None, value
        return round(value * 100) % 2 == 1, value

    def raise_words(self, state: AssetValues, ts: int) -> str:
        return f"odd level {state.values.get('level_m')}"


@pytest.fixture
def odd_level_registered() -> Iterator[None]:
    evaluates(OddLevelRule)(OddLevelEvaluator)
    try:
        yield
    finally:
        del EVALUATORS[OddLevelRule]


def test_every_rule_model_has_its_evaluator() -> None:
    union = get_args(Rule)[0]
    models = set(get_args(union))
    assert len(models) == 7
    assert models <= set(EVALUATORS), f"no evaluator for {models - set(EVALUATORS)}"


def test_a_kind_is_one_model_and_one_evaluator(
    demo_config: SiteConfig, odd_level_registered: None
) -> None:
    rules = load_rules(RULES, demo_config)
    tank = next(b for b in rules.bound if b.path == TANK and b.id == "tank_level_high")
    odd = OddLevelRule(kind="odd_level", signal="level_m", priority=Priority.LOW, on_delay=10)
    # the Rule union is closed for loading from YAML; the engine needs only the model
    bound = replace(tank, id="odd_level", rule=cast(Rule, odd), message=(), clear_message=())
    engine = AlarmEngine(RuleSet(rules.file, rules.rules, [bound]), demo_config)

    def level(at_s: int, value: float) -> list[tuple[bool, str]]:
        reading = Reading("tank_no4", "level_m", T0 + at_s * 1000, value)
        changes = engine.observe("fengshou", "xiba", [reading], T0 + at_s * 1000)
        assert all(c.key == AlarmKey("fengshou", "xiba", "tank_no4", "odd_level") for c in changes)
        return [(c.active, c.message) for c in changes]

    assert level(0, 3.01) == []
    assert level(5, 3.03) == []  # its on-delay, from the engine
    assert level(10, 3.05) == [(True, "No.4 Xiba Songshan tank: odd level 3.05")]
    assert level(15, 3.07) == []
    assert level(20, 3.08) == [(False, "No.4 Xiba Songshan tank: odd level: back to normal")]


def test_a_model_without_an_evaluator_is_refused_when_the_engine_is_built(
    demo_config: SiteConfig,
) -> None:
    rules = load_rules(RULES, demo_config)
    tank = next(b for b in rules.bound if b.path == TANK)
    odd = OddLevelRule(kind="odd_level", signal="level_m", priority=Priority.LOW)
    bound = replace(tank, id="odd_level", rule=cast(Rule, odd))
    with pytest.raises(TypeError, match="rule odd_level: no evaluator for OddLevelRule"):
        AlarmEngine(RuleSet(rules.file, rules.rules, [bound]), demo_config)
