"""``--where``: a small, safe row-selection language, evaluated on a DataFrame without running Python code.

The grammar is a subset of Python expressions (and of pandas' ``DataFrame.query``), parsed with :mod:`ast`
and walked here node by node, so nothing in the text can reach an attribute, a module or a builtin:

- column names (``loss``; names that are not identifiers in backticks: ```Model Size` > 1e9``), numbers
  (``1e9``, ``98304``), strings (``'python'``), ``True``/``False``;
- comparisons ``== != < <= > >=`` (chains such as ``1e7 <= N < 1e9`` too), ``in`` / ``not in`` a list of
  constants (``corpus in ['english', 'python']``);
- ``and``, ``or``, ``not`` (and pandas' ``&``, ``|``, ``~`` on conditions);
- arithmetic ``+ - * / // % **`` on numeric columns and numbers;
- the functions in :data:`FUNCTIONS` (``log10(C) > 20``, ``abs(loss - 3) < 0.1``).

Anything else (attribute access, subscripts, calls to other names, lambdas, comprehensions, ``@`` variables,
names with double underscores) is refused with one line naming the offending piece of text.

Why not ``DataFrame.query``: its python engine evaluates attribute access (``N.__class__...`` reaches
``os.system``), and its numexpr engine still parses with Python's compiler and falls back to python for
strings. The language here is small enough that walking the tree is shorter than auditing pandas' parser.

Numbers are taken as floats (``10**10**10`` is ``inf``, not a minutes-long big-integer computation) and
arithmetic on text columns is refused (``corpus * N`` would otherwise build gigantic strings).
"""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd

from scaling.errors import ScalingError

# Named functions a condition may call: numpy ufuncs on numeric values only.
FUNCTIONS = {
    "log": np.log,
    "log10": np.log10,
    "log2": np.log2,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "abs": np.abs,
}

# Long enough for any real selection; short enough that parsing and walking cost nothing and cannot recurse deep.
MAX_LENGTH = 1000
MAX_DEPTH = 60

_ALLOWED_HELP = (
    "allowed: column names (`odd name` in backticks), numbers, 'strings', comparisons, in [...], "
    f"and/or/not, + - * / ** %, {', '.join(FUNCTIONS)}"
)

_COMPARE = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}
_ARITHMETIC = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}
_LOGICAL = {ast.BitAnd: lambda a, b: a & b, ast.BitOr: lambda a, b: a | b}


class _Refused(Exception):
    """An expression outside the grammar, or one that cannot be evaluated; the message is the detail."""


def select(df: pd.DataFrame, expr: str, *, source: str = "table") -> np.ndarray:
    """The boolean row mask of ``expr`` on ``df`` (missing values never match).

    >>> select(df, "final == 1 and `Model Size` > 1e9")      # array([False,  True, ...])

    Raises :class:`~scaling.errors.ScalingError` ``"{source}: --where EXPR: ..."`` naming the offending token
    for anything outside the grammar (see the module docstring), an unknown column, or a non-condition.
    """
    try:
        tree, names = _parse(expr)
        value = _Evaluator(df, names, expr).visit(tree.body)
    except _Refused as exc:
        raise ScalingError(f"{source}: --where {_shown(expr)}: {exc}") from None
    if isinstance(value, (bool, np.bool_)):  # "True" or "1 < 2": the same for every row
        return np.full(len(df), bool(value))
    if not isinstance(value, pd.Series) or not pd.api.types.is_bool_dtype(value):
        raise ScalingError(f"{source}: --where {_shown(expr)}: not a condition; write one such as \"final == 1\"")
    return value.to_numpy(dtype=bool, na_value=False)


def _shown(expr: str, limit: int = 80) -> str:
    """The expression quoted for a message, cut short so that one absurd input still gives a readable line."""
    return repr(expr if len(expr) <= limit else expr[: limit - 3] + "...")


