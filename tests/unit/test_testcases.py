"""Config regression cases as data: tests/testcases/<group>/<case>/ (format: its
README.md), grouped by what they configure: `site/` cases are loaded with
load_site_config, `ingest/` with load_ingest_config, `rules/` with load_rules against
site/valid_minimal, `notify/` with load_notify_config. The ConfigError issues must
match expected_errors.txt exactly in file, line and field, and contain the expected
message text. (`modbus/` holds the data-driven register cases of
tests/integration/test_modbus_cases.py.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from facility.config import load_site_config
from facility.profile import ModbusProfile
from facility.sourcemap import ConfigError, ConfigIssue
from ingest.alarms.notify.config import load_notify_config
from ingest.alarms.rules import load_rules
from ingest.config import load_ingest_config

CASES_DIR = Path(__file__).resolve().parents[1] / "testcases"
SITE_CASES = CASES_DIR / "site"
# group -> the file every case of it holds (site cases: any *.yaml, one a site)
GROUPS = {"site": "*.yaml", "ingest": "ingest.yaml", "rules": "rules.yaml",
          "notify": "notify.yaml"}  # fmt: skip
OTHER_FOLDERS = {"modbus"}  # register cases, tests/integration/test_modbus_cases.py
CASES = sorted(p for group in GROUPS for p in (CASES_DIR / group).iterdir() if p.is_dir())


def case_id(case: Path) -> str:
    return f"{case.parent.name}/{case.name}"


REQUIRED_CASES = {
    "site/valid_minimal",
    "site/unknown_data_type",
    "site/overlapping_registers",
    "site/register_out_of_range",
    "site/string_past_last_address",
    "site/bit_overlaps_whole_register",
    "site/duplicate_asset_ids",
    "site/duplicate_station_ids",
    "site/missing_profile",
    "site/unknown_field_typo",
    "site/yaml_syntax_error",
    "site/modbus_asset_without_address",
    "site/unit_id_reused_on_bus",
    "site/unknown_bus",
    "site/lead_tank_not_fed",
    "site/several_errors_at_once",
    "ingest/valid_shared_group",
    "rules/valid_rules",
    "notify/typo_hides_nothing",
}


@dataclass(frozen=True)
class Expected:
    file: str
    line: int
    field: str
    message: str
    source_line: int  # line in expected_errors.txt, for the failure report

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.file, self.line, self.field)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field or '-'}: {self.message}"


@dataclass(frozen=True)
class Actual:
    file: str
    line: int
    field: str
    message: str

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.file, self.line, self.field)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field or '-'}: {self.message}"


def parse_expected(text: str, name: str = "expected_errors.txt") -> list[Expected]:
    """Parse `FILE:LINE: FIELD: MESSAGE-SUBSTRING` lines (see testcases/README.md)."""
    out: list[Expected] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            file, rest = line.split(":", 1)
            line_no, rest = rest.split(": ", 1)
            field, message = rest.split(": ", 1)
            number = int(line_no)
        except ValueError:
            raise ValueError(f"{name}:{n}: not FILE:LINE: FIELD: MESSAGE: {raw!r}") from None
        if not file or not message.strip() or number < 0 or " " in field:
            raise ValueError(f"{name}:{n}: not FILE:LINE: FIELD: MESSAGE: {raw!r}")
        out.append(Expected(file, number, "" if field == "-" else field, message.strip(), n))
    return out


def relative_issue(case: Path, issue: ConfigIssue) -> Actual:
    path = Path(issue.file)
    try:
        file = path.resolve().relative_to(case.resolve()).as_posix()
    except ValueError:
        file = issue.file  # outside the case (a built-in profile): keep it visible
    return Actual(file, issue.line, issue.field, issue.message)


def mismatches(expected: list[Expected], actual: list[Actual]) -> list[str]:
    """Pair every expected issue with one actual issue; describe what does not pair."""
    unmatched = list(actual)
    problems: list[str] = []
    for exp in expected:
        for act in unmatched:
            if act.key == exp.key and exp.message in act.message:
                unmatched.remove(act)
                break
        else:
            same_key = [a for a in actual if a.key == exp.key]
            hint = f" (same place, message was {same_key[0].message!r})" if same_key else ""
            problems.append(f"expected but not reported: {exp}{hint}")
    problems.extend(f"reported but not expected:  {act}" for act in unmatched)
    return problems


def load_issues(case: Path) -> list[Actual]:
    group = case.parent.name
    try:
        if group == "notify":
            load_notify_config(case / "notify.yaml")
        elif group == "ingest":
            load_ingest_config(case / "ingest.yaml")
        elif group == "rules":
            load_rules(case / "rules.yaml", load_site_config(SITE_CASES / "valid_minimal"))
        else:
            assert group == "site", f"{case}: not in a group of {sorted(GROUPS)}"
            load_site_config(case)
    except ConfigError as exc:
        return [relative_issue(case, i) for i in exc.issues]
    return []


def test_all_required_cases_exist() -> None:
    names = {case_id(c) for c in CASES}
    assert names >= REQUIRED_CASES, f"missing cases: {sorted(REQUIRED_CASES - names)}"
    for case in CASES:
        name, wanted = case_id(case), GROUPS[case.parent.name]
        assert (case / "expected_errors.txt").is_file(), f"{name}: no expected_errors.txt"
        assert list(case.glob(wanted)), f"{name}: no {wanted}"


def test_every_case_is_in_the_group_of_what_it_configures() -> None:
    """A case folder left at the top (or holding another group's file) would be loaded
    as the wrong thing or not at all: it must move into its group."""
    stray = sorted(
        p.name
        for p in CASES_DIR.iterdir()
        if p.is_dir() and p.name not in {*GROUPS, *OTHER_FOLDERS}
    )
    assert not stray, f"move these into {sorted(GROUPS)} by what they configure: {stray}"
    for case in CASES:
        others = {f for g, f in GROUPS.items() if g not in ("site", case.parent.name)}
        misplaced = sorted(f for f in others if (case / f).is_file())
        assert not misplaced, f"{case_id(case)} holds {misplaced}: another group's file"


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_case(case: Path) -> None:
    expected = parse_expected(
        (case / "expected_errors.txt").read_text(encoding="utf-8"),
        f"{case_id(case)}/expected_errors.txt",
    )
    actual = load_issues(case)
    problems = mismatches(expected, actual)
    if problems:
        report = "\n".join(
            [f"case {case_id(case)}:", *problems, "", "all reported issues:"]
            + [f"  {a}" for a in actual]
        )
        pytest.fail(report, pytrace=False)


def test_valid_cases_load() -> None:
    config = load_site_config(SITE_CASES / "valid_minimal")
    assert [s.id for s in config.sites] == ["site_min"]
    assert [r.path for r in config.assets()] == [
        "site_min/station_a/gateway",
        "site_min/station_a/pump_1",
        "site_min/station_a/tank_1",
    ]


def test_site_profile_overrides_builtin() -> None:
    config = load_site_config(SITE_CASES / "valid_profile_override")
    tank = config.profiles["tank_level"]
    assert isinstance(tank, ModbusProfile)
    assert tank.description.startswith("Tank level RTU reporting centimetres")
    assert tank.protocol_address(tank.signal("level_cm")) == 0


def test_several_errors_are_all_reported_across_files() -> None:
    actual = load_issues(SITE_CASES / "several_errors_at_once")
    assert len(actual) >= 3
    assert {a.file for a in actual} == {"a_schema.yaml", "b_checks.yaml"}


# --- the comparison itself must be strict -----------------------------------------------


def test_parse_expected_format() -> None:
    parsed = parse_expected(
        "# comment\n\n"
        "site.yaml:12: stations[0].id: duplicate station id 'a': x\n"
        "broken.yaml:9: -: YAML syntax: mapping values\n"
    )
    assert [(p.file, p.line, p.field, p.message) for p in parsed] == [
        ("site.yaml", 12, "stations[0].id", "duplicate station id 'a': x"),
        ("broken.yaml", 9, "", "YAML syntax: mapping values"),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "site.yaml: stations[0].id: no line",
        "site.yaml:x: id: not a number",
        "site.yaml:3: id:",
        "site.yaml:3 id: missing separator",
    ],
)
def test_parse_expected_rejects_malformed_lines(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_expected(bad)


def test_off_by_one_line_is_a_mismatch() -> None:
    case = SITE_CASES / "unknown_bus"
    actual = load_issues(case)
    expected = parse_expected((case / "expected_errors.txt").read_text(encoding="utf-8"))
    assert mismatches(expected, actual) == []
    for delta in (-1, 1):
        shifted = [
            Expected(e.file, e.line + delta, e.field, e.message, e.source_line) for e in expected
        ]
        assert len(mismatches(shifted, actual)) == 2  # one missing, one unexpected


def test_wrong_field_or_message_is_a_mismatch() -> None:
    actual = [Actual("site.yaml", 14, "stations[0].assets[0].modbus.bus", "no bus 'rs485'")]
    assert mismatches(
        [Expected("site.yaml", 14, "stations[0].assets[0].modbus", "no bus", 1)], actual
    )
    assert mismatches(
        [Expected("site.yaml", 14, "stations[0].assets[0].modbus.bus", "no unit", 1)], actual
    )
    assert mismatches(
        [Expected("other.yaml", 14, "stations[0].assets[0].modbus.bus", "no bus", 1)], actual
    )
    assert mismatches([], actual)  # an unexpected issue fails too
    assert not mismatches(
        [Expected("site.yaml", 14, "stations[0].assets[0].modbus.bus", "no bus", 1)], actual
    )
