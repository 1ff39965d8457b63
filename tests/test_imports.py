"""The fitting side (everything outside scaling.train) must import without the training stack."""

import subprocess
import sys

FITTING_MODULES = [
    "scaling", "scaling.estimate", "scaling.forecast", "scaling.fitfile", "scaling.backtest", "scaling.optimal",
    "scaling.report", "scaling.serve", "scaling.transfer", "scaling.repetition", "scaling.sweep", "scaling.cli",
]


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
