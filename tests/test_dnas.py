"""FBNet DNAS: supernet paths, latency cost from the table, gradients, losses, tau, determinism, guards, resume."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.errors import ConfigError, HwnasError
from hwnas.latency import LatencyTable, LatencyTableError, MissingEntryError
from hwnas.search.dnas import (
    CostTable,
    DnasDivergedError,
    SupernetConfig,
    Target,
    budget_loss,
    fbnet_loss,
    gumbel_weights,
    latency_cost,
    make_cost,
    search_supernet,
    tau_at,
)
from hwnas.search.dnas.state import read_meta
from hwnas.search.dnas.trainer import CHECKPOINT
from hwnas.spaces import get_space
from hwnas.train import Splits, load_dataset

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "latency_tables" / "ort-cpu-1t" / "mobile-mnist.json"
NB201_TABLE = REPO / "latency_tables" / "ort-cpu-1t" / "nb201-cifar100.json"
SPACE = get_space("mobile:mnist")


@pytest.fixture(scope="module")
def table() -> LatencyTable:
    return LatencyTable.load(TABLE)


@pytest.fixture(scope="module")
def tiny() -> Splits:
    """256 MNIST training images (and small val/test): enough for a few supernet steps."""
    d = load_dataset("mnist5k")
    return Splits("tiny", d.x_train[:256], d.y_train[:256], d.x_val[:64], d.y_val[:64], d.x_test[:64],
                  d.y_test[:64], d.num_classes)


def _fast(**kw) -> SupernetConfig:
    base = dict(epochs=3, warmup_epochs=1, batch_size=32, arch_fraction=0.5, theta_lr=0.3, mode="hard",
                device="cpu")
    return SupernetConfig(**{**base, **kw})


def test_a_derived_arch_is_exactly_a_path_of_the_supernet():
    net = SPACE.supernet()
    x = torch.randn(3, 1, 28, 28)
    for seed in range(3):
        arch = SPACE.sample(seed)
        model = SPACE.build(arch)
        model.load_state_dict(net.path_state_dict(arch), strict=True)
        net.eval()
        model.eval()
        torch.testing.assert_close(net(x, net.path_weights(arch), hard=True), model(x))
    assert [len(op.ops) for op in net.mixed_ops()] == [len(c) for c in SPACE.choices]


def test_hard_per_sample_paths_equal_each_samples_own_path():
    net = SPACE.supernet().eval()
    x = torch.randn(4, 1, 28, 28)
    archs = [SPACE.sample(s) for s in range(4)]
    w = [torch.stack([net.path_weights(a)[layer] for a in archs]) for layer in range(len(SPACE.choices))]
    out = net(x, w, hard=True)
    for i, a in enumerate(archs):
        torch.testing.assert_close(out[i : i + 1], net(x[i : i + 1], net.path_weights(a), hard=True))


def test_latency_cost_is_the_tables_calibrated_prediction(table):
    cost = latency_cost(SPACE, table)
    for seed in range(5):
        arch = SPACE.sample(seed)
        assert cost.of(SPACE.encode(arch)) == pytest.approx(table.predict_ms(arch), rel=1e-9)
    fastest = SPACE.decode(cost.fastest())
    others = [table.predict_ms(SPACE.sample(s)) for s in range(20)]
    assert table.predict_ms(fastest) < min(others)


def test_expected_latency_with_layout_switches_is_the_exact_expectation(table):
    cost = latency_cost(SPACE, table)
    assert cost.switches is not None, "the shipped table's calibration models layout switches"
    gen = torch.Generator().manual_seed(0)
    probs = [torch.softmax(torch.randn(len(c), generator=gen) * 2, 0) for c in SPACE.choices]
    # one-hot probabilities give the arch's own cost
    arch = SPACE.sample(3)
    idx = SPACE.encode(arch)
    onehot = [torch.nn.functional.one_hot(torch.tensor(i), len(c)).float() for i, c in zip(idx, SPACE.choices)]
    assert float(cost.expected(onehot)) == pytest.approx(table.predict_ms(arch), rel=1e-6)
    # against the mean over sampled archs (independent layers): the exact expectation, switches included
    rng = np.random.default_rng(0)
    draws = np.stack([rng.choice(len(p), size=20000, p=p.numpy() / p.numpy().sum()) for p in probs], axis=1)
    mean = np.mean([cost.of(list(row)) for row in draws])
    assert float(cost.expected(probs)) == pytest.approx(mean, rel=2e-3)
    # and differentiable in the probabilities
    theta = [torch.zeros(len(c), requires_grad=True) for c in SPACE.choices]
    cost.expected([torch.softmax(t, 0) for t in theta]).backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in theta)
    # fastest is exact over the layouts: no one-gene change from it is cheaper
    best = cost.fastest()
    for layer, row in enumerate(SPACE.choices):
        for i in range(len(row)):
            assert cost.of(best[:layer] + [i] + best[layer + 1:]) >= cost.of(best) - 1e-12


def test_a_table_of_another_space_or_device_is_refused(table):
    with pytest.raises(LatencyTableError, match="space nb201:cifar100.*mobile:mnist"):
        make_cost("latency_ms", SPACE, LatencyTable.load(NB201_TABLE))
    from hwnas.devices import load_device

    other = load_device("torch-cpu").identity()
    with pytest.raises(LatencyTableError, match="device 'ort-cpu-1t'"):
        make_cost("latency_ms", SPACE, table, other)
    make_cost("latency_ms", SPACE, table, load_device("ort-cpu-1t").identity())  # its own device is fine


def test_a_missing_table_entry_is_an_error_not_zero(table):
    gap = LatencyTable(table.space, table.device, dict(table.entries), table.calibration)
    del gap.entries[next(k for k in gap.entries if k.startswith("mbconv:k5:e6:g2"))]
    with pytest.raises(MissingEntryError, match="no entry for block mbconv:k5:e6:g2"):
        latency_cost(SPACE, gap)


def test_gradients_reach_theta_through_the_latency_term(table):
    cost = latency_cost(SPACE, table)
    theta = [torch.zeros(len(c), requires_grad=True) for c in SPACE.choices]
    lat = cost.expected([torch.softmax(t, 0) for t in theta])
    budget_loss(torch.tensor(1.0), lat, target=0.5 * float(lat.detach()), lam=1.0).backward()
    for t, c in zip(theta, cost.per_layer):
        g = t.grad
        assert g is not None and torch.count_nonzero(g) == len(c)
        # a slower candidate gets a larger (more positive) gradient: descent moves mass to faster ones
        assert torch.argmin(g) == min(range(len(c)), key=c.__getitem__)
    assert all(t.grad is not None for t in theta)


@pytest.mark.parametrize("lat_ms", [1e-4, 0.1, 0.2, 0.3, 5.0])
def test_fbnet_loss_is_finite_and_differentiable_at_our_latencies(lat_ms):
    lat = torch.tensor(lat_ms, requires_grad=True)
    loss = fbnet_loss(torch.tensor(2.0), lat, unit=1000.0, alpha=0.2, beta=0.6)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(lat.grad) and lat.grad > 0
    assert math.isnan(float(torch.log(torch.tensor(lat_ms)) ** 0.6)) == (lat_ms < 1)  # why ms alone fails


def test_gumbel_noise_is_per_sample_or_shared_as_asked():
    theta = [torch.zeros(5)]
    gen = torch.Generator().manual_seed(0)
    per_sample = gumbel_weights(theta, 1.0, 64, gen, hard=True)[0]
    assert per_sample.shape == (64, 5) and len(set(per_sample.argmax(1).tolist())) > 1
    shared = gumbel_weights(theta, 1.0, 1, gen, hard=True)[0]
    assert shared.shape == (1, 5) and float(shared.sum()) == pytest.approx(1.0)
    assert torch.isfinite(gumbel_weights(theta, 1e-4, 8, gen, hard=False)[0]).all()  # tiny tau stays finite


def test_dominant_latency_weight_picks_the_fastest_candidate_and_zero_weight_does_not(table, tiny):
    cost = latency_cost(SPACE, table)
    fastest = cost.fastest()
    strong = search_supernet(SPACE, tiny, cost, _fast(), Target(T=0.5 * cost.of(fastest), lam=100.0))
    argmax = [max(range(len(p)), key=p.__getitem__) for p in strong.probs()]
    assert argmax == fastest
    free = search_supernet(SPACE, tiny, cost, _fast(), Target(T=0.5 * cost.of(fastest), lam=0.0))
    argmax = [max(range(len(p)), key=p.__getitem__) for p in free.probs()]
    assert argmax != fastest
    # tau follows FBNet's schedule, one value per epoch
    assert [h["tau"] for h in strong.history] == pytest.approx([5.0 * math.exp(-0.045 * e) for e in range(3)])
    assert tau_at(10) == pytest.approx(5.0 * math.exp(-0.45))


def test_same_seed_same_theta(table, tiny):
    cost = latency_cost(SPACE, table)
    target = Target(T=0.08, lam=1.0)
    a = search_supernet(SPACE, tiny, cost, _fast(epochs=2), target)
    b = search_supernet(SPACE, tiny, cost, _fast(epochs=2), target)
    c = search_supernet(SPACE, tiny, cost, _fast(epochs=2, seed=1), target)
    assert a.theta == b.theta
    assert a.theta != c.theta


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, tiny):
    nan_cost = CostTable("latency_ms", 0.0, tuple((float("nan"),) * len(c) for c in SPACE.choices))
    with pytest.raises(DnasDivergedError, match="diverged.*epoch 1.*last good epoch checkpoint is kept"):
        search_supernet(SPACE, tiny, nan_cost, _fast(), Target(T=0.1), tmp_path)
    assert read_meta(tmp_path / CHECKPOINT)["epoch"] == 1  # the warm-up epoch survived


def test_checkpoint_of_another_table_or_settings_is_refused(tmp_path, table, tiny):
    cost = latency_cost(SPACE, table)
    search_supernet(SPACE, tiny, cost, _fast(epochs=2, warmup_epochs=1), None, tmp_path, until=1)
    other = CostTable(cost.name, cost.fixed * 2, cost.per_layer)
    with pytest.raises(HwnasError, match="another cost table"):
        search_supernet(SPACE, tiny, other, _fast(epochs=2, warmup_epochs=1), None, tmp_path, until=1)
    with pytest.raises(ConfigError, match="other settings"):
        search_supernet(SPACE, tiny, cost, _fast(epochs=2, warmup_epochs=1, lr=0.01), None, tmp_path, until=1)


_CHILD = """
import sys, torch
from tests.test_dnas import _child_main
_child_main(sys.argv[1])
"""


def _child_main(directory: str) -> None:
    """Run the reference search into `directory` (used by the kill -9 test in a subprocess)."""
    d = load_dataset("mnist5k")
    tiny = Splits("tiny", d.x_train[:256], d.y_train[:256], d.x_val[:64], d.y_val[:64], d.x_test[:64],
                  d.y_test[:64], d.num_classes)
    cost = latency_cost(SPACE, LatencyTable.load(TABLE))
    search_supernet(SPACE, tiny, cost, _fast(epochs=4), Target(T=0.08), Path(directory))


@pytest.fixture
def one_thread():
    """Float sums depend on the thread count: the reference, the killed child and the resume all use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_kill_9_mid_training_resumes_from_the_last_epoch(tmp_path, table, tiny, one_thread):
    cost = latency_cost(SPACE, table)
    ref = search_supernet(SPACE, tiny, cost, _fast(epochs=4), Target(T=0.08), tmp_path / "ref")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path / "k")], env=env, cwd=REPO,
                            stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "k" / CHECKPOINT
    deadline = time.time() + 240
    while not (ckpt.is_file() and read_meta(ckpt)["epoch"] >= 2):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = read_meta(ckpt)["epoch"]
    assert 2 <= done < 4  # killed mid-search
    resumed = search_supernet(SPACE, tiny, cost, _fast(epochs=4), Target(T=0.08), tmp_path / "k")
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    assert resumed.theta == ref.theta  # nothing lost, nothing redone: same theta as without the kill


