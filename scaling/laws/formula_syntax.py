"""The grammar of a formula law, and the only way its text becomes an expression.

A formula is checked with Python's :mod:`ast` BEFORE anything else happens to it: only names, numbers, the
operators + - * / ^ ** (and unary -/+) and calls of a short list of functions (:data:`FUNCTIONS`) are accepted.
Attribute access, subscripts, imports, lambdas, strings, comparisons, dunder or underscore names and calls of
anything else are refused with one line. The checked tree is then translated node by node into a sympy
expression (we never hand the text to ``sympy.parse_expr``, which runs ``eval``). :mod:`scaling.laws.formula`
turns that expression into a law.
"""

from __future__ import annotations

import ast
import keyword
import math
from typing import Any

import sympy

from scaling.errors import ScalingError

MAX_FORMULA_CHARS = 2000
MAX_DEPTH = 60  # nesting depth of the expression tree; deeper text is refused before sympy sees it


def _sigmoid(x):
    return 1 / (1 + sympy.exp(-x))


# The functions a formula may call: name -> (number of arguments, sympy builder).
FUNCTIONS: dict[str, tuple[int, Any]] = {
    "exp": (1, sympy.exp),
    "log": (1, sympy.log),
    "ln": (1, sympy.log),
    "log10": (1, lambda x: sympy.log(x) / sympy.log(10)),
    "log2": (1, lambda x: sympy.log(x) / sympy.log(2)),
    "sqrt": (1, sympy.sqrt),
    "tanh": (1, sympy.tanh),
    "sigmoid": (1, _sigmoid),
    "abs": (1, sympy.Abs),
}
# Names the code printed by lambdify may use (functions, and e for Euler's number: exp(1) prints as e): a symbol
# of that name would shadow them inside the generated function, so it is refused.
RESERVED = set(FUNCTIONS) | {"e", "pi", "numpy", "np", "math", "absolute", "select", "where", "power", "inf", "nan"}

_ALLOWED = "names, numbers, + - * / ^ and the functions " + ", ".join(sorted(FUNCTIONS))


def _refuse(formula: str, what: str) -> ScalingError:
    shown = formula if len(formula) <= 80 else formula[:77] + "..."
    return ScalingError(f"formula {shown!r}: {what} is not allowed; a formula may use {_ALLOWED}")


def split_formula(formula: str) -> tuple[str | None, str]:
    """``"L = E + A/N^alpha"`` -> ``("L", "E + A/N^alpha")``; a formula without ``=`` has no left side."""
    if not isinstance(formula, str) or not formula.strip():
        raise ScalingError("formula: empty; write one such as \"L = E + A/N^alpha + B/D^beta\"")
    if len(formula) > MAX_FORMULA_CHARS:
        raise ScalingError(f"formula: {len(formula)} characters; at most {MAX_FORMULA_CHARS}")
    if formula.count("=") > 1:
        raise _refuse(formula, "more than one '=' (comparison or keyword argument)")
    lhs, sep, rhs = formula.partition("=")
    if not sep:
        return None, formula.strip()
    lhs = lhs.strip()
    if not lhs.isidentifier() or keyword.iskeyword(lhs) or lhs.startswith("_"):
        raise ScalingError(f"formula {formula!r}: the left side {lhs!r} must be one name, e.g. L = ...")
    return lhs, rhs.strip()


def _check_name(formula: str, name: str) -> None:
    if name.startswith("_"):
        raise _refuse(formula, f"the name {name!r} (names starting with '_', dunder names)")
    if name in RESERVED:
        raise _refuse(formula, f"{name!r} used as a variable (it is a function or reserved name)")


def parse_rhs(formula: str, rhs: str) -> sympy.Expr:
    """The right side as a sympy expression, built from a whitelisted Python AST (no ``eval``)."""
    # ^ is power in a formula, as in the papers. Python parses ^ as XOR, which binds more loosely than + and /
    # (E + A/N^alpha would read (E + A/N) ^ alpha), so it is turned into ** before parsing; it has no other use.
    try:
        tree = ast.parse(rhs.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ScalingError(f"formula {formula!r}: not an expression ({exc.msg}, column {exc.offset})") from None
    return _to_sympy(formula, tree.body, 0)


def _to_sympy(formula: str, node: ast.AST, depth: int) -> sympy.Expr:
    if depth > MAX_DEPTH:
        raise _refuse(formula, f"nesting deeper than {MAX_DEPTH}")
    if isinstance(node, ast.Name):
        _check_name(formula, node.id)
        return sympy.Symbol(node.id, real=True)
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _refuse(formula, f"the constant {value!r}")
        if not math.isfinite(value):
            raise _refuse(formula, f"the constant {value!r}")
        return sympy.Integer(value) if isinstance(value, int) else sympy.Float(value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _to_sympy(formula, node.operand, depth + 1)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        a = _to_sympy(formula, node.left, depth + 1)
        b = _to_sympy(formula, node.right, depth + 1)
        op = node.op
        if isinstance(op, ast.Add):
            return a + b
        if isinstance(op, ast.Sub):
            return a - b
        if isinstance(op, ast.Mult):
            return a * b
        if isinstance(op, ast.Div):
            return a / b
        if isinstance(op, ast.Pow):
            return a**b
        raise _refuse(formula, f"the operator {type(op).__name__}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise _refuse(formula, "calling anything but a named function (attribute access, a.b)")
        name = node.func.id
        if name not in FUNCTIONS:
            raise _refuse(formula, f"the function {name!r}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise _refuse(formula, f"keyword or starred arguments to {name}")
        arity, build = FUNCTIONS[name]
        if len(node.args) != arity:
            raise ScalingError(f"formula {formula!r}: {name} takes {arity} argument(s), got {len(node.args)}")
        return build(*(_to_sympy(formula, a, depth + 1) for a in node.args))
    what = {
        ast.Attribute: "attribute access (a.b)",
        ast.Subscript: "subscripts (a[b])",
        ast.Lambda: "lambda",
        ast.Compare: "comparisons",
        ast.BoolOp: "and/or",
        ast.IfExp: "if/else",
        ast.Tuple: "tuples",
        ast.List: "lists",
        ast.Dict: "dicts",
        ast.JoinedStr: "f-strings",
        ast.NamedExpr: "assignment (:=)",
    }.get(type(node), type(node).__name__)
    raise _refuse(formula, what)


__all__ = ["FUNCTIONS", "MAX_DEPTH", "MAX_FORMULA_CHARS", "RESERVED", "parse_rhs", "split_formula"]
