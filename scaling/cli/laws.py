"""``scaling laws``: the law catalogue (name, formula, inputs, parameters, paper), or one law in full."""

from __future__ import annotations

import re
from typing import Annotated, Any

import pandas as pd
import typer

from scaling.cli import app
from scaling.cli.options import FormatOption
from scaling.cli.output import Format, blank_line, emit, print_csv, print_fields, print_json, print_table
from scaling.laws import Law, get_law, law_names


@app.command("laws")
def laws_command(
    name: Annotated[
        str | None, typer.Argument(help="Show one law in full (e.g. chinchilla, power:D).", metavar="[NAME]")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """The law catalogue: name, formula, inputs, parameters and paper; or one law in full."""
    if name is None:
        rows = [_law_row(get_law(n), short=fmt is Format.table) for n in law_names()]
        table = pd.DataFrame(rows, columns=["name", "formula", "inputs", "params", "paper"])
        if fmt is Format.json:
            print_json([_law_record(get_law(n)) for n in law_names()])
        else:
            emit(
                table, fmt, title="scaling laws", caption="scaling laws NAME shows one in full; fit one with --law NAME"
            )
        return
    law = get_law(name)
    params = pd.DataFrame(
        [
            {
                "param": p.name,
                "lower": p.lower,
                "upper": p.upper,
                "log scale": p.log_scale,
                "description": p.description,
            }
            for p in law.params
        ]
    )
    if fmt is Format.json:
        print_json(_law_record(law))
    elif fmt is Format.csv:
        print_csv(params)
    else:
        print_fields(
            [
                ("law", law.name),
                ("formula", law.formula),
                ("paper", law.reference),
                ("inputs", ", ".join(law.inputs)),
                ("output", law.output),
                ("needs", ", ".join(f"{k}: {v} distinct values" for k, v in law.min_distinct.items()) or "-"),
                ("derived", ", ".join(law.derived) or "-"),
                ("compute-optimal", "closed form" if law.optimal is not None else
                 ("numeric" if law.kind == "loss" else f"- ({law.kind} law)")),
                ("notes", law.notes or "-"),
            ]
        )
        blank_line()
        print_table(params, title="parameters")


def _law_row(law: Law, short: bool) -> dict[str, str]:
    return {
        "name": law.name,
        "formula": law.formula,
        "inputs": ", ".join(law.inputs),
        "params": ", ".join(law.param_names),
        "paper": _short_reference(law.reference) if short else law.reference,
    }


def _short_reference(reference: str) -> str:
    """``Hoffmann et al. 2022, Training ..., arXiv:2203.15556 (Eq. 2)`` -> ``Hoffmann et al. 2022, arXiv:2203.15556``."""
    head = re.match(r"^(.*?\b(19|20)\d\d)\b", reference)
    arxiv = re.search(r"arXiv:\s*[\d.]+", reference)
    if not head:
        return reference
    return head.group(1) + (f", {arxiv.group(0)}" if arxiv else "")


def _law_record(law: Law) -> dict[str, Any]:
    return {
        "name": law.name,
        "formula": law.formula,
        "reference": law.reference,
        "inputs": list(law.inputs),
        "output": law.output,
        "params": [
            {"name": p.name, "lower": p.lower, "upper": p.upper, "log_scale": p.log_scale, "description": p.description}
            for p in law.params
        ],
        "derived": list(law.derived),
        "min_distinct": dict(law.min_distinct),
        "closed_form_optimal": law.optimal is not None,
        "notes": law.notes,
    }
