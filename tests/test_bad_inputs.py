"""A corpus of malformed, hostile and careless inputs across the commands (issue 13).

Every case must end the same way: exit status 2, exactly one line ``error: ...`` on stderr naming the file, row,
field or option, nothing on stdout, no traceback, and the folder it ran in unchanged (every file hashed before
and after: nothing created, nothing changed, nothing removed). The commands run in-process (tests/cli_helpers.py),
so the whole corpus takes seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import assert_user_error, invoke

from scaling.fitting.fitfile import output_problem
from scaling.fitting.result import load_fit

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------------------
# Inputs


def _table(rows: int = 8) -> str:
    sizes = [(1e7 * 3**i, 2e8 * 3**j) for i in range(3) for j in range(3)][:rows]
    return "N,D,loss\n" + "".join(f"{n:g},{d:g},{1.8 + 400 / n**0.34 + 400 / d**0.28:.4f}\n" for n, d in sizes)


TABLE = _table()  # 8 rows, 3 distinct N and D: enough for chinchilla
BASE_FIT = json.loads((REPO / "fits" / "chinchilla.json").read_text())
BASE_FIT["draws"] = {  # a fit with bootstrap draws, so that the draw checks have something to check
    "columns": ["E", "A", "B", "alpha", "beta"],
    "rows": [[1.69 + i / 100, 406.4, 410.7, 0.34, 0.28] for i in range(4)],
}
BASE_FIT["intervals"] = {"E": [1.69, 1.73]}


def _fit(**changes) -> str:
    """The base fit with ``changes`` applied: ``params__A=-406`` sets ``params["A"]``."""
    d = json.loads(json.dumps(BASE_FIT))
    for key, value in changes.items():
        target, *rest = key.split("__")
        if rest:
            d[target][rest[0]] = value
        else:
            d[target] = value
    return json.dumps(d)  # NaN/Infinity as JSON extensions, as a careless writer would produce them


def _draw(column: int, value: float) -> str:
    d = json.loads(_fit())
    d["draws"]["rows"][2][column] = value
    return json.dumps(d)


SWEEP = "name: t\nbase: {n_layer: 2, d_model: 32, corpus: english, eval_tokens: 2048}\ngrid:\n  tokens: [1e5, 2e5]\n"
LONG = "9" * 5000  # a file name longer than any filesystem takes
BINARY = b"\x7fELF\x02\x01\x01\x00\x00\xff\xfe\x00\x03\x00>\x00" * 8


@dataclass
class Case:
    id: str
    argv: list[str]
    fragments: tuple[str, ...]
    files: dict[str, str | bytes] = field(default_factory=dict)
    runner: str = "scaling"  # or "train": trainers/train.py's main
    fifo: str | None = None  # a FIFO to create at this path


def C(id, argv, *fragments, files=None, runner="scaling", fifo=None) -> Case:  # noqa: N802 - a table row
    return Case(id, argv, fragments, files or {}, runner, fifo)


T = {"r.csv": TABLE}
F = "f.json"

CASES = [
    # --- fit: the table ------------------------------------------------------------------------------------
    C("fit-missing-file", ["fit", "nope.csv"], "nope.csv: no such file"),
    C("fit-folder", ["fit", "d"], "d: is a folder", files={"d/keep.txt": "x"}),
    C("fit-empty", ["fit", "r.csv"], "r.csv: the file is empty", files={"r.csv": ""}),
    C("fit-header-only", ["fit", "r.csv"], "r.csv: has a header but no data rows", files={"r.csv": "N,D,loss\n"}),
    C("fit-binary", ["fit", "r.csv"], "r.csv: not a text CSV file", files={"r.csv": BINARY}),
    C("fit-json-as-csv", ["fit", "r.csv"], "r.csv: looks like JSON", files={"r.csv": _fit()}),
    C("fit-prose", ["fit", "r.csv"], "r.csv: not a CSV table", files={"r.csv": "just words\nno commas\n"}),
    C("fit-duplicate-header", ["fit", "r.csv"], "r.csv: line 1: column 'N' appears twice",
      files={"r.csv": TABLE.replace("N,D,loss", "N,N,loss")}),
    C("fit-ragged-row", ["fit", "r.csv"], "r.csv: line 3 has 4 fields but the header has 3",
      files={"r.csv": TABLE.replace("\n", ",7\n", 3).replace(",7\n", "\n", 2)}),
    C("fit-ragged-first-row", ["fit", "r.csv"], "r.csv: line 2 has 4 fields but the header has 3",
      files={"r.csv": TABLE.replace("\n", ",7\n", 2).replace(",7\n", "\n", 1)}),
    C("fit-trailing-comma", ["fit", "r.csv"], "r.csv: every row has 4 fields but the header has 3", "trailing comma",
      files={"r.csv": "N,D,loss\n" + "".join(line + ",\n" for line in TABLE.splitlines()[1:])}),
    C("fit-huge-single-line", ["fit", "r.csv"], "r.csv: every row has 3000001 fields but the header has 3",
      files={"r.csv": "N,D,loss\n" + "1," * 3_000_000 + "1\n"}),  # pandas took minutes on its row index
    C("fit-text-cell", ["fit", "r.csv"], "r.csv: line 3, column 'loss' is 'two', not a number",
      files={"r.csv": TABLE.replace(TABLE.splitlines()[2].split(",")[2], "two", 1)}),
    C("fit-nan-cell", ["fit", "r.csv"], "line 2, column 'loss' is 'nan', not a finite number",
      files={"r.csv": TABLE.replace(TABLE.splitlines()[1].split(",")[2], "nan", 1)}),
    C("fit-inf-cell", ["fit", "r.csv"], "line 2, column 'D' is 'inf', not a finite number",
      files={"r.csv": TABLE.replace(",2e+08,", ",inf,", 1)}),
    C("fit-empty-cell", ["fit", "r.csv"], "line 2, column 'D' is an empty cell",
      files={"r.csv": TABLE.replace(",2e+08,", ",,", 1)}),
    C("fit-negative-N", ["fit", "r.csv"], "line 2, column 'N' is -1e+07; N must be positive",
      files={"r.csv": TABLE.replace("\n1e+07,", "\n-1e+07,", 1)}),
    C("fit-zero-loss", ["fit", "r.csv"], "column 'loss' is 0; loss must be positive",
      files={"r.csv": TABLE.replace(TABLE.splitlines()[1].split(",")[2], "0", 1)}),
    C("fit-missing-column", ["fit", "r.csv", "--law", "chinchilla"], "r.csv: missing column 'D'",
      files={"r.csv": "N,tokens_x,loss\n1,2,3\n"}),
    C("fit-fifo", ["fit", "pipe"], "pipe: not a regular file", fifo="pipe"),
    C("fit-device", ["fit", "/dev/zero"], "/dev/zero: not a regular file"),
    C("report-backtest-fifo", ["report", "r.csv", "--backtest", "pipe", "-o", "rep"], "pipe: not a regular file",
      files=T, fifo="pipe"),
    C("fit-law-unknown", ["fit", "r.csv", "--law", "chinchila"], "unknown law 'chinchila'", files=T),
    C("fit-too-few-rows", ["fit", "r.csv", "--law", "chinchilla"], "4 rows but law chinchilla has 5 free parameters",
      files={"r.csv": _table(9)[:-1].rsplit("\n", 5)[0] + "\n"}),
    C("fit-map-syntax", ["fit", "r.csv", "--map", "N"], "--map 'N': expected CANONICAL=FOREIGN", files=T),
    C("fit-map-no-column", ["fit", "r.csv", "--map", "N=params"], "--map N='params': no column 'params'", files=T),
    C("fit-map-not-canonical", ["fit", "r.csv", "--map", "n=N"], "'n' is not a canonical column", files=T),
    C("fit-fix-unknown", ["fit", "r.csv", "--law", "chinchilla", "--fix", "gamma=1"], "no parameter 'gamma'", files=T),
    C("fit-fix-out-of-range", ["fit", "r.csv", "--law", "chinchilla", "--fix", "alpha=9"], "alpha must lie in [0, 5]",
      files=T),
    C("fit-fix-not-number", ["fit", "r.csv", "--law", "chinchilla", "--fix", "alpha=abc"], "--fix alpha: 'abc'",
      files=T),
    C("fit-tie-self", ["fit", "r.csv", "--law", "chinchilla", "--tie", "beta=beta"], "cannot be tied to itself",
      files=T),
    C("fit-loss-unknown", ["fit", "r.csv", "--loss", "mse"], "--loss 'mse'", files=T),
    C("fit-ci-percent", ["fit", "r.csv", "--ci", "95"], "--ci 95", files=T),
    C("fit-calibrate-negative", ["fit", "r.csv", "--calibrate", "-1"], "--calibrate -1: must be a whole number >= 0",
      files=T),
    C("fit-calibrate-not-int", ["fit", "r.csv", "--calibrate", "x"], "'--calibrate'", "see scaling fit --help",
      files=T),
    C("fit-calibrate-no-bootstrap", ["fit", "r.csv", "--calibrate", "2", "-b", "0"], "--calibrate 2",
      "needs bootstrap draws", files=T),
    C("fit-o-folder", ["fit", "r.csv", "-o", "out"], "-o out: is a folder", files={**T, "out/keep.txt": "x"}),
    C("fit-o-fifo", ["fit", "r.csv", "-o", "pipe"], "-o pipe: is a FIFO, not a regular file", files=T, fifo="pipe"),
    C("fit-o-under-file", ["fit", "r.csv", "-o", "r.csv/x.json"], "-o r.csv/x.json", files=T),
    C("fit-bootstrap-not-int", ["fit", "r.csv", "--bootstrap", "1e12"], "'--bootstrap'", "see scaling fit --help",
      files=T),  # click's usage errors printed Usage/Try/Error on three lines
    C("fit-unknown-option", ["fit", "r.csv", "--frobnicate"], "No such option: --frobnicate", files=T),
    C("unknown-command", ["frobnicate"], "No such command 'frobnicate'", "see scaling --help"),
    C("fit-missing-argument", ["fit"], "Missing argument 'RESULTS.csv'"),
    C("fit-o-input", ["fit", "r.csv", "-o", "r.csv", "-b", "0"], "-o r.csv: is the input table", files=T),
    C("backtest-o-input", ["backtest", "r.csv", "-o", "r.csv", "-b", "0"], "-o r.csv: is the input table", files=T),
    C("predict-o-fit", ["predict", F, "r.csv", "-o", F], "-o f.json: is the fit file", files={**T, F: _fit()}),
    # --- fit --where: the grammar ----------------------------------------------------------------------------
    C("where-attribute", ["fit", "r.csv", "--where", "N.__class__.__init__.__globals__"],
      "r.csv: --where", "attribute access not allowed", files=T),
    C("where-import", ["fit", "r.csv", "--where", "__import__('os').system('touch pwned')"],
      "call to \"__import__('os').system\" not allowed", files=T),
    C("where-open", ["fit", "r.csv", "--where", "open('r.csv').read() != ''"], "call to \"open('r.csv').read\"",
      files=T),
    C("where-builtin-call", ["fit", "r.csv", "--where", "len(N) > 1"], "call to 'len' not allowed", files=T),
    C("where-subscript", ["fit", "r.csv", "--where", "N[0] > 1"], "subscripts not allowed: 'N[0]'", files=T),
    C("where-lambda", ["fit", "r.csv", "--where", "(lambda: N)() > 1"], "not allowed", files=T),
    C("where-comprehension", ["fit", "r.csv", "--where", "[x for x in N]"], "ListComp not allowed", files=T),
    C("where-dunder", ["fit", "r.csv", "--where", "__builtins__ > 1"], "double underscores", files=T),
    C("where-at-variable", ["fit", "r.csv", "--where", "N > @x"], "SyntaxError", files=T),
    C("where-unknown-column", ["fit", "r.csv", "--where", "final == 1"], "unknown column 'final'; columns are N, D",
      files=T),
    C("where-syntax", ["fit", "r.csv", "--where", "N >"], "--where 'N >': SyntaxError", files=T),
    C("where-no-rows", ["fit", "r.csv", "--where", "N > 1e12"], "selects no rows (of 8)", files=T),
    C("where-not-condition", ["fit", "r.csv", "--where", "N + 1"], "not a condition", files=T),
    C("where-text-arithmetic", ["fit", "r.csv", "--where", "run * N > 'a'"], "arithmetic needs numbers",
      files={"r.csv": "run," + TABLE.replace("\n", "\nx,").rstrip("x,")}),
    C("where-too-long", ["fit", "r.csv", "--where", "N > " + "9" * 1200], "longer than 1000 characters", files=T),
    C("where-too-deep", ["fit", "r.csv", "--where", "-" * 100 + "N > 1"], "nested deeper than 60 levels", files=T),
    # --- forecast: fit files --------------------------------------------------------------------------------
    C("forecast-no-fit", ["forecast", "nope", "--N", "1e9", "--D", "1e10"], "nope: no such fit file"),
    C("forecast-fit-folder", ["forecast", "d", "--N", "1e9", "--D", "1e10"], "d: is a folder",
      files={"d/keep.txt": "x"}),
    C("forecast-fifo", ["forecast", "pipe", "--N", "1e9", "--D", "1e10"], "pipe: no such fit file", fifo="pipe"),
    C("fitfile-nan", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: field params.E is nan",
      files={F: _fit(params__E=float("nan"))}),
    C("fitfile-1e400", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: field params.A is inf",
      files={F: _fit().replace('"A": 406.4', '"A": 1e400')}),
    C("fitfile-negative-A", ["forecast", F, "--N", "1e9", "--D", "1e10"],
      "f.json: field params.A is -406, outside the law's range [0, inf]", files={F: _fit(params__A=-406.0)}),
    C("fitfile-exponent-range", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: field params.alpha is 9",
      files={F: _fit(params__alpha=9.0)}),
    C("fitfile-ci-5", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: field ci is 5",
      files={F: _fit(ci=5)}),
    C("fitfile-ci-0", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: field ci is 0", files={F: _fit(ci=0)}),
    C("fitfile-interval-inf", ["forecast", F, "--N", "1e9", "--D", "1e10"],
      "f.json: field intervals.E upper end is inf", files={F: _fit(intervals={"E": [1.0, float("inf")]})}),
    C("fitfile-interval-reversed", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: field intervals.E",
      files={F: _fit(intervals={"E": [2.0, 1.0]})}),
    C("fitfile-draw-inf", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: field draws.rows[2] A is inf",
      files={F: _draw(1, float("inf"))}),
    C("fitfile-draw-negative", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: field draws.rows[2] B is -5",
      files={F: _draw(2, -5.0)}),
    C("fitfile-derived-inf", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: field derived.a is inf",
      files={F: _fit(derived__a=float("inf"))}),
    C("fitfile-fixed-unknown", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: field fixed.Q",
      files={F: _fit(fixed={"Q": 1.0})}),
    C("fitfile-tied-unknown", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: field tied.beta",
      files={F: _fit(tied={"beta": "gamma"})}),
    C("fitfile-param-string", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: invalid fit file: field params.E",
      files={F: _fit(params__E="1.69")}),
    C("fitfile-param-missing", ["forecast", F, "--N", "1e9", "--D", "1e10"], "field params does not match",
      files={F: _fit(params={"E": 1.0})}),
    C("fitfile-huge-integer", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: not usable JSON", "4300 digits",
      files={F: _fit().replace('"A": 406.4', '"A": 4' + "0" * 5000)}),
    C("fitfile-big-integer", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: invalid fit file: field params.A",
      files={F: _fit().replace('"A": 406.4', '"A": 4' + "0" * 400)}),
    C("fitfile-deep-nesting", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: not usable JSON (nested",
      files={F: "[" * 100_000 + "]" * 100_000}),
    C("fitfile-deep-nesting-inside", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: not usable JSON (nested",
      files={F: _fit()[:-1] + ', "quality": ' + "[" * 50_000 + "]" * 50_000 + "}"}),
    C("fitfile-binary", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: not a fit file (not UTF-8 text)",
      files={F: BINARY}),
    C("fitfile-truncated", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: not valid JSON (line",
      files={F: _fit()[:200]}),
    C("fitfile-list", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: not a fit file (expected a JSON object",
      files={F: "[1, 2]"}),
    C("fitfile-future-version", ["forecast", F, "--N", "1e9", "--D", "1e10"], "format version 99 is newer",
      files={F: _fit(format_version=99)}),
    C("fitfile-unknown-law", ["forecast", F, "--N", "1e9", "--D", "1e10"], "f.json: unknown law 'chinchilla2'",
      files={F: _fit(law="chinchilla2")}),
    # --- forecast: values ----------------------------------------------------------------------------------
    C("forecast-N-text", ["forecast", "chinchilla", "--N", "abc", "--D", "1e10"], "--N: 'abc' is not a number"),
    C("forecast-N-negative", ["forecast", "chinchilla", "--N", "-5", "--D", "1e10"], "--N", "must be positive"),
    C("forecast-count-too-big", ["forecast", "chinchilla", "--N", "1e9:1e10:200000", "--D", "1e10"],
      "COUNT must be between 1 and 100000"),
    C("forecast-grid-too-big", ["forecast", "chinchilla", "--N", "1e9:1e10:1001", "--D", "1e9:1e10:1000"],
      "at most 1000000"),
    C("forecast-ci", ["forecast", "chinchilla", "--N", "1e9", "--D", "1e10", "--ci", "2"], "ci 2.0: must be between"),
    C("forecast-missing-input", ["forecast", "chinchilla", "--N", "1e9"], "needs D"),
    # --- optimal -------------------------------------------------------------------------------------------
    C("optimal-compute-5", ["optimal", "chinchilla", "--compute", "5"],
      "compute 5: must be a finite number of FLOPs above 6"),
    C("optimal-compute-negative", ["optimal", "chinchilla", "--compute", "-1e20"], "-1e+20"),
    C("optimal-compute-text", ["optimal", "chinchilla", "--compute", "lots"], "--compute: 'lots' is not a number"),
    C("optimal-fit-ci", ["optimal", F, "--compute", "1e21"], "f.json: field ci is 5", files={F: _fit(ci=5)}),
    C("optimal-fit-nested", ["optimal", F, "--compute", "1e21"], "f.json: not usable JSON (nested",
      files={F: '{"a":' * 50_000 + "1" + "}" * 50_000}),
    C("optimal-fit-negative-B", ["optimal", F, "--compute", "1e21"], "f.json: field params.B is -1",
      files={F: _fit(params__B=-1.0)}),
    C("optimal-law-of-N-only", ["optimal", "kaplan2020-n", "--compute", "1e21"], "a law of N and D"),
    C("fit-seed-negative", ["fit", "r.csv", "--seed", "-1", "-b", "2"], "--seed -1: must be 0 or more", files=T),
    C("fit-group-missing", ["fit", "r.csv", "--group", "runs"], "r.csv: --group 'runs': no such column", files=T),
    C("backtest-seed-negative", ["backtest", "r.csv", "--seed", "-1"], "--seed -1: must be 0 or more", files=T),
    C("backtest-o-fifo", ["backtest", "r.csv", "-o", "pipe"], "-o pipe: is a FIFO", files=T, fifo="pipe"),
    C("optimal-approach-compute-5", ["optimal", "r.csv", "--approach", "2", "--compute", "5"],
      "--compute 5: must be a finite number of FLOPs above 6", files=T),
    # --- sweep ---------------------------------------------------------------------------------------------
    C("sweep-missing", ["sweep", "plan", "s.yaml"], "s.yaml: no such sweep file"),
    C("sweep-binary", ["sweep", "plan", "s.yaml"], "s.yaml: not a YAML file (not UTF-8 text)",
      files={"s.yaml": BINARY}),
    C("sweep-bad-yaml", ["sweep", "plan", "s.yaml"], "s.yaml: not valid YAML at line",
      files={"s.yaml": "name: [unclosed\n"}),
    C("sweep-deep-yaml", ["sweep", "plan", "s.yaml"], "s.yaml: not usable YAML (nested too deeply)",
      files={"s.yaml": "[" * 100_000 + "]" * 100_000}),
    C("sweep-duplicate-key", ["sweep", "plan", "s.yaml"], "s.yaml: not valid YAML at line 5 (key 'grid' appears twice)",
      files={"s.yaml": SWEEP + "grid:\n  tokens: [1e6]\n"}),  # PyYAML kept the last grid silently
    C("sweep-list", ["sweep", "plan", "s.yaml"], "s.yaml: expected a mapping", files={"s.yaml": "- 1\n- 2\n"}),
    C("sweep-unknown-axis", ["sweep", "plan", "s.yaml"], "s.yaml: unknown grid axis 'tokenz'",
      files={"s.yaml": SWEEP.replace("tokens:", "tokenz:")}),
    C("sweep-range-count-zero", ["sweep", "plan", "s.yaml"], "s.yaml: grid.tokens (count)",
      files={"s.yaml": SWEEP.replace("[1e5, 2e5]", '"1e5:1e6:0"')}),
    C("sweep-negative-tokens", ["sweep", "plan", "s.yaml"], "s.yaml: grid.tokens value",
      files={"s.yaml": SWEEP.replace("[1e5, 2e5]", "[-1e5]")}),
    C("sweep-recursive-alias", ["sweep", "plan", "s.yaml"], "unknown key 'x'",
      files={"s.yaml": SWEEP.replace("eval_tokens: 2048", "eval_tokens: 2048, x: *a").replace("base:", "base: &a")}),
    C("sweep-huge-grid", ["sweep", "plan", "s.yaml"], "s.yaml: the grid has 100000 points", "at most 10000",
      files={"s.yaml": SWEEP.replace("[1e5, 2e5]", '"1e5:1e300:100000"')}),
    C("sweep-huge-tokens", ["sweep", "plan", "s.yaml"], "key 'tokens': Input should be less than or equal to",
      files={"s.yaml": SWEEP.replace("[1e5, 2e5]", "[1e30]")}),
    C("sweep-huge-seed", ["sweep", "plan", "s.yaml"], "key 'seed': Input should be less than 4294967296",
      files={"s.yaml": SWEEP + "  seed: [1e30]\n"}),
    C("sweep-fifo", ["sweep", "plan", "pipe"], "pipe: not a regular file", fifo="pipe"),
    C("sweep-plan-workers-0", ["sweep", "plan", "s.yaml", "--workers", "0"], "--workers 0: must be at least 1",
      files={"s.yaml": SWEEP}),
    C("sweep-run-workers-0", ["sweep", "run", "s.yaml", "--workers", "0"], "--workers 0: must be at least 1",
      files={"s.yaml": SWEEP}),
    C("sweep-run-results-binary", ["sweep", "run", "s.yaml", "--results", "r.csv"], "r.csv: not a text CSV file",
      files={"s.yaml": SWEEP, "r.csv": BINARY}),
    C("sweep-run-results-folder", ["sweep", "run", "s.yaml", "--results", "d"], "d: is a folder",
      files={"s.yaml": SWEEP, "d/keep.txt": "x"}),
    C("sweep-run-results-other-header", ["sweep", "run", "s.yaml", "--results", "r.csv"], "r.csv: its header differs",
      files={"s.yaml": SWEEP, **T}),  # N,D,loss is a prefix of the trainer's header, but has no run_id
    # --- train (trainers/train.py) -------------------------------------------------------------------------
    C("train-nothing", [], "give --config FILE", runner="train"),
    C("train-missing-config", ["--config", "c.yaml"], "c.yaml: no such config file", runner="train"),
    C("train-binary-config", ["--config", "c.yaml"], "c.yaml: not a YAML file (not UTF-8 text)",
      files={"c.yaml": BINARY}, runner="train"),
    C("train-bad-yaml", ["--config", "c.yaml"], "c.yaml: not valid YAML", files={"c.yaml": "a: [b\n"},
      runner="train"),
    C("train-duplicate-key", ["--config", "c.yaml"], "c.yaml: not valid YAML at line 2 (key 'n_layer' appears twice)",
      files={"c.yaml": "n_layer: 2\nn_layer: 3\n"}, runner="train"),
    C("train-config-list", ["--config", "c.yaml"], "c.yaml: expected a mapping", files={"c.yaml": "- 1\n"},
      runner="train"),
    C("train-unknown-option", ["--frobnicate"], "unrecognized arguments: --frobnicate",
      "see trainers/train.py --help", runner="train"),  # argparse printed its usage on two more lines
    C("train-unknown-key", ["tokenz=1e5"], "command line: unknown key 'tokenz'", runner="train"),
    C("train-override-after-option", ["--results", "r.csv", "n_layer=2", "d_model=32", "tokens=abc"],
      "key 'tokens'", runner="train"),
    C("train-results-binary", ["--results", "r.csv", "--quiet", "n_layer=2", "d_model=32", "tokens=1e4"],
      "r.csv: not a text CSV file", files={"r.csv": BINARY}, runner="train"),
    C("train-results-fifo", ["--results", "pipe", "n_layer=2", "d_model=32", "tokens=1e4"],
      "pipe: not a regular file", runner="train", fifo="pipe"),
    # --- a path too long for the filesystem (Path.exists itself raises) ------------------------------------
    C("long-name-fit", ["fit", LONG + ".csv"], "File name too long"),
    C("long-name-forecast", ["forecast", LONG, "--N", "1e9", "--D", "1e10"], "File name too long"),
    C("long-name-fix-from", ["fit", "r.csv", "--law", "chinchilla", "--fix-from", LONG], "File name too long", files=T),
    C("long-name-sweep", ["sweep", "plan", LONG], "File name too long"),
    C("long-name-train-config", ["--config", LONG], "File name too long", runner="train"),
    C("long-name-serve", ["serve", "--fits", LONG, "--port", "0"], "File name too long"),
    # --- serve (the command's options; the HTTP side has its own tests) ------------------------------------
    C("serve-no-folder", ["serve", "--fits", "nope", "--port", "0"], "--fits nope: no such folder"),
    C("serve-fits-is-file", ["serve", "--fits", "r.csv", "--port", "0"], "--fits r.csv: no such folder", files=T),
    C("serve-port-range", ["serve", "--fits", ".", "--port", "70000"], "--port 70000: must be between 0 and 65535"),
    C("serve-log-level", ["serve", "--fits", ".", "--port", "0", "--log-level", "loud"], "--log-level 'loud'"),
]


# ---------------------------------------------------------------------------------------------------------
# Running


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: a hash of each regular file's bytes, the kind of anything else."""
    out: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            mode = path.lstat().st_mode
            key = str(path.relative_to(folder))
            if stat.S_ISREG(mode):
                out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:  # never open a FIFO (it would block) or follow a link
                out[key] = stat.filemode(mode)
    return out