FBNET_RECIPE = f"""
space: mobile:mnist
objectives: [params, latency_ms]
latency_table: {TABLE}
method:
  name: fbnet
  params: {{targets: [0.03, 0.12], samples: 1, epochs: 2, warmup_epochs: 1, batch_size: 32, data_fraction: 0.1,
            theta_lr: 0.3, mode: hard}}
dataset: digits
budget: 50
executor: inline
"""


def test_fbnet_recipe_records_derived_archs_as_trials_of_one_run(tmp_path, capsys):
    from hwnas.cli import main
    from hwnas.storage import open_storage

    recipe = tmp_path / "fb.yaml"
    recipe.write_text(FBNET_RECIPE)
    db = f"sqlite:///{tmp_path / 'fb.db'}"
    assert main(["search", str(recipe), "--storage", db, "--name", "fb", "--quiet", "--json"]) == 0
    run = open_storage(db).get_run("fb")
    dnas = run.info["dnas"]
    derived = {d["arch_id"] for t in dnas["targets"] for d in t["derived"]}
    assert {t.arch_id for t in run.trials()} == derived and run.trials("COMPLETE")
    assert run.info["strategy"]["name"] == "fbnet"
    for t in dnas["targets"]:
        assert [h["epoch"] for h in t["history"]] == [0, 1]  # warm-up (shared) + one search epoch
        for d in t["derived"]:
            assert d["latency_ms"] == pytest.approx(run.trial(d["arch_id"]).values["latency_ms"], abs=1e-6)
    # the resumed run trains no supernet epoch again and evaluates nothing twice
    events = len(run.events())
    assert main(["search", str(recipe), "--storage", db, "--resume", "fb", "--quiet", "--json"]) == 0
    assert len(run.events()) == events
    assert main(["report", "fb", "--storage", db]) == 0
    text = (run.artifact_dir / "report.md").read_text()
    assert "## DNAS (fbnet) sweep" in text and "dnas-heatmap-1.png" in text
    assert (run.artifact_dir / "dnas-heatmap-0.png").stat().st_size > 1000