def _parse(expr: str) -> tuple[ast.Expression, dict[str, str]]:
    """Parse ``expr`` after replacing each ```backticked name``` by a placeholder identifier."""
    if len(expr) > MAX_LENGTH:
        raise _Refused(f"longer than {MAX_LENGTH} characters")
    text, names = _replace_backticks(expr)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" at character {exc.offset}" if exc.offset else ""
        raise _Refused(f"SyntaxError: {exc.msg}{where}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes; absurd nesting
        raise _Refused(f"not a valid expression ({type(exc).__name__})") from None
    return tree, names


def _replace_backticks(expr: str) -> tuple[str, dict[str, str]]:
    """```Model Size` > 1e9`` -> (``_bt0 > 1e9``, {"_bt0": "Model Size"}); quotes inside strings are left alone."""
    prefix = "_bt"
    while prefix in expr:  # a placeholder must not collide with anything the user wrote
        prefix += "_"
    out, names, i, quote = [], {}, 0, None
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\" and i + 1 < len(expr):
                out.append(expr[i : i + 2])
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "`":
            end = expr.find("`", i + 1)
            if end < 0:
                raise _Refused(f"unclosed backtick at character {i + 1}")
            placeholder = f"{prefix}{len(names)}"
            names[placeholder] = expr[i + 1 : end]
            out.append(placeholder)
            i = end + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out), names


