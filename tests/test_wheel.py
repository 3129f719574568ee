"""A real wheel: built from the source tree, installed into a fresh venv, used from a folder outside the repo.

Offline: `pip wheel --no-build-isolation` uses this interpreter's setuptools; the fresh venv sees this
interpreter's site-packages (torch & co) through a .pth file, after its own, so the installed wheel is
the hwnas it imports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from hwnas.fileio import DATA_KINDS

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> tuple[Path, Path]:
    """(wheel file, venv bin folder) of hwnas built from a clean copy of the source tree."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.png")
    for name in ("hwnas", *{k.split("/")[0] for k in DATA_KINDS}):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(root / "dist"), str(src)], root)
    (wheel,) = (root / "dist").glob("hwnas-*.whl")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root).strip())
    base = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_hwnas_test_base.pth").write_text("\n".join(sorted(base)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
          str(wheel)], root)
    return wheel, py.parent


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_wheel_ships_the_data_folders(wheel_venv):
    wheel, _ = wheel_venv
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in DATA_KINDS:
        source = sorted(p.relative_to(REPO / kind).as_posix() for p in (REPO / kind).rglob("*")
                        if p.is_file() and p.suffix in (".yaml", ".json", ".csv"))
        assert source, kind
        missing = [f for f in source if f"hwnas/_data/{kind}/{f}" not in names]
        assert not missing, f"{kind}: not in the wheel: {missing}"


def test_installed_wheel_searches_a_builtin_recipe_outside_the_repo(wheel_venv, tmp_path):
    _, bin_dir = wheel_venv
    hwnas = str(bin_dir / "hwnas")
    where = _run([str(bin_dir / "python"), "-c", "import hwnas, hwnas.fileio as f; "
                  "print(hwnas.__file__); print(f.data_dir('search'))"], tmp_path, _env()).split()
    assert all(Path(p).is_relative_to(bin_dir.parent) for p in where), where  # the wheel, not the checkout
    out = json.loads(_run([hwnas, "search", "mobile-cost", "--budget", "6", "--storage", "sqlite:///r.db",
                           "--json"], tmp_path, _env()))
    assert out["evaluated"] == 6 and out["pareto_front"]
    assert (tmp_path / "r.db").is_file()
    manifest = json.loads(_run([hwnas, "export", "--run", out["run"], "--pick", "knee", "--storage", "sqlite:///r.db",
                                "--recipe", "fast", "--out", "exp", "--json"], tmp_path, _env()))
    assert manifest["latency"]["device"] == "ort-cpu-1t" and manifest["latency"]["predicted_ms"] is not None
    bench = json.loads(_run([hwnas, "bench", "--table", "nb201-hw360-cifar100", "--strategies", "random",
                             "--seeds", "1", "--budget", "10", "--json"], tmp_path, _env()))
    assert Path(bench["table"]).is_relative_to(bin_dir.parent) and bench["true_front_size"] > 1