def test_fbnet_params_are_validated():
    from hwnas.search.recipe import parse_recipe

    base = {"space": "mobile:mnist", "objectives": ["params", "latency_ms"], "latency_table": str(TABLE)}
    with pytest.raises(ConfigError, match="no parameter.*bogus"):
        parse_recipe({**base, "method": {"name": "fbnet", "params": {"targets": [0.1], "bogus": 1}}})
    with pytest.raises(ConfigError, match="needs `targets:`"):
        parse_recipe({**base, "method": {"name": "fbnet", "params": {}}})
    with pytest.raises(ConfigError, match="warmup_epochs"):
        parse_recipe({**base, "method": {"name": "fbnet", "params": {"targets": [0.1], "epochs": 2,
                                                                     "warmup_epochs": 2}}})
    with pytest.raises(ConfigError, match="T > 0"):
        parse_recipe({**base, "method": {"name": "fbnet", "params": {"targets": [{"T": -1}]}}})
    for bad in ({"decode": "nearest"}, {"derive_init": "imagenet"}, {"cost_from": "mean"}, {"schedule": "x"}):
        with pytest.raises(ConfigError, match="is one of"):
            parse_recipe({**base, "method": {"name": "fbnet", "params": {"targets": [0.1], **bad}}})
    from hwnas.search.dnas import FBNetParams
    from hwnas.search.recipe import load_recipe

    for name in ("fbnet-mnist.yaml", "fbnet-paper-mnist.yaml"):  # the shipped fast and paper recipes are valid
        FBNetParams(**load_recipe(REPO / "search" / name).method_params)