def run_trainer(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    from scaling.train.cli import main

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse usage errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(here)
    return code, out.getvalue(), err.getvalue()


def test_corpus_is_large_and_covers_every_command():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
    commands = {c.runner if c.runner != "scaling" else c.argv[0] for c in CASES}
    assert {"fit", "forecast", "optimal", "sweep", "train", "serve"} <= commands


def test_base_fit_file_is_valid(tmp_path):
    """The broken fit files below differ from this one by the one field they break."""
    path = tmp_path / "f.json"
    path.write_text(_fit())
    assert load_fit(path).params["A"] == 406.4


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path):
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if case.fifo:
        os.mkfifo(tmp_path / case.fifo)
    before = snapshot(tmp_path)
    if case.runner == "train":
        code, out, err = run_trainer(case.argv, tmp_path)
    else:
        code, out, err = invoke(*case.argv, cwd=tmp_path)
    line = assert_user_error(code, out, err, *case.fragments)
    assert "np.float64" not in line and "array(" not in line, line  # numbers as the user wrote them
    assert snapshot(tmp_path) == before, "the command created, changed or removed a file"


def test_output_problem_refuses_devices_without_writing():
    """``-o /dev/null`` (run as root it would replace the device) is checked without writing anything."""
    assert "character device" in output_problem(Path("/dev/null"))
    assert output_problem(Path("/nonexistent-folder/x.json")) is None


