"""Numbers as people write and read them (scaling/values.py): the grammar, and one way to write a value with its
interval for the CLI's tables and the report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scaling.report.tables import format_value
from scaling.values import format_number, number_from_text, value_with_interval, with_intervals


@pytest.mark.parametrize("text, value", [("7e10", 7e10), ("70B", 7e10), ("1.4T", 1.4e12), ("1_000", 1e3),
                                         ("20k", 2e4), ("-3", -3.0), ("1e400", math.inf)])
def test_grammar_reads_suffixes_and_underscores(text, value):
    assert number_from_text(text) == value


@pytest.mark.parametrize("text", ["5m", "abc", "nan", "", "1e", "7 B B"])
def test_grammar_refuses_what_is_not_a_number_here(text):
    assert number_from_text(text) is None


@pytest.mark.parametrize("value, text", [(3.0, "3"), (123456.0, "123456"), (1.23456789e9, "1.2346e+09"),
                                         (np.int64(7), "7"), (True, "yes"), (math.inf, "inf"), (-math.inf, "-inf"),
                                         (math.nan, ""), (None, "")])
def test_format_number(value, text):
    assert format_number(value) == text


def test_value_with_interval_hides_half_intervals():
    assert value_with_interval(0.3374, 0.3101, 0.3712) == "0.3374 [0.3101, 0.3712]"
    assert value_with_interval(0.3374, math.nan, 0.3712) == "0.3374"
    assert value_with_interval(math.nan, 0.1, 0.2) == ""
    # the CLI writes infinities; the report's cells hide them, and with them the interval
    assert value_with_interval(2.0, 1.0, math.inf) == "2 [1, inf]"
    assert value_with_interval(2.0, 1.0, math.inf, format_value) == "2"


def test_with_intervals_folds_and_drops_bound_columns():
    table = pd.DataFrame({"a": [0.5, 0.25], "a_conf_lower": [0.4, np.nan], "a_conf_upper": [0.6, 0.3], "n": [1, 2]})
    out = with_intervals(table, ["a"], infix="_conf")
    assert list(out.columns) == ["a", "n"]
    assert list(out["a"]) == ["0.5 [0.4, 0.6]", "0.25"]
    # a table without the bound columns prints the values alone
    assert list(with_intervals(table[["a", "n"]], ["a"])["a"]) == ["0.5", "0.25"]
