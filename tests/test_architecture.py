"""The package's shape: no import cycles, modules and functions short enough to read in one sitting.

Import cycles are found statically over every ``import`` in ``scaling/`` — function-level (lazy) imports included,
``if TYPE_CHECKING:`` blocks excluded — because a lazy import that closes a cycle is still a design cycle: the two
modules cannot be understood, tested or moved apart. A package ``__init__`` counts as a module (importing
``scaling.analysis.transfer`` runs ``scaling/analysis/__init__.py``).

A module's private names (``_name``) are its own: importing one from another module couples the two through a
name nobody promised to keep, so it fails the test; make the name public where it is defined, or move it.

Length limits follow issue 10: no module over ~500 lines and no function over ~80 lines *without a stated reason*.
The reasons are the dictionaries below; an entry that is no longer needed fails the test, so the lists stay true.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scaling"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

# module -> why it is longer than MAX_MODULE_LINES
LONG_MODULES: dict[str, str] = {
}

# module:qualified.function -> why it is longer than MAX_FUNCTION_LINES
LONG_FUNCTIONS: dict[str, str] = {
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(tree: ast.AST, in_type_checking: bool = False):
    """Every Import/ImportFrom node outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:  # the else branch runs
                yield from _imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def import_graph() -> dict[str, set[str]]:
    """module -> the scaling modules it imports (at module level or inside a function)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
            for target in targets:
                # a module's own package is imported before it anyway: not an edge of the design
                if target in modules and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The import cycles: strongly connected components of more than one module (Tarjan's algorithm; graphlib
    reports only one cycle at a time, and the test should name them all)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# Cycles still being broken (issue 10); must end empty.
KNOWN_CYCLES: list[set[str]] = []


def test_no_import_cycles():
    cycles = [c for c in strongly_connected(import_graph()) if not any(c <= known for known in KNOWN_CYCLES)]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)


def test_no_private_names_imported_across_modules():
    found = []
    for name, path in _modules().items():
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("scaling")):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                found += [f"{name} imports {p} from {node.module}" for p in private]
    assert not found, found


def _function_lengths():
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())

        def visit(node, prefix=""):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    qual = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        yield f"{name}:{qual}", child.end_lineno - child.lineno + 1
                    yield from visit(child, qual + ".")
                else:
                    yield from visit(child, prefix)

        yield from visit(tree)


def test_modules_are_short_or_say_why():
    lengths = {m: len(p.read_text().splitlines()) for m, p in _modules().items()}
    long = {m for m, n in lengths.items() if n > MAX_MODULE_LINES}
    unexplained = sorted(f"{m} ({lengths[m]} lines)" for m in long - set(LONG_MODULES))
    assert not unexplained, f"modules over {MAX_MODULE_LINES} lines with no reason in LONG_MODULES: {unexplained}"
    stale = sorted(set(LONG_MODULES) - long)
    assert not stale, f"LONG_MODULES lists modules that are no longer long (remove them): {stale}"


def test_functions_are_short_or_say_why():
    lengths = dict(_function_lengths())
    long = {f for f, n in lengths.items() if n > MAX_FUNCTION_LINES}
    unexplained = sorted(f"{f} ({lengths[f]} lines)" for f in long - set(LONG_FUNCTIONS))
    assert not unexplained, f"functions over {MAX_FUNCTION_LINES} lines with no reason in LONG_FUNCTIONS: {unexplained}"
    stale = sorted(set(LONG_FUNCTIONS) - long)
    assert not stale, f"LONG_FUNCTIONS lists functions that are no longer long (remove them): {stale}"
