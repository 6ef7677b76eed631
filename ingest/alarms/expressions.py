"""A rule's expression (`when`, `clear_when`, `suppress_when`) made a test once, when the
engine binds the rule: values in, truth out (None while it cannot be told).

simpleeval walks the parsed tree on every reading; that walk was a fifth of an alarm
scenario's CPU. An expression made only of what the rules use (names, numbers and
strings, comparisons, `and` / `or` / `not`, arithmetic, `x if c else y`, calls of abs, min
and max) is compiled instead, once, to a Python code object that does what simpleeval's
walk does, step for step:

- a name is the asset's value, else its rating, else a function (`eval` looks in the
  values, then in the globals: the functions overridden by the ratings; no builtins);
- a call is always one of the rules' functions, never a value of the same name;
- each operator is simpleeval's own: where simpleeval's is the plain `operator`
  function (`-`, `/`, `<`, `not`, ...) Python's operator is the same thing; where it
  guards (`+` and `*` on long strings, `**`, `<<`, `>>`) the guard itself is called;
- `and`, `or` and chained comparisons stop where simpleeval's walk stops.

Anything else (attributes, subscripts, f-strings, a literal longer than simpleeval
takes, a keyword argument) keeps simpleeval's walk: it refuses or allows exactly as
before. Nothing outside these nodes can reach `eval`.
"""

from __future__ import annotations

import ast
import copy
import operator
import warnings
from collections.abc import Callable, Mapping
from types import CodeType
from typing import Any

from simpleeval import DEFAULT_OPERATORS, MAX_STRING_LENGTH, SimpleEval

from facility.wire import Value

# values -> truth, or None while it cannot be told (a signal not seen yet, or null)
Test = Callable[[Mapping[str, Value]], bool | None]

# simpleeval's operators that are the plain `operator` functions: Python's own operator
# node does the same.
NATIVE = {
    kind
    for kind, function in DEFAULT_OPERATORS.items()
    if getattr(operator, getattr(function, "__name__", ""), None) is function
} | {ast.In, ast.NotIn}  # simpleeval's lambdas of the same meaning
# Not `is`: compiled code shares equal constants and folds constant arithmetic, so
# `0.5 is 0.5` would be True where simpleeval's walk says False: `is` keeps the walk.
GUARDED = {kind: f"__op_{kind.__name__}" for kind in DEFAULT_OPERATORS}
CALLED = "__fn_"  # prefix of a function's name in the globals (never a value's name)
PLAIN_NODES = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.BinOp,
    ast.Compare,
    ast.IfExp,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Call,
    *DEFAULT_OPERATORS,
)


def compile_test(tree: ast.AST, ratings: Mapping[str, Value], functions: Mapping[str, Any]) -> Test:
    """The expression `tree` (as `parse_expression` parsed it) on an asset with these
    ratings, as a test of its values."""
    body = tree.value if isinstance(tree, ast.Expr) else tree
    code = _compiled(body, functions) if isinstance(body, ast.expr) else None
    if code is None:
        return _walked(tree, ratings, functions)
    env: dict[str, Any] = {"__builtins__": {}}
    env.update({GUARDED[kind]: fn for kind, fn in DEFAULT_OPERATORS.items()})
    env.update({CALLED + name: fn for name, fn in functions.items()})
    env.update(functions)  # a bare function name, as simpleeval resolves it: after names
    env.update(ratings)

    def test(values: Mapping[str, Value]) -> bool | None:
        try:
            return bool(eval(code, env, values))  # only the nodes _plain lets through
        except Exception:  # a signal not seen yet, or null: undecided, not an alarm
            return None

    return test


def _walked(tree: ast.AST, ratings: Mapping[str, Value], functions: Mapping[str, Any]) -> Test:
    evaluator = SimpleEval(functions=dict(functions))

    def test(values: Mapping[str, Value]) -> bool | None:
        evaluator.names = {**ratings, **values}
        try:
            return bool(evaluator.eval("", previously_parsed=tree))
        except Exception:  # a signal not seen yet, or null, or refused: undecided
            return None

    return test


def _compiled(body: ast.expr, functions: Mapping[str, Any]) -> CodeType | None:
    """The code object, or None when the expression has a node outside the plain ones."""
    if not all(_plain(node, functions) for node in ast.walk(body)):
        return None
    try:  # copying, rewriting and compiling all recurse: a deep expression keeps the walk
        tree = ast.fix_missing_locations(ast.Expression(_Guarded().visit(copy.deepcopy(body))))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return compile(tree, "<rule expression>", "eval")
    except Exception:  # (too deep, say) simpleeval's walk decides, as before
        return None


def _plain(node: ast.AST, functions: Mapping[str, Any]) -> bool:
    if not isinstance(node, PLAIN_NODES):
        return False
    if isinstance(node, ast.Name):
        return not node.id.startswith("__")
    if isinstance(node, ast.Compare):
        return all(type(o) in NATIVE for o in node.ops)
    if isinstance(node, ast.Constant):
        return not (isinstance(node.value, str | bytes) and len(node.value) > MAX_STRING_LENGTH)
    if isinstance(node, ast.Call):
        return (
            isinstance(node.func, ast.Name)
            and node.func.id in functions
            and not node.keywords
            and not any(isinstance(a, ast.Starred) for a in node.args)
        )
    return True


class _Guarded(ast.NodeTransformer):
    """simpleeval's guarded operators as calls of the guard; calls by the function's
    own global name."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        if type(node.op) in NATIVE:
            return node
        return _call(GUARDED[type(node.op)], [node.left, node.right])

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.expr:
        self.generic_visit(node)
        if type(node.op) in NATIVE:
            return node
        return _call(GUARDED[type(node.op)], [node.operand])

    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        assert isinstance(node.func, ast.Name)
        return _call(CALLED + node.func.id, node.args)


def _call(name: str, args: list[ast.expr]) -> ast.Call:
    return ast.Call(ast.Name(name, ast.Load()), args, [])
