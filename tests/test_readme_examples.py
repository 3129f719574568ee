"""The README's Python code blocks run as written (in order, one namespace, in an empty folder)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = [REPO / "README.md"]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    source = next(p for p in SOURCES if p.is_file() and python_blocks(p))
    blocks = python_blocks(source)
    assert len(blocks) >= 2, f"{source} should show the own-data search and the evaluate callable"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{source.name} python block {i + 1}", "exec"), namespace)  # noqa: S102
    run = namespace["run"]
    assert run.trials("COMPLETE"), "the README's search evaluated nothing"
    assert (tmp_path / "exported" / "manifest.json").is_file()
