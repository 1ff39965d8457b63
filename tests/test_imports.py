"""The fitting side (everything outside scaling.train) must import without the training stack."""

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scaling"


def _fitting_modules() -> list[str]:
    """Every module of the package outside scaling.train (and the corpus build script in scaling/data)."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts[-1] == "__main__" or parts[:2] in (["scaling", "train"], ["scaling", "data"]):
            continue
        out.append(".".join(parts))
    return out


FITTING_MODULES = _fitting_modules()


def test_fitting_side_imports_without_torch_transformers_datasets_accelerate():
    code = (
        "import importlib, sys\n"
        f"for m in {FITTING_MODULES!r}: importlib.import_module(m)\n"
        "from scaling.cli import _load_commands; _load_commands()\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'accelerate') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the fitting side imported {out.stdout.strip()}"


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_scaling_is_lazy_and_public_names_resolve():
    # `import scaling` must not pay for scipy/pandas; each public name still resolves to the real object.
    assert _run("import sys, scaling; print(sorted(m for m in ('scipy', 'pandas') if m in sys.modules))") == "[]"
    code = (
        "import scaling, scaling.analysis, scaling.fitting.result\n"
        "assert scaling.fit is scaling.analysis.fit and scaling.load_fit is scaling.fitting.result.load_fit\n"
        "assert sorted(scaling.__all__) == sorted([*scaling._EXPORTS, '__version__'])\n"
        "missing = [n for n in scaling.__all__ if not hasattr(scaling, n)]\n"
        "print(missing)\n"
    )
    assert _run(code) == "[]"


def test_top_level_help_lists_every_real_command_without_importing_them():
    from scaling.cli import COMMANDS, _load_commands, app
    import typer.main

    _load_commands()
    group = typer.main.get_command(app)
    real = {name: (cmd.help or "").strip().split("\n")[0] for name, cmd in group.commands.items()}
    assert list(COMMANDS) == list(real), "scaling/cli/__init__.py COMMANDS must list the real commands, in order"
    for name, text in COMMANDS.items():
        assert " ".join(real[name].split()) == " ".join(text.split()), f"help of {name!r} differs from COMMANDS"
    out = _run(
        "import sys\nfrom scaling.cli import main\nsys.argv = ['scaling', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('IMPORTED' if 'pandas' in sys.modules else 'LAZY')"
    )
    assert out.endswith("LAZY")
    for name in COMMANDS:
        assert name in out


def test_the_library_never_imports_the_command_line():
    # One-way data flow: the CLI imports the library, never the other way (docs/architecture.md).
    import ast
    from pathlib import Path

    import scaling

    root = Path(scaling.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.parent.name == "cli" or path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.startswith("scaling.cli")]
    assert offenders == []
