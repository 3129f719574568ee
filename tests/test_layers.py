"""The layer order of DESIGN.md: a module never imports (even lazily, inside a function) a higher layer."""

from __future__ import annotations

import ast
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


@pytest.mark.parametrize("source, bad", [("from hwnas.cli import main", "cli"), ("import hwnas.export.pipeline", "export")])
def test_the_guard_sees_lazy_imports(tmp_path, source, bad):
    f = tmp_path / "m.py"
    f.write_text(f"def f():\n    {source}\n")
    assert {_unit(m) for m in _imports(f)} == {bad}
