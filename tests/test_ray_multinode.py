"""Two Ray nodes on one machine that share no run directory with the driver.

Each node is its own `ray start` (own temp dir, own working directory, one CPU). Every Python process of
a node runs a `sitecustomize` audit hook that refuses any file access under the driver's folder, so a
job that read or wrote the driver's run directory (a weights path, a dataset file, the journal) fails.
The search runs through the CLI (`--ray-address`), is killed with SIGKILL mid-run, resumed, compared
with an inline run of the same seed, and exported; a second search ships the user's own data through
the object store. The cluster is stopped by killing the two nodes' process groups (`ray stop` would
stop every Ray cluster on the machine).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="install the ray extra: pip install 'hwnas[ray]'")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "latency_tables" / "ort-cpu-1t" / "mobile-mnist.json"
RAY_CLI = Path(sys.executable).parent / "ray"
BUDGET = 4
GUARD = '''
import os, sys
_forbid = os.environ.get("HWNAS_TEST_FORBID")
if _forbid:
    def _hwnas_guard(event, args):
        if event in ("open", "os.listdir", "os.scandir", "sqlite3.connect") and args:
            path = args[0]
            if isinstance(path, (str, bytes, os.PathLike)):
                real = os.path.realpath(os.fsdecode(path))
                if real == _forbid or real.startswith(_forbid + os.sep):
                    raise PermissionError(f"a Ray worker touched the driver's folder: {real}")
    sys.addaudithook(_hwnas_guard)
'''
RECIPE = f"""
name: cluster
space: mobile:mnist
objectives: [accuracy, latency_ms]
latency_table: {TABLE}
strategy: {{name: random}}
seed: 3
budget: {BUDGET}
dataset: mnist5k
train: {{epochs: 1, data_fraction: 0.1, seed: 0}}
executor: {{name: inline}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_node(args: list[str], cwd: Path, env: dict[str, str], sessions: list[int]) -> str:
    """`ray start ...` in a new session (its id joins `sessions` at once); returns its output."""
    proc = subprocess.Popen([str(RAY_CLI), "start", *args, "--num-cpus", "1", "--disable-usage-stats"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    sessions.append(proc.pid)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    return out


def _kill_sessions(sessions: list[int]) -> None:
    """SIGKILL every process of these sessions: the nodes' daemons and workers (which make their own
    process groups but stay in the session), and nothing else on the machine."""
    deadline = time.time() + 15
    while time.time() < deadline:  # until none is left, so that none writes into the removed folders
        left = 0
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            try:
                zombie = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
                if os.getsid(pid) in sessions and not zombie:
                    os.kill(pid, signal.SIGKILL)
                    left += 1
            except (ProcessLookupError, PermissionError, FileNotFoundError):
                pass
        if not left:
            return
        time.sleep(0.2)


def _hwnas(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hwnas", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _complete(db: Path) -> int:
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE status='COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:  # the tables are not there yet
        return 0


def _rows(run) -> list[tuple[str, dict]]:
    return [(t.arch_str, {k: t.values[k] for k in ("accuracy", "latency_ms")}) for t in run.trials()]


@pytest.fixture
def cluster():
    """(address, root folder, driver folder, node folders): two nodes, each with one CPU."""
    root = Path(tempfile.mkdtemp(prefix="hwnas-ray-", dir="/tmp"))  # short: Ray's socket paths
    driver, guard = root / "driver", root / "guard"
    nodes = [root / "node1", root / "node2"]
    for d in (driver, guard, *nodes):
        d.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    env = {**os.environ, "PYTHONPATH": f"{guard}{os.pathsep}{REPO}", "HWNAS_TEST_FORBID": str(driver.resolve()),
           "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    sessions: list[int] = []
    try:
        out = _start_node(
            ["--head", "--port", str(_free_port()), "--temp-dir", str(root / "t1"), "--include-dashboard", "false",
             "--ray-client-server-port", str(_free_port()), "--dashboard-port", str(_free_port())],
            nodes[0], env, sessions)
        address = re.search(r"ray start --address='([^']+)'", out).group(1)
        _start_node(["--address", address, "--temp-dir", str(root / "t2")], nodes[1], env, sessions)
        yield address, root, driver, nodes
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _kill_sessions(sessions)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_search_across_two_nodes_without_a_shared_run_directory(cluster):
    address, root, driver, nodes = cluster
    from hwnas.execution import make_executor
    from hwnas.export.source import load_weights
    from hwnas.search.problem import ArchProblem
    from hwnas.search.recipe import execute_recipe, load_recipe
    from hwnas.search.runner import run_search
    from hwnas.search.strategies import make_strategy
    from hwnas.storage import open_storage
    from hwnas.train import load_dataset

    # The guard is real: a task on this cluster cannot read the driver's folder, works elsewhere, and
    # imports this checkout's hwnas.
    (driver / "secret.txt").write_text("driver only")
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    deadline = time.time() + 60
    while sum(n["Alive"] for n in ray.nodes()) < 2 and time.time() < deadline:
        time.sleep(0.5)

    @ray.remote(num_cpus=1)
    def probe(path: str):
        import hwnas

        try:
            Path(path).read_text()
            readable = True
        except PermissionError:
            readable = False
        time.sleep(0.5)  # two at a time: one per node
        return readable, os.getcwd(), hwnas.__file__, ray.get_runtime_context().get_node_id()

    probes = ray.get([probe.remote(str(driver / "secret.txt")) for _ in range(4)])
    assert not any(p[0] for p in probes), "the guard let a worker read the driver's folder"
    assert {os.path.realpath(p[1]) for p in probes} <= {os.path.realpath(n) for n in nodes}
    assert {p[2] for p in probes} == {str(REPO / "hwnas" / "__init__.py")}
    assert len({p[3] for p in probes}) == 2 and sum(n["Alive"] for n in ray.nodes()) == 2

    # The user's own data (loaded Splits) crosses once: one put, one fetch per node's worker.
    own = replace(load_dataset("digits").fit_to((1, 28, 28)), name="own-digits")
    problem = ArchProblem("mobile:mnist", ["accuracy", "latency_ms"], (), TABLE, own,
                          {"epochs": 1, "data_fraction": 0.2})
    storage = open_storage(f"sqlite:///{driver / 'own' / 'hwnas.db'}")
    run = storage.create_run("own", problem.objectives, {}, problem.info())
    with make_executor("ray", address=address) as ex:
        assert ex.workers == 2 and ex.nodes == 2
        run_search(problem, make_strategy("random", problem.space, 2, 1), run, 3, ex)
        shipped = ex.shipped_bytes
    ray.shutdown()
    trials = run.trials()
    assert [t.status for t in trials] == ["COMPLETE"] * 3, [t.error for t in trials]
    per_node = Counter(t.extras["ray_node"] for t in trials if t.extras["ray_fetched_mb"] > 0)
    assert sum(per_node.values()) <= 2 and set(per_node.values()) == {1}
    assert shipped > own.x_train.nbytes and max(t.extras["ray_fetched_mb"] for t in trials) * 1e6 == pytest.approx(
        shipped, rel=1e-3)

    # The CLI search: relative storage from the driver's folder, killed with SIGKILL, resumed.
    (driver / "recipe.yaml").write_text(RECIPE)
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    db = driver / "runs" / "hwnas.db"
    search = ["search", "recipe.yaml", "--ray-address", address, "--storage", "sqlite:///runs/hwnas.db", "--quiet"]
    proc = _hwnas([*search, "--name", "cluster"], driver, env)
    deadline = time.time() + 300
    while _complete(db) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, f"the search ended before it could be killed:\n{proc.communicate()[0]}"
    proc.kill()  # SIGKILL
    proc.wait()
    before = {t.arch_id: t for t in open_storage(f"sqlite:///{db}").get_run("cluster").trials("COMPLETE")}
    before_bytes = {a: Path(t.weights_path).read_bytes() for a, t in before.items()}
    assert 1 <= len(before) < BUDGET
    resumed = _hwnas([*search, "--resume", "cluster"], driver, env)
    out = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, out

    run = open_storage(f"sqlite:///{db}").get_run("cluster")
    trials = run.trials()
    assert [t.status for t in trials] == ["COMPLETE"] * BUDGET, [t.error for t in trials]
    for a, t in before.items():  # nothing completed before the kill was lost or redone
        now = next(x for x in trials if x.arch_id == a)
        assert (now.values, now.attempts) == (t.values, t.attempts)
        assert Path(now.weights_path).read_bytes() == before_bytes[a]
    run_dir = (driver / "runs").resolve()
    for t in trials:  # 100% exportable weights, all under the driver's run folder
        assert Path(t.weights_path).is_absolute() and Path(t.weights_path).is_relative_to(run_dir)
        model = load_weights(t.weights_path, t.arch)
        assert model(__import__("torch").zeros(1, 1, 28, 28)).shape == (1, 10)
    assert len({t.extras["ray_node"] for t in trials}) == 2  # both nodes trained
    journal = json.dumps([t.to_dict() for t in trials]) + json.dumps([asdict(e) for e in run.events()], default=str)
    for worker_side in (*nodes, root / "t1", root / "t2"):
        assert str(worker_side) not in journal
        assert not [p for p in worker_side.rglob("*") if p.suffix == ".safetensors"]
    assert not [p for n in nodes for p in n.iterdir()], "a worker wrote into its working directory"

    # Same results as one machine for the same seed: an inline run (one thread, like a worker).
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        recipe = load_recipe(driver / "recipe.yaml")
        ref = execute_recipe(recipe, f"sqlite:///{root / 'ref' / 'hwnas.db'}", run_name="ref").run
    finally:
        torch.set_num_threads(threads)
    assert _rows(run) == _rows(ref)

    # `export --run` exports trained weights from the driver's disk.
    exp = _hwnas(["export", "--run", "cluster", "--pick", "knee", "--storage", "sqlite:///runs/hwnas.db",
                  "--out", "exported", "--no-measure", "--json"], driver, env)
    out = exp.communicate(timeout=300)[0]
    assert exp.returncode == 0, out
    manifest = json.loads((driver / "exported" / "manifest.json").read_text())
    assert manifest["source"]["trained"] and manifest["source"]["run"] == "cluster"
