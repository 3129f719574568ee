"""The layer order of the README ("Layers, lowest first"): a module never imports (even lazily, inside a function) a higher layer."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hwnas"

# Lowest first. Modules of one level may import each other; a lower level never imports a higher one.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors", "config", "registry", "fileio", "pareto"),
    ("spaces",),
    ("metrics",),
    ("onnx_export",),
    ("devices",),
    ("latency",),
    ("objectives",),  # each objective computes itself: from metrics, a latency source, a device
    ("train",),
    ("storage",),
    ("execution",),
    ("search",),
    ("bench", "report"),
    ("export",),
    ("api",),
    ("cli", "__main__"),
)
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


def _unit(module: str) -> str:
    """The layer unit of a dotted module name: `hwnas.search.runner` -> `search`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "hwnas":
                out.update(f"hwnas.{a.name}" for a in node.names)
            elif node.module.startswith("hwnas."):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("hwnas."))
    return out


def _module(path: Path) -> str:
    """The dotted module name of a file of the package (`hwnas/search/__init__.py` -> `hwnas.search`)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules a file imports: `from a.b import c` is module `a.b.c` where that is a file, else `a.b`."""
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("hwnas"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("hwnas."))
    return out & modules


def _edges() -> list[tuple[str, str, str]]:
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        unit = _unit(".".join(rel.parts))
        for target in _imports(path):
            edges.append((str(path.relative_to(PACKAGE.parent)), unit, _unit(target)))
    return edges


def test_every_unit_has_a_layer():
    units = {_unit(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)) for p in PACKAGE.rglob("*.py")}
    assert units - set(LEVEL) == set(), "add new top-level modules of hwnas/ to LAYERS"


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{path} ({unit}) imports {target}" for path, unit, target in _edges()
        if target in LEVEL and LEVEL[target] > LEVEL[unit]
    ]
    assert upward == []


def test_no_import_cycles_between_units():
    graph: dict[str, set[str]] = {}
    for _, unit, target in _edges():
        if unit != target:
            graph.setdefault(unit, set()).add(target)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(u for u in graph if u in reach(u))
    assert cycles == []


def module_cycles(files: list[Path]) -> list[list[str]]:
    """Import cycles between single modules (strongly connected components of the import graph, sorted)."""
    modules = {_module(p): p for p in files}
    graph = {m: sorted(_module_imports(p, set(modules)) - {m}) for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(m: str) -> None:  # Tarjan's algorithm
        index[m] = low[m] = len(index)
        stack.append(m)
        for n in graph[m]:
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            comp = []
            while not comp or comp[-1] != m:
                comp.append(stack.pop())
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return sorted(out)


def test_no_import_cycles_between_modules():
    assert module_cycles(sorted(PACKAGE.rglob("*.py"))) == []


def test_the_module_cycle_check_sees_a_cycle_through_a_lazy_import(tmp_path, monkeypatch):
    pkg = tmp_path / "hwnas" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "hwnas" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from hwnas.sub import b\n")
    (pkg / "b.py").write_text("def f():\n    from hwnas.sub.c import g\n")
    (pkg / "c.py").write_text("from hwnas.sub.a import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "hwnas")
    assert module_cycles(sorted((tmp_path / "hwnas").rglob("*.py"))) == [["hwnas.sub.a", "hwnas.sub.b", "hwnas.sub.c"]]


# What `hwnas.cli` may import: the public API, its own modules, and the foundation; the agent is the
# on-device program, whose arguments are its own.
CLI_IMPORTS = {"hwnas.api", "hwnas.errors", "hwnas.fileio", "hwnas.devices.agent"}


def test_the_cli_calls_only_the_public_api():
    internal = sorted(
        f"{path.relative_to(PACKAGE.parent)} imports {target}"
        for path in (PACKAGE / "cli").rglob("*.py")
        for target in _imports(path)
        if target not in CLI_IMPORTS and not target.startswith("hwnas.cli")
    )
    assert internal == []


@pytest.mark.parametrize("source, bad", [("from hwnas.cli import main", "cli"), ("import hwnas.export.pipeline", "export")])
def test_the_guard_sees_lazy_imports(tmp_path, source, bad):
    f = tmp_path / "m.py"
    f.write_text(f"def f():\n    {source}\n")
    assert {_unit(m) for m in _imports(f)} == {bad}