@pytest.mark.slow  # ~10 CPU-s: soft mode runs all 13 candidates of every layer
def test_soft_mode_mixes_every_candidate_and_learns_theta(table, tiny):
    small = Splits("small", tiny.x_train[:64], tiny.y_train[:64], tiny.x_val, tiny.y_val, tiny.x_test,
                   tiny.y_test, tiny.num_classes)
    cost = latency_cost(SPACE, table)
    res = search_supernet(SPACE, small, cost, _fast(epochs=2, mode="soft"), Target(T=0.05, lam=1.0))
    assert res.history[-1]["theta_steps"] > 0
    assert all(torch.isfinite(torch.tensor(t)).all() and len(set(t)) > 1 for t in res.theta)
    assert res.history[-1]["expected_cost"] < res.history[0]["expected_cost"]  # the budget pulls latency down


def test_soft_mode_the_papers_relaxation_trains_theta_toward_the_budget(table, tiny, one_thread):
    """FBNet's paper mode (every candidate mixed by its Gumbel-softmax weight), one weight and one theta step
    on a few images: theta moves, stays finite, and a dominant latency term lowers the expected latency below
    the uniform start (the slow test above trains longer on more data)."""
    small = Splits("small", tiny.x_train[:32], tiny.y_train[:32], tiny.x_val[:16], tiny.y_val[:16],
                   tiny.x_test[:16], tiny.y_test[:16], tiny.num_classes)
    cost = latency_cost(SPACE, table)
    config = _fast(epochs=1, warmup_epochs=0, batch_size=16, mode="soft")
    res = search_supernet(SPACE, small, cost, config, Target(T=0.02, lam=10.0))
    assert res.history[-1]["theta_steps"] > 0
    assert all(torch.isfinite(torch.tensor(t)).all() and len(set(t)) > 1 for t in res.theta)
    uniform = float(cost.expected([torch.full((len(t),), 1.0 / len(t)) for t in res.theta]))
    assert res.history[-1]["expected_cost"] < uniform


