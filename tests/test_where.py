"""The ``--where`` grammar (scaling.where): what it selects, and that nothing outside it runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling.errors import ScalingError
from scaling.where import select

FRAME = pd.DataFrame(
    {
        "N": [1e7, 1e8, 1e9, 1e10],
        "D": [2e8, 2e9, 2e10, 2e11],
        "loss": [3.1, 2.8, np.nan, 2.2],
        "final": [1, 0, 1, 1],
        "corpus": ["english", "python", "english", "bible"],
        "Model Size": [7.0, 8.0, 9.0, 10.0],
        "class": [1, 2, 3, 4],
    }
)


@pytest.mark.parametrize(
    "expr, rows",
    [
        ("final == 1", [0, 2, 3]),
        ("final == 1 and N > 5e7", [2, 3]),
        ("final == 1 or corpus == 'python'", [0, 1, 2, 3]),
        ("not final == 1", [1]),
        ("(N > 1e7) & (D < 2e10)", [1]),
        ("~(N > 1e8) | (corpus == 'bible')", [0, 1, 3]),
        ("`Model Size` >= 9", [2, 3]),
        ("`class` == 2", [1]),
        ("corpus in ['python', 'bible']", [1, 3]),
        ("corpus not in ('python',)", [0, 2, 3]),
        ("N in [1e7, 1e9]", [0, 2]),
        ("1e7 < N <= 1e9", [1, 2]),
        ("log10(N) >= 9", [2, 3]),
        ("abs(loss - 3) < 0.25", [0, 1]),
        ("D / N == 20", [0, 1, 2, 3]),
        ("6 * N * D > 1e18", [1, 2, 3]),
        ("loss < 3", [1, 3]),  # NaN never matches
        ("N ** 2 > 1e17", [2, 3]),
        ("10 ** 10 ** 10 > N", [0, 1, 2, 3]),  # floats: inf, not a huge integer
        ("True", [0, 1, 2, 3]),
    ],
)
def test_selects(expr, rows):
    assert list(np.flatnonzero(select(FRAME, expr))) == rows


def _refusal(expr: str) -> str:
    with pytest.raises(ScalingError) as info:
        select(FRAME, expr, source="r.csv")
    message = str(info.value)
    assert "\n" not in message and message.startswith("r.csv: --where ")
    return message


@pytest.mark.parametrize(
    "expr, fragment",
    [
        ("N.__class__.__init__.__globals__", "attribute access not allowed: 'N.__class__.__init__.__globals__'"),
        ("__import__('os').system('touch pwned')", "call to \"__import__('os').system\" not allowed"),
        ("open('/etc/passwd')", "call to 'open' not allowed; functions are log, log10"),
        ("N[0] > 1", "subscripts not allowed: 'N[0]'"),
        ("(lambda: 1)()", "call to 'lambda: 1' not allowed"),
        ("[c for c in corpus]", "ListComp not allowed"),
        ("N if final else D", "if-else not allowed"),
        ("N is None", "operator not allowed: 'N is None'"),
        ("N @ D > 1", "operator not allowed: 'N @ D'"),
        ("__builtins__ > 1", "names with double underscores not allowed: '__builtins__'"),
        ("(x := 1)", "assignment not allowed"),
        ("bogus > 1", "unknown column 'bogus'; columns are N, D, loss"),
        ("log10 > 1", "a function name must be called"),
        ("log10(N, 2) > 1", "log10() takes one argument"),
        ("corpus * N > 'a'", "arithmetic needs numbers: 'corpus' is a text column"),
        ("corpus < 5", "cannot compare 'corpus < 5' (a text column vs a number"),
        ("N in [1, D]", "lists may hold only numbers and strings: 'D'"),
        ("'a' in corpus", "'in' needs a list of constants"),
        ("N > 1 and D", "not a condition: 'D'"),
        ("N + 1", "not a condition"),
        ("N >", "SyntaxError"),
        ("`Model Size > 1", "unclosed backtick"),
        ("\x00", "SyntaxError"),
        ("-" * 200 + "N > 1", "nested deeper than 60 levels"),
        ("N > " + "9" * 2000, "longer than 1000 characters"),
    ],
)
def test_refuses_with_one_line_naming_the_token(expr, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = _refusal(expr)
    assert fragment in message, message
    assert len(message) < 400
    assert list(tmp_path.iterdir()) == []  # nothing ran: no file appeared


def test_backtick_inside_a_string_is_text():
    frame = pd.DataFrame({"name": ["a`b", "c"], "x": [1, 2]})
    assert list(select(frame, "name == 'a`b'")) == [True, False]
