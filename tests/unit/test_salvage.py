"""Shape errors hide nothing (facility/salvage.py): whatever junk lands in a rules file
or a notifier config, loading ends in the config or a ConfigError whose every issue
names the file and a line, never in another exception; and a junk field among good
rules leaves the others' meaning errors reported in the same run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facility.config import SiteConfig, load_site_config
from facility.sourcemap import ConfigError
from ingest.alarms.notify.config import load_notify_config
from ingest.alarms.rules import load_rules
from tests.conftest import ROOT

# A small site: each example binds every rule to it, and the demo's 80 assets make
# that slow; the demo itself is in test_a_junk_field_in_one_rule_leaves_the_others_checked.
SMALL_SITE = load_site_config(ROOT / "tests" / "testcases" / "site" / "valid_minimal")
RULES = yaml.safe_load((ROOT / "deploy" / "alarms" / "rules.yaml").read_text())
NOTIFY = yaml.safe_load((ROOT / "deploy" / "alarms" / "notify.yaml").read_text())

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)


def spoil(data: Any, choices: list[int], value: Any, name: str) -> Any:
    """Put `value` at a place in `data` picked by `choices`: replace an item or a
    field, or add a field called `name`."""
    node = data
    for i, choice in enumerate(choices):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = keys[choice % len(keys)]
        last = i == len(choices) - 1
        child = node[key]
        if last or not isinstance(child, dict | list) or not child:
            if isinstance(node, dict) and choice % 3 == 0:
                node[name] = value
            else:
                node[key] = value
            break
        node = child
    return data


def loads_or_names_lines(load: Any, path: Path) -> None:
    try:
        load()
    except ConfigError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert issue.file == str(path) and issue.line >= 0, issue
            assert issue.message, issue


LOADERS: dict[str, tuple[Any, Callable[[Path], object]]] = {
    "rules": (RULES, lambda path: load_rules(path, SMALL_SITE)),
    "notify": (NOTIFY, lambda path: load_notify_config(path, secrets=False)),
}


@pytest.mark.parametrize("stem", list(LOADERS), ids=["rules", "notifier_config"])
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(choices=st.lists(st.integers(0, 50), min_size=1, max_size=4), value=junk,
       name=st.text(min_size=1, max_size=6))  # fmt: skip
def test_junk_anywhere_in_the_file_is_a_config_error_or_loads(
    tmp_path_factory: pytest.TempPathFactory, stem: str, choices: list[int], value: Any, name: str
) -> None:
    template, load = LOADERS[stem]
    path = tmp_path_factory.mktemp(stem) / f"{stem}.yaml"
    path.write_text(
        yaml.safe_dump(spoil(yaml.safe_load(yaml.safe_dump(template)), choices, value, name))
    )
    loads_or_names_lines(lambda: load(path), path)


def test_a_junk_field_in_one_rule_leaves_the_others_checked(
    demo_config: SiteConfig, tmp_path: Path
) -> None:
    data = yaml.safe_load(yaml.safe_dump(RULES))
    data["rules"]["pump_trip"]["whn"] = "tripped"  # a typo beside the real `when`
    data["rules"]["pump_dry_run"]["when"] = "runing"  # an unknown name
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        load_rules(path, demo_config)
    fields = {i.field for i in caught.value.issues}
    assert "rules.pump_trip.whn" in fields and "rules.pump_dry_run.when" in fields
