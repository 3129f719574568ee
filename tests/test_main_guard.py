"""A script that starts worker processes without `if __name__ == "__main__":` gets one clear error naming the
fix (spawned workers re-import the script), instead of BrokenProcessPool errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import pytest

from hwnas.execution.local import unguarded_main_script

SCRIPT = textwrap.dedent("""
    from hwnas import api


    def ev(model):
        return {"accuracy": 0.5}


    {indent}run = api.search("mobile", ["accuracy", "params"], evaluate=ev, budget=2, workers=2,
    {indent}                 storage="sqlite:///runs.db")
""")


def test_api_search_at_module_level_names_the_main_guard(tmp_path):
    script = tmp_path / "newcomer.py"
    script.write_text(SCRIPT.replace("{indent}", ""))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "MainGuardError" in last and 'if __name__ == "__main__":' in last and str(script) in last
    assert "BrokenProcessPool" not in out.stderr


@pytest.mark.parametrize("source, guarded", [
    ('x = 1\nif __name__ == "__main__":\n    run()\n', True),
    ("if '__main__' == __name__:\n    run()\n", True),
    ("run()\n", False),
    ("def main():\n    if __name__ == '__main__':\n        run()\nmain()\n", False),  # not at top level
])
def test_which_scripts_spawned_workers_would_re_run(tmp_path, monkeypatch, source, guarded):
    path = tmp_path / "script.py"
    path.write_text(source)
    main = types.ModuleType("__main__")
    main.__file__ = str(path)
    main.__spec__ = None  # `python script.py`
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert unguarded_main_script() == (None if guarded else str(path))
    main.__spec__ = types.SimpleNamespace(name="pkg.__main__")  # `python -m pkg`: spawn never re-runs it
    assert unguarded_main_script() is None