def _small_cost(cost: CostTable, layers: int) -> CostTable:
    """The first `layers` layers of a cost table (switches included), small enough to enumerate."""
    from dataclasses import replace

    sw = cost.switches
    if sw is not None:
        sw = replace(sw, layouts=sw.layouts[:layers], at_layer=sw.at_layer[:layers])
    return CostTable(cost.name, cost.fixed, cost.per_layer[:layers], sw)


def test_budget_decode_is_the_most_probable_arch_in_the_window_by_brute_force(table):
    import itertools
    import random

    from hwnas.search.dnas.decode import budget_decode

    cost = _small_cost(latency_cost(SPACE, table), 3)
    assert cost.switches is not None  # the layout-switch states of the dynamic program are exercised
    rng = random.Random(0)
    archs = list(itertools.product(*[range(len(r)) for r in cost.per_layer]))
    for _ in range(4):
        logp = [[math.log(rng.random()) for _ in r] for r in cost.per_layer]
        budget = rng.uniform(1.2, 4.0) * cost.of(cost.fastest())
        def score(idx, logp=logp):
            return sum(lp[i] for lp, i in zip(logp, idx))

        best = max((a for a in archs if 0.85 * budget <= cost.of(a) <= budget), key=score)
        got = budget_decode(cost, logp, budget)
        assert score(got) == pytest.approx(score(best)) and 0.85 * budget <= cost.of(got) <= budget * 1.002
    # below the fastest arch nothing fits: the fastest arch; an empty window relaxes to <= budget
    assert budget_decode(cost, logp, 0.5 * cost.of(cost.fastest())) == cost.fastest()
    flat = [[0.0] * len(r) for r in cost.per_layer]
    assert cost.of(budget_decode(cost, flat, 1.01 * cost.of(cost.fastest()), floor=1.0)) <= 1.01 * cost.of(
        cost.fastest())


def test_the_exported_argmax_follows_the_budget_where_the_mode_does_not(table, tiny):
    """One trained theta (a strong latency weight: its mode is near the fastest arch), decoded at four
    budgets: the budget decode's latency follows the budget (rank 1.0, each within 15%); the mode is one arch."""
    from scipy.stats import spearmanr

    from hwnas.search.dnas import derive

    cost = latency_cost(SPACE, table)
    res = search_supernet(SPACE, tiny, cost, _fast(), Target(T=0.03, lam=10.0))
    budgets = [0.03, 0.05, 0.08, 0.11]
    decoded = [cost.of(SPACE.encode(derive(SPACE, res, 0, 0, cost, t)[0][1])) for t in budgets]
    modes = {str(derive(SPACE, res, 0, 0)[0][1]) for _ in budgets}
    assert spearmanr(budgets, decoded).statistic == pytest.approx(1.0)
    assert all(abs(d - t) <= 0.15 * t for d, t in zip(decoded, budgets)) and len(modes) == 1