def _depth(node: ast.AST, limit: int) -> None:
    """Refuse trees deeper than ``limit`` before the recursive walk (iterative, so it cannot overflow itself)."""
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            raise _Refused(f"nested deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(current))


class _Evaluator(ast.NodeVisitor):
    """Walks the allowed nodes; ``generic_visit`` (every other node type) refuses with the node's text."""

    def __init__(self, df: pd.DataFrame, names: dict[str, str], expr: str):
        self.df, self.names, self.expr = df, names, expr
        self.columns = {str(c): c for c in df.columns}
        self.text, _ = _replace_backticks(expr)

    def visit(self, node: ast.AST):  # noqa: D102 - check the depth once, at the root
        if not hasattr(self, "_checked"):
            self._checked = True
            _depth(node, MAX_DEPTH)
        return super().visit(node)

    # -- refusal -------------------------------------------------------------------------------------
    def _token(self, node: ast.AST) -> str:
        """The node's source text as the user wrote it (placeholders turned back into backticked names)."""
        segment = ast.get_source_segment(self.text.strip(), node) or type(node).__name__
        for placeholder, name in self.names.items():
            segment = segment.replace(placeholder, f"`{name}`")
        return segment if len(segment) <= 60 else segment[:57] + "..."

    def generic_visit(self, node: ast.AST):
        kinds = {
            ast.Attribute: "attribute access",
            ast.Subscript: "subscripts",
            ast.Call: "calls",
            ast.Lambda: "lambda",
            ast.IfExp: "if-else",
            ast.NamedExpr: "assignment",
            ast.Starred: "starred expressions",
        }
        kind = next((v for k, v in kinds.items() if isinstance(node, k)), type(node).__name__)
        raise _Refused(f"{kind} not allowed: {self._token(node)!r}; {_ALLOWED_HELP}")

    # -- leaves --------------------------------------------------------------------------------------
    def visit_Name(self, node: ast.Name):
        name = self.names.get(node.id, node.id)
        if node.id not in self.names and "__" in name:
            raise _Refused(f"names with double underscores not allowed: {name!r}")
        if name not in self.columns:
            shown = ", ".join(list(self.columns)[:12]) + (", ..." if len(self.columns) > 12 else "")
            hint = " (a function name must be called, e.g. log10(C))" if name in FUNCTIONS else ""
            raise _Refused(f"unknown column {name!r}{hint}; columns are {shown}")
        return self.df[self.columns[name]]

    def visit_Constant(self, node: ast.Constant):
        value = node.value
        if isinstance(value, bool) or isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            try:
                return np.float64(value)  # floats only: 10**10**10 is inf, not a big-integer computation
            except OverflowError:
                raise _Refused(f"number too large: {self._token(node)!r}") from None
        raise _Refused(f"constant not allowed: {self._token(node)!r}; {_ALLOWED_HELP}")

    # -- operators -----------------------------------------------------------------------------------
    def visit_BoolOp(self, node: ast.BoolOp):
        values = [self._condition(v) for v in node.values]
        result = values[0]
        for value in values[1:]:
            result = (result & value) if isinstance(node.op, ast.And) else (result | value)
        return result

    def visit_UnaryOp(self, node: ast.UnaryOp):
        if isinstance(node.op, (ast.Not, ast.Invert)):
            value = self._condition(node.operand)
            return (not value) if isinstance(value, (bool, np.bool_)) else ~value
        value = self._number(node.operand)
        return -value if isinstance(node.op, ast.USub) else +value

    def visit_BinOp(self, node: ast.BinOp):
        if type(node.op) in _LOGICAL:
            return _LOGICAL[type(node.op)](self._condition(node.left), self._condition(node.right))
        if type(node.op) not in _ARITHMETIC:
            raise _Refused(f"operator not allowed: {self._token(node)!r}; {_ALLOWED_HELP}")
        left, right = self._number(node.left), self._number(node.right)
        with np.errstate(all="ignore"):  # 1/0, overflow: inf or nan, which then match nothing or compare as such
            try:
                return _ARITHMETIC[type(node.op)](left, right)
            except (ArithmeticError, TypeError, ValueError) as exc:
                raise _Refused(f"cannot compute {self._token(node)!r} ({exc})") from None

    def visit_Compare(self, node: ast.Compare):
        result = None
        left = self.visit(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                if len(node.ops) > 1:
                    raise _Refused(f"'in' cannot be chained: {self._token(node)!r}")
                value = self._membership(left, comparator, negate=isinstance(op, ast.NotIn))
                right = None
            elif type(op) in _COMPARE:
                right = self.visit(comparator)
                try:
                    value = _COMPARE[type(op)](left, right)
                except (TypeError, ValueError) as exc:
                    raise _Refused(f"cannot compare {self._token(node)!r} ({_kinds(left, right)}; {exc})") from None
            else:  # is, is not
                raise _Refused(f"operator not allowed: {self._token(node)!r}; {_ALLOWED_HELP}")
            result = value if result is None else (result & value)
            left = right
        return result

    def visit_Call(self, node: ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = self._token(node.func)
            raise _Refused(f"call to {name!r} not allowed; functions are {', '.join(FUNCTIONS)}")
        if len(node.args) != 1 or node.keywords:
            raise _Refused(f"{node.func.id}() takes one argument: {self._token(node)!r}")
        value = self._number(node.args[0])
        with np.errstate(all="ignore"):
            return FUNCTIONS[node.func.id](value)

    # -- helpers -------------------------------------------------------------------------------------
    def _membership(self, left, comparator: ast.AST, *, negate: bool):
        if isinstance(comparator, (ast.List, ast.Tuple, ast.Set)):
            items = [self.visit_Constant(e) if isinstance(e, ast.Constant) else self._refuse_item(e)
                     for e in comparator.elts]
        elif isinstance(comparator, ast.Constant):
            items = [self.visit_Constant(comparator)]
        else:
            raise _Refused(f"'in' needs a list of constants, got {self._token(comparator)!r}")
        if not isinstance(left, pd.Series):
            raise _Refused(f"'in' needs a column on its left: {self._token(comparator)!r}")
        value = left.isin(items)
        return ~value if negate else value

    def _refuse_item(self, node: ast.AST):
        raise _Refused(f"lists may hold only numbers and strings: {self._token(node)!r}")

    def _condition(self, node: ast.AST):
        value = self.visit(node)
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, pd.Series) and pd.api.types.is_bool_dtype(value):
            return value
        raise _Refused(f"not a condition: {self._token(node)!r}")

    def _number(self, node: ast.AST):
        value = self.visit(node)
        if isinstance(value, float):
            return value
        if isinstance(value, pd.Series) and pd.api.types.is_numeric_dtype(value) \
                and not pd.api.types.is_bool_dtype(value):
            return value.astype(float)
        raise _Refused(f"arithmetic needs numbers: {self._token(node)!r} is {_kind(value)}")


def _kind(value) -> str:
    if isinstance(value, pd.Series):
        return "a numeric column" if pd.api.types.is_numeric_dtype(value) and not pd.api.types.is_bool_dtype(value) \
            else ("a condition" if pd.api.types.is_bool_dtype(value) else "a text column")
    if isinstance(value, (bool, np.bool_)):
        return "True/False"
    return "a number" if isinstance(value, float) else "a string"


def _kinds(left, right) -> str:
    return f"{_kind(left)} vs {_kind(right)}"

