"""The results table: reading foreign tables, precise errors, and locked appends."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.errors import ScalingError
from scaling.results import append_rows, check_writable, parse_mapping, read_results

EPOCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_epoch" / "svg_extracted_data.csv"
NDL = ["N", "D", "loss"]


def write(tmp_path: Path, text: str, name: str = "r.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(*args, **kwargs) -> str:
    with pytest.raises(ScalingError) as info:
        read_results(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---- reading and mapping -------------------------------------------------------------------------------


def test_reads_canonical_table_as_floats(tmp_path):
    path = write(tmp_path, "N,D,loss,run_id\n1000,2e6,3.5,a\n2000,4e6,3.25,b\n")
    df = read_results(path, require=NDL)
    assert df["N"].dtype == float and df["D"].tolist() == [2e6, 4e6]
    assert df["run_id"].tolist() == ["a", "b"]
    assert df["C"].tolist() == pytest.approx([6 * 1000 * 2e6, 6 * 2000 * 4e6])  # C defaults to 6ND
    assert df.attrs["derived"] == {"C": "6ND"}


def test_map_and_derive_tokens_from_compute(tmp_path):
    path = write(tmp_path, "Model Size,Training FLOP,loss\n1e6,6e12,3.0\n2e6,2.4e13,2.9\n")
    df = read_results(path, mapping=parse_mapping(['N="Model Size"', "C=Training FLOP"]), require=NDL)
    assert df["D"].tolist() == pytest.approx([1e6, 2e6])
    assert df.attrs["renamed"] == {"N": "Model Size", "C": "Training FLOP"}
    assert df.attrs["derived"] == {"D": "C/(6N)"}


def test_where_selects_rows_and_keeps_file_row_labels(tmp_path):
    path = write(tmp_path, "N,D,loss,final\n1,2,3,0\n1,4,2,1\n2,4,1.5,1\n")
    df = read_results(path, where="final == 1", require=NDL)
    assert df.index.tolist() == [1, 2]
    assert df["loss"].tolist() == [2.0, 1.5]


def test_bad_rows_outside_the_selection_are_ignored(tmp_path):
    path = write(tmp_path, "N,D,loss,final\n1,2,oops,0\n1,4,2,1\n")
    assert len(read_results(path, where="final == 1", require=NDL)) == 1


def test_dataframe_input(tmp_path):
    df = pd.DataFrame({"params": [1e3, 2e3], "D": [1e6, 1e6], "loss": [3.0, 2.0]})
    out = read_results(df, mapping={"N": "params"}, require=NDL)
    assert out["N"].tolist() == [1e3, 2e3]


def test_tsv(tmp_path):
    path = write(tmp_path, "N\tD\tloss\n1\t2\t3\n", name="r.tsv")
    assert read_results(path, require=NDL)["loss"].tolist() == [3.0]


@pytest.mark.skipif(not EPOCH.exists(), reason=f"Epoch Chinchilla data not found at {EPOCH}")
def test_epoch_table_with_mapping_and_where():
    df = read_results(EPOCH, mapping={"N": "Model Size", "C": "Training FLOP"}, where="loss < 3.44", require=NDL)
    assert len(df) == 240  # the published fit drops the 5 highest-loss points
    assert np.allclose(6 * df["N"] * df["D"], df["C"])


# ---- errors: one line, naming file, column and line --------------------------------------------------


def test_missing_column_suggests_near_match(tmp_path):
    path = write(tmp_path, "N,D,Loss\n1,2,3\n")
    msg = error_of(path, require=NDL)
    assert str(path) in msg and "missing column 'loss'" in msg and "--map loss=Loss" in msg


def test_missing_column_suggests_known_foreign_name(tmp_path):
    path = write(tmp_path, "params_N,tokens_D,val_loss\n1,2,3\n")
    msg = error_of(path, require=NDL)
    assert "missing column 'N'" in msg and "--map N=params_N" in msg


def test_missing_column_suggests_quoted_map_for_names_with_spaces(tmp_path):
    path = write(tmp_path, "Model Size,D,loss\n1,2,3\n")
    assert '--map N="Model Size"' in error_of(path, require=NDL)


def test_non_numeric_value_names_line_and_column(tmp_path):
    path = write(tmp_path, "N,D,loss\n1,2,3\n1,2,abc\n")
    msg = error_of(path, require=NDL)
    assert msg == f"{path}: line 3, column 'loss' is 'abc', not a number"


def test_line_numbers_count_blank_lines(tmp_path):
    path = write(tmp_path, "N,D,loss\n1,2,3\n\n\n1,2,x\n")
    assert "line 5," in error_of(path, require=NDL)


@pytest.mark.parametrize("cell, expected", [("nan", "'nan', not a finite number"), ("inf", "'inf', not a finite number"),
                                            ("", "an empty cell"), ("-inf", "'-inf', not a finite number")])
def test_nan_inf_and_empty(tmp_path, cell, expected):
    path = write(tmp_path, f"N,D,loss\n1,2,3\n4,{cell},6\n")
    assert error_of(path, require=NDL) == f"{path}: line 3, column 'D' is {expected}"


@pytest.mark.parametrize("column", ["N", "D", "loss"])
def test_non_positive(tmp_path, column):
    row = {"N": "1", "D": "2", "loss": "3"}
    row[column] = "0" if column != "loss" else "-1.5"
    path = write(tmp_path, "N,D,loss\n1,2,3\n" + ",".join(row[c] for c in NDL) + "\n")
    msg = error_of(path, require=NDL)
    assert f"line 3, column '{column}'" in msg and f"{column} must be positive" in msg


def test_error_in_mapped_column_names_the_foreign_column(tmp_path):
    path = write(tmp_path, "Model Size,Training FLOP,loss\n1e6,6e12,3.0\n2e6,-1,2.9\n")
    msg = error_of(path, mapping={"N": "Model Size", "C": "Training FLOP"}, require=NDL)
    assert msg == f"{path}: line 3, column 'Training FLOP' (mapped to C) is -1; C must be positive"


def test_dataframe_error_names_row_label():
    df = pd.DataFrame({"N": [1.0, 2.0], "D": [1.0, np.inf], "loss": [1.0, 2.0]})
    assert error_of(df, require=NDL) == "table: row 1, column 'D' is 'inf', not a finite number"


def test_map_to_missing_foreign_column(tmp_path):
    path = write(tmp_path, "Model Size,D,loss\n1,2,3\n")
    msg = error_of(path, mapping={"N": "Model Sise"}, require=NDL)
    assert "no column 'Model Sise'" in msg and "did you mean 'Model Size'" in msg


def test_map_syntax_and_non_canonical_target():
    with pytest.raises(ScalingError, match="expected CANONICAL=FOREIGN"):
        parse_mapping(["N"])
    with pytest.raises(ScalingError, match="did you mean 'N'"):
        parse_mapping(["n=Model Size"])


@pytest.mark.parametrize("where, expected", [("bogus > 1", "unknown column 'bogus'; columns are N, D, loss"),
                                             ("N >", "SyntaxError"), ("N + 1", "not a condition"),
                                             ("N > 100", "selects no rows (of 1)")])
def test_bad_where(tmp_path, where, expected):
    path = write(tmp_path, "N,D,loss\n1,2,3\n")
    assert expected in error_of(path, where=where, require=NDL)


@pytest.mark.parametrize("content, expected", [
    (b"", "the file is empty"),
    (b"N,D,loss\n", "has a header but no data rows"),
    (b"\x7fELF\x02\x01\x01\x00\x00\xff\xfe\x00\x03\x00>\x00", "not a text CSV file"),
    (b"just some prose\nwithout commas\n", "not a CSV table (found 1 column"),
    (b'N,D,loss\n1,2,3\n1,2,3,4,5\n', "line 3 has 5 fields but the header has 3"),
    (b'N,D,loss\n1,2,3,\n4,5,6,\n', "every row has 4 fields but the header has 3 (a trailing comma on each row?)"),
    (b'N,N,loss\n1,2,3\n', "line 1: column 'N' appears twice in the header (field 2)"),
])
def test_unreadable_files(tmp_path, content, expected):
    path = tmp_path / "r.csv"
    path.write_bytes(content)
    assert expected in error_of(path, require=NDL)


def test_missing_file_and_folder(tmp_path):
    assert error_of(tmp_path / "nope.csv") == f"{tmp_path / 'nope.csv'}: no such file"
    assert "is a folder" in error_of(tmp_path)


# ---- appends ---------------------------------------------------------------------------------------------

HEADER = ["run_id", "N", "D", "loss"]


def test_append_creates_header_and_round_trips(tmp_path):
    path = tmp_path / "sub" / "results.csv"
    append_rows(path, [{"run_id": "a", "N": 1000, "D": 2e6, "loss": 3.25}], HEADER)
    append_rows(path, [{"run_id": "b", "N": np.int64(2000), "D": 4e6, "loss": float("nan")}], HEADER)
    assert path.read_text().splitlines() == ["run_id,N,D,loss", "a,1000,2000000.0,3.25", "b,2000,4000000.0,"]


def test_append_refuses_other_header_and_leaves_file_alone(tmp_path):
    path = write(tmp_path, "run_id,N,loss\nx,1,2\n")
    before = path.read_bytes()
    with pytest.raises(ScalingError, match=r"\(lacks D\); refusing to append"):
        append_rows(path, [{"run_id": "a", "N": 1, "D": 2, "loss": 3}], HEADER)
    with pytest.raises(ScalingError, match="header differs"):
        check_writable(path, HEADER)
    assert path.read_bytes() == before


def test_an_older_file_takes_new_rows_without_the_columns_added_since(tmp_path):
    """Columns are only ever added at the end of the header: a file written before them keeps working, unchanged."""
    path = write(tmp_path, "run_id,N\nx,1\n")
    assert check_writable(path, HEADER) == ["D", "loss"]
    append_rows(path, [{"run_id": "a", "N": 2, "D": 3, "loss": 4.5}], HEADER)
    assert path.read_text() == "run_id,N\nx,1\na,2\n"
    assert check_writable(tmp_path / "new.csv", HEADER) == [] and check_writable(path, ["run_id", "N"]) == []
    newer = write(tmp_path, "run_id,N,D,loss,extra\n", name="newer.csv")  # written by a later version: refused
    with pytest.raises(ScalingError, match="has extra extra"):
        append_rows(newer, [{"run_id": "a", "N": 2, "D": 3, "loss": 4.5}], HEADER)

def test_append_adds_missing_final_newline(tmp_path):
    path = write(tmp_path, "run_id,N,D,loss\nx,1,2,3")
    append_rows(path, [{"run_id": "y", "N": 4, "D": 5, "loss": 6}], HEADER)
    assert path.read_text() == "run_id,N,D,loss\nx,1,2,3\ny,4,5,6\n"


def test_check_writable(tmp_path):
    check_writable(tmp_path / "new" / "deeper" / "results.csv", HEADER)  # creatable: no error
    with pytest.raises(ScalingError, match="is a folder"):
        check_writable(tmp_path, HEADER)
    blocker = write(tmp_path, "x", name="file")
    with pytest.raises(ScalingError, match="is not a folder"):
        check_writable(blocker / "results.csv", HEADER)


def _writer(path: str, worker: int) -> None:
    for i in range(25):
        rows = [{"run_id": f"w{worker}-{i}-{j}", "N": worker, "D": i, "loss": j + 0.5} for j in range(3)]
        append_rows(path, rows, HEADER)


def test_concurrent_appends_never_interleave(tmp_path):
    path = tmp_path / "results.csv"
    ctx = multiprocessing.get_context("spawn" if multiprocessing.get_start_method() != "fork" else "fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(HEADER) and lines.count(lines[0]) == 1
    df = pd.read_csv(path)
    assert len(df) == 3 * 25 * 3 and df["run_id"].is_unique
    # each call's three rows stay together
    for start in range(0, len(df), 3):
        assert len({r.rsplit("-", 1)[0] for r in df["run_id"].iloc[start:start + 3]}) == 1