def test_paper_configuration_samples_the_cost_and_alternates_per_epoch(table, tiny, one_thread):
    """The paper's settings: the theta loss's cost is the cost of the forward pass's Gumbel sample (with
    straight-through one-hot weights exactly the sampled arch's table latency), theta steps come as one
    pass over the arch split after the weight pass, and the multiplicative loss trains theta finitely."""
    from hwnas.search.dnas.trainer import step_cost

    cost = latency_cost(SPACE, table)
    theta = [torch.zeros(len(c), requires_grad=True) for c in SPACE.choices]
    weights = gumbel_weights(theta, 5.0, 1, torch.Generator().manual_seed(0), hard=True)
    sampled = step_cost(cost, theta, weights, "sample")
    assert float(sampled.detach()) == pytest.approx(cost.of([int(w.argmax()) for w in weights]), rel=1e-5)
    sampled.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in theta)  # straight-through gradient
    assert float(step_cost(cost, theta, weights, "expected")) != pytest.approx(float(sampled))
    small = Splits("small", tiny.x_train[:64], tiny.y_train[:64], tiny.x_val, tiny.y_val, tiny.x_test,
                   tiny.y_test, tiny.num_classes)
    from dataclasses import replace

    from hwnas.search.dnas import FBNetParams
    from hwnas.search.recipe import load_recipe

    params = FBNetParams(**load_recipe(REPO / "search" / "fbnet-paper-mnist.yaml").method_params)
    paper = replace(params.config(0), epochs=2, batch_size=16, arch_fraction=0.5, data_fraction=1.0, device="cpu")
    assert paper.hard(torch.device("cpu")) is False  # the shipped paper recipe: soft relaxation
    res = search_supernet(SPACE, small, cost, paper, params.target_list()[1])
    last = res.history[-1]
    assert last["theta_steps"] == math.ceil(32 / 16) and math.isfinite(last["theta_loss"])
    assert all(torch.isfinite(torch.tensor(t)).all() and len(set(t)) > 1 for t in res.theta)


def test_fine_tuned_derived_arch_starts_from_the_supernet_weights(table, one_thread):
    """`derive_init: supernet`: the derived arch's network holds its supernet path's weights, so before any
    training it is well above chance where the supernet path is, and a fresh network is at chance; the
    training job gets them as an exact parent of the same arch."""
    from hwnas.search.dnas.searcher import _FromSupernet, path_model
    from hwnas.search.problem import TrainJob
    from hwnas.train.checkpoint import checkpoint_bytes
    from hwnas.train.trainer import accuracy

    d = load_dataset("mnist5k")
    data = Splits("part", d.x_train[:1024], d.y_train[:1024], d.x_val[:500], d.y_val[:500], d.x_test[:64],
                  d.y_test[:64], d.num_classes)
    cost = latency_cost(SPACE, table)
    # a dominant latency weight concentrates theta early, so the chosen path gets most weight steps
    res = search_supernet(SPACE, data, cost, _fast(epochs=5, warmup_epochs=0), Target(T=0.01, lam=100.0))
    arch = SPACE.decode([max(range(len(p)), key=p.__getitem__) for p in res.probs()])
    model = path_model(SPACE, res.weights, arch).eval()
    fresh = SPACE.build(arch).eval()
    tuned, scratch = accuracy(model, data.x_val, data.y_val), accuracy(fresh, data.x_val, data.y_val)
    assert tuned > 0.3 and tuned > scratch + 0.15

    class _Problem:
        def expensive_job(self, arch, parent=None, budget=None):
            return TrainJob(space=arch.space, arch=str(arch), dataset="digits", train={}, parent=parent)

    job = _FromSupernet(_Problem(), {arch.id: checkpoint_bytes(arch, model)}).expensive_job(arch)
    start, teacher = job._start_model(arch)
    assert teacher is None
    for k, v in start.state_dict().items():
        torch.testing.assert_close(v, model.state_dict()[k])
