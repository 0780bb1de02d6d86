"""The shape of the package, held by tests (no imports of mgiad's modules: their source is read).

* Imports run one way. Every import in ``src/mgiad`` counts, those inside function bodies included
  (a cycle cannot hide in a function), relative ones resolved. A package may import itself and the
  packages below it in :data:`LAYERS`; the library (``utils`` .. ``deploy``) never imports the
  applications (``training``, ``experiments``, ``perf``, ``cli``). No import cycle between modules.
* Units that fit one sitting: modules, functions and classes within :data:`LIMITS` lines.
* The root holds at most four plain modules besides ``__init__``, ``__main__`` and ``version``;
  the earlier module names (``mgiad.train``, ...) are aliases (``mgiad._compat``), not files.
"""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "mgiad"

# lowest first: a package imports only itself and packages listed before it
LAYERS = ("version", "utils", "kernels", "data", "layers", "models", "deploy",     # the library
          "training", "experiments", "perf", "cli")                                # applications
LIBRARY = LAYERS[:LAYERS.index("deploy") + 1]
ROOT_MODULES = {"__init__", "__main__", "version"}  # and at most MAX_PLAIN_MODULES others
MAX_PLAIN_MODULES = 4
LIMITS = {"module": 450, "function": 80, "class": 250}


def _modules(root: Path = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports anywhere in its source."""
    modules = _modules(root)
    graph = {}
    for name, (path, is_package) in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module
                for alias in node.names:  # `from . import x`: x may be a module
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in modules else base)
        edges = set()
        for target in targets:
            while target and target not in modules:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> str | None:
    """The package of ``mgiad.<package>...`` (``None`` for the root's own modules)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that run up the layers (or, from the root package, into an application)."""
    wrong = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            s, t = layer(source), layer(target)
            if s is None and source == "mgiad":  # `import mgiad` is the library's entry point
                if t is not None and t not in LIBRARY:
                    wrong.append(f"{source} -> {target}: the package root imports an application")
            elif s is not None and t is not None and LAYERS.index(t) > LAYERS.index(s):
                wrong.append(f"{source} -> {target}: {s} may not import {t}")
            elif s is not None and t is None and target != "mgiad.version":
                wrong.append(f"{source} -> {target}: a package imports the package root")
    return wrong


def test_the_graph_sees_relative_and_function_level_imports(tmp_path):
    package = tmp_path / "mgiad"
    (package / "models").mkdir(parents=True)
    (package / "training").mkdir()
    for folder in (package, package / "models", package / "training"):
        (folder / "__init__.py").write_text("")
    (package / "models" / "factory.py").write_text(
        "def create():\n    from ..training import loop\n    return loop\n")
    (package / "training" / "loop.py").write_text("from mgiad.models.factory import create\n")
    graph = import_graph(package)
    assert graph["mgiad.models.factory"] == {"mgiad.training.loop"}
    assert cycles(graph) == [["mgiad.models.factory", "mgiad.training.loop"]]
    assert layer_violations(graph) == [
        "mgiad.models.factory -> mgiad.training.loop: models may not import training"]


def test_every_package_is_in_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages <= set(LAYERS), f"add {sorted(packages - set(LAYERS))} to LAYERS"
    assert len(packages) >= 7


def test_imports_run_one_way():
    assert layer_violations(import_graph()) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_at_most_four_plain_modules_at_the_root():
    plain = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ROOT_MODULES)
    assert len(plain) <= MAX_PLAIN_MODULES, plain


def _units():
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        yield "module", str(path.relative_to(SRC)), len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                where = f"{path.relative_to(SRC)}:{node.lineno} {node.name}"
                yield kind, where, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("kind", sorted(LIMITS))
def test_units_fit_one_sitting(kind):
    too_long = [f"{where} ({lines} lines)" for k, where, lines in _units()
                if k == kind and lines > LIMITS[kind]]
    assert too_long == [], f"{kind}s over {LIMITS[kind]} lines"
