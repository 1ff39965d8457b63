"""Running the ``scaling`` command in-process from tests, and checking its one-line user errors.

Shared by the CLI test modules (tests/ is on sys.path under pytest's default import mode).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from scaling.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    """In-process ``scaling ARGS``: (exit status, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def invoke(*args: str, cwd: Path) -> tuple[int, str, str]:
    """``scaling ARGS`` in-process from ``cwd`` without capsys (for module-scoped fixtures that share one fit)."""
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    code = 0
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(here)
    return code, out.getvalue(), err.getvalue()


def assert_user_error(code: int, out: str, err: str, *fragments: str) -> str:
    """Exit 2, nothing on stdout, exactly one line on stderr starting with 'error:', no traceback."""
    assert code == 2, (code, out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
