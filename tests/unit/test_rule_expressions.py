"""A rule expression compiled once (`ingest/alarms/expressions.py`) tells exactly what
simpleeval's walk of the same tree tells: the same truth, the same None where the walk
fails (a name not seen yet, a type error, a guard refusing), on random expressions over
random values (hypothesis) and on the cases where Python and simpleeval could part."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from simpleeval import SimpleEval

from facility.wire import Value
from ingest.alarms.expressions import compile_test
from ingest.alarms.rules import FUNCTIONS

NAMES = ["flow_m3h", "running", "fault_code", "model", "rated_flow_m3h", "abs", "missing"]
RATINGS: dict[str, Value] = {"rated_flow_m3h": 40.0, "capacity": 12}
BINARY = [
    *("+", "-", "*", "/", "//", "%", "**", "&", "|", "^", "<<", ">>"),
    *("<", "<=", ">", ">=", "==", "!=", "in", "not in", "is", "is not", "and", "or"),
]
UNARY = ["not ", "-", "+", "~"]


def walked(text: str, values: Mapping[str, Value], ratings: Mapping[str, Value]) -> bool | None:
    """What the engine told before: simpleeval's walk, any failure undecided."""
    evaluator = SimpleEval(functions=FUNCTIONS)
    evaluator.names = {**ratings, **values}
    try:
        return bool(evaluator.eval("", previously_parsed=SimpleEval.parse(text)))
    except Exception:
        return None


def compiled(text: str, values: Mapping[str, Value], ratings: Mapping[str, Value]) -> bool | None:
    return compile_test(SimpleEval.parse(text), ratings, FUNCTIONS)(values)


def is_compiled(text: str) -> bool:
    """Whether the expression is compiled (True) or keeps simpleeval's walk."""
    test = compile_test(SimpleEval.parse(text), {}, FUNCTIONS)
    return "code" in (test.__code__.co_freevars or ())


atoms = st.one_of(
    st.sampled_from(NAMES),
    st.integers(-3, 3).map(str),
    st.sampled_from(["0.5", "2.0", "True", "False", "None", "'x'", "''"]),
)


def expressions(leaves: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.sampled_from(BINARY)
    return st.one_of(
        st.tuples(leaves, binary, leaves).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["not ", "-", "+", "~"]), leaves).map(
            lambda t: f"({''.join(t)})"
        ),
        st.tuples(leaves, leaves, leaves).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(leaves, leaves, leaves).map(lambda t: f"({t[0]} < {t[1]} <= {t[2]})"),
        st.tuples(st.sampled_from(["abs", "min", "max"]), st.lists(leaves, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
    )


values_of = st.dictionaries(
    st.sampled_from(NAMES),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 5),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["", "x", "ab"]),
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.recursive(atoms, expressions, max_leaves=8), values_of)
def test_random_expressions_tell_what_simpleeval_tells(text: str, values: dict[str, Any]) -> None:
    assert compiled(text, values, RATINGS) == walked(text, values, RATINGS), text


def test_names_are_values_then_ratings_then_functions_and_calls_always_functions() -> None:
    # a value named like a rating hides the rating, as simpleeval's merged names did
    assert compiled("capacity > 20", {"capacity": 30}, RATINGS) is True
    assert compiled("capacity > 20", {}, RATINGS) is False
    # a bare function name is the function (truthy); a value of that name hides it
    assert compiled("abs", {}, {}) is True
    assert compiled("abs", {"abs": 0}, {}) is False
    # a call is always the rules' function, even with a value of the same name
    assert compiled("abs(-2) == 2", {"abs": 0}, {}) is True
    assert walked("abs(-2) == 2", {"abs": 0}, {}) is True


def test_what_cannot_be_told_is_none() -> None:
    assert compiled("flow_m3h < 5", {}, {}) is None  # not seen yet
    assert compiled("flow_m3h < 5", {"flow_m3h": None}, {}) is None  # null
    assert compiled("flow_m3h / 0 > 1", {"flow_m3h": 1.0}, {}) is None
    assert compiled("len(model) > 1", {"model": "ab"}, {}) is None  # no builtins


def test_simpleeval_guards_apply_to_compiled_expressions() -> None:
    """`*`, `+`, `**` and shifts go through simpleeval's own guards: what it refuses is
    undecided here too, not a 10 MB string or an hour of arithmetic."""
    long = {"model": "x" * 60_000}
    for text, values in [
        ("model * 2 == ''", long),
        ("model + model == ''", long),
        ("9 ** 9 ** 9 > 1", {}),
        ("1 << 100000 > 1", {}),
    ]:
        assert is_compiled(text)
        assert walked(text, values, {}) is None
        assert compiled(text, values, {}) is None, text


def test_anything_beyond_the_plain_nodes_keeps_the_walk() -> None:
    """Attributes, subscripts, f-strings, keywords, names simpleeval reserves: not
    compiled, so simpleeval refuses or allows them exactly as before."""
    values: dict[str, Value] = {"model": "VFD", "flow_m3h": 3.0}
    for text in [
        "model.__class__ is str",
        "model.upper() == 'VFD'",
        "model[0] == 'V'",
        "f'{model}' == 'VFD'",
        "max(flow_m3h, key=abs) > 1",
        "__builtins__ is None",
        "[flow_m3h][0] > 1",
        "'" + "x" * 100_001 + "' == ''",  # a literal longer than simpleeval takes
    ]:
        assert not is_compiled(text), text
        assert compiled(text, values, {}) == walked(text, values, {}), text
    assert compiled("model.__class__ is str", values, {}) is None  # refused, as before


def test_the_parsed_tree_is_left_as_parsed() -> None:
    """The bound rule keeps its tree (its words name the expression): compiling copies."""
    tree = SimpleEval.parse("flow_m3h * 2 < abs(rated_flow_m3h)")
    before = ast.dump(tree)
    compile_test(tree, RATINGS, FUNCTIONS)
    assert ast.dump(tree) == before


def test_identity_keeps_simpleevals_answer_where_compiled_constants_would_be_shared() -> None:
    for text in ("0.5 is 0.5", "(2 - 2.0) is (2 - 2.0)", "flow_m3h is not 0.5"):
        values = {"flow_m3h": 0.5}
        assert compiled(text, values, RATINGS) == walked(text, values, RATINGS), text


def test_an_expression_too_deep_to_compile_is_walked_not_refused() -> None:
    """Copying and compiling a tree recurse: 300 terms must not stop the engine's start."""
    values = {"flow_m3h": 1.0}
    for text in (
        " + ".join(["flow_m3h"] * 300) + " > 0",
        "not " * 300 + "running",
        " if running else ".join(["flow_m3h"] * 200),
    ):
        assert compiled(text, values | {"running": True}, RATINGS) == walked(
            text, values | {"running": True}, RATINGS
        ), text[:40]