def test_derived_values_of_a_degenerate_draw_are_nan_not_a_crash():
    """A bootstrap draw with alpha = beta = 0 (a noisy table; found by a quoted cell '"1e7\\n"' with a loss far off)
    made ``scaling fit`` end in a ZeroDivisionError traceback from the closed-form optimum."""
    fit = load_fit(REPO / "fits" / "chinchilla.json")
    values = fit.derived_values({"E": 1.7, "A": 400.0, "B": 400.0, "alpha": 0.0, "beta": 0.0})
    assert set(values) >= {"a", "b", "tokens_per_param"}
    assert all(v != v for v in values.values())  # all NaN


def test_forecast_of_a_large_grid_is_chunked_with_the_same_answers(tmp_path, monkeypatch):
    """A 1e6-point grid (within the documented cap) with a bootstrap fit needed 30 GB at once (MemoryError
    traceback): predictions now go in chunks of points. Chunked and whole answers agree."""
    from scaling.fitting import forecast

    path = tmp_path / "f.json"
    path.write_text(_fit())
    fit = load_fit(path)
    grid = {"N": np.geomspace(1e8, 1e11, 10), "D": np.geomspace(1e9, 1e12, 5)}
    whole = forecast.predict(fit, grid=True, **grid)
    monkeypatch.setattr(forecast, "MAX_VALUES_AT_ONCE", 7 * forecast.NOISY_ROWS)  # chunks of 7 points
    chunked = forecast.predict(fit, grid=True, **grid)
    assert len(chunked) == len(whole) == 50
    cols = ["N", "D", "point", "conf_lower", "conf_upper", "interval_status", "extrap_decades"]
    pd.testing.assert_frame_equal(chunked[cols], whole[cols])


def test_optimal_over_many_budgets_is_chunked_with_the_same_answers(tmp_path, monkeypatch):
    """1e5 budgets (within the COUNT cap) with a 4000-draw fit stacked 13 GB at once: budgets now go in chunks."""
    from scaling.fitting import forecast

    path = tmp_path / "f.json"
    path.write_text(_fit())
    fit = load_fit(path)
    compute = np.geomspace(1e19, 1e25, 23)
    whole = forecast.compute_optimal(fit, compute)
    monkeypatch.setattr(forecast, "MAX_VALUES_AT_ONCE", 5 * (len(fit.draws) + 1) * 4)  # chunks of 4 budgets
    chunked = forecast.compute_optimal(fit, compute)
    cols = [c for c in whole.columns if "pred" not in c]
    assert len(chunked) == 23
    pd.testing.assert_frame_equal(chunked[cols], whole[cols])
