"""The `fbnet` searcher: a supernet search per sweep target, derived archs retrained as ordinary trials.

For each target (a latency budget T, or the FBNet loss's beta) a supernet is trained (the warm-up,
theta frozen, is shared by all targets) and its final distribution gives the derived archs: the
argmax (for a budget target by default the budget-constrained decode, `decode.py`, else the mode of
theta) and `samples` draws. All derived archs then become trials of the same run through
`run_search` with a fixed list of proposals: each is trained at the recipe's `train` fidelity by the
normal TrainJob path, from scratch or (`derive_init: supernet`) from its supernet path's weights, so
the journal, weights, resume and `hwnas show / report / export` work as for any other run. The
per-epoch choice probabilities of every target go to the run info (`info.dnas`) for the report's
heatmaps.
"""

from __future__ import annotations

import logging
import math
import random
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError
from hwnas.search.dnas.cost import COSTS, CostTable, make_cost
from hwnas.search.dnas.decode import DECODES, budget_decode
from hwnas.search.dnas.trainer import CHECKPOINT, SupernetConfig, SupernetResult, Target, search_supernet
from hwnas.search.searchers import Searcher
from hwnas.search.strategies.base import Strategy
from hwnas.spaces import Arch, SearchSpace
from hwnas.train.checkpoint import checkpoint_bytes

INITS = ("scratch", "supernet")
RETRAIN = {"scratch": "derived archs are trained from scratch at the recipe's train fidelity",
           "supernet": "derived archs are fine-tuned from their supernet path's weights at the recipe's train fidelity"}
_TARGET_KEYS = {f.name for f in fields(Target)}
_CONFIG_KEYS = {f.name for f in fields(SupernetConfig)} - {"seed"}


@dataclass(frozen=True)
class FBNetParams:
    """`method.params` of fbnet. `targets`: numbers (T in the cost's unit for `loss: budget`, beta for
    `loss: fbnet`) or mappings with keys of `Target`; the rest are `SupernetConfig` settings (its defaults)."""

    targets: Sequence[Any] = ()
    loss: str = "budget"
    cost: str = "latency_ms"
    lam: float = 1.0
    alpha: float = 0.2
    beta: float = 0.6
    samples: int = 1  # K draws of each target's final distribution, besides its argmax
    decode: str = "budget"  # the argmax of a budget target: "budget" (budget_decode) or "mode" (FBNet's)
    decode_floor: float = 0.85  # budget decode: the arch's cost in [decode_floor * T, T] when one is there
    derive_init: str = "scratch"  # derived archs trained from "scratch" or fine-tuned from the "supernet"
    table_device: str | None = None  # device spec the latency table must be for (refused otherwise)
    epochs: int = SupernetConfig.epochs
    warmup_epochs: int = SupernetConfig.warmup_epochs
    batch_size: int = SupernetConfig.batch_size
    lr: float = SupernetConfig.lr
    momentum: float = SupernetConfig.momentum
    weight_decay: float = SupernetConfig.weight_decay
    theta_lr: float = SupernetConfig.theta_lr
    theta_weight_decay: float = SupernetConfig.theta_weight_decay
    tau0: float = SupernetConfig.tau0
    tau_decay: float = SupernetConfig.tau_decay
    mode: str = SupernetConfig.mode
    noise: str = SupernetConfig.noise
    arch_fraction: float = SupernetConfig.arch_fraction
    data_fraction: float = SupernetConfig.data_fraction
    cost_from: str = SupernetConfig.cost_from
    schedule: str = SupernetConfig.schedule
    device: str = SupernetConfig.device

    def __post_init__(self) -> None:
        if self.cost not in COSTS:
            raise ConfigError(f"fbnet cost is one of {', '.join(COSTS)}, got {self.cost!r}")
        if isinstance(self.targets, (str, Mapping)) or not self.targets:
            raise ConfigError("fbnet needs `targets:` a list, e.g. [0.05, 0.08, 0.11, 0.14] (latency budgets in ms)")
        if self.samples < 0:
            raise ConfigError("fbnet samples must be >= 0")
        if self.derive_init not in INITS:
            raise ConfigError(f"fbnet derive_init is one of {', '.join(INITS)}, got {self.derive_init!r}")
        if self.decode not in DECODES or not 0 <= self.decode_floor <= 1:
            raise ConfigError(f"fbnet decode is one of {', '.join(DECODES)} and 0 <= decode_floor <= 1")
        self.target_list()
        self.config(0)

    def target_list(self) -> list[Target]:
        """The sweep's targets, defaults filled in from these params."""
        base = {"loss": self.loss, "lam": self.lam, "alpha": self.alpha, "beta": self.beta}
        out = []
        for t in self.targets:
            if isinstance(t, Mapping):
                bad = sorted(set(t) - _TARGET_KEYS)
                if bad:
                    raise ConfigError(f"fbnet target {dict(t)} has unknown key(s) {bad}; valid: {sorted(_TARGET_KEYS)}")
                out.append(Target(**{**base, **dict(t)}))
            elif isinstance(t, (int, float)) and not isinstance(t, bool):
                out.append(Target(**{**base, ("T" if self.loss == "budget" else "beta"): float(t)}))
            else:
                raise ConfigError(f"fbnet target {t!r} is neither a number nor a mapping")
        return out

    def config(self, seed: int) -> SupernetConfig:
        return SupernetConfig(seed=seed, **{k: getattr(self, k) for k in _CONFIG_KEYS})


class DerivedArchs(Strategy):
    """Proposes a fixed list of archs in order, then waits: how derived archs enter `run_search`."""

    name = "fbnet-derived"

    def __init__(self, space: SearchSpace, num_objectives: int, archs: Sequence[Arch]) -> None:
        super().__init__(space, num_objectives, 0)
        self.queue = list(archs)
        self.next = 0

    def ask(self) -> Arch | None:
        while self.next < len(self.queue) and self.queue[self.next].id in self.results:
            self.next += 1  # told from the journal on resume: not proposed again
        if self.next >= len(self.queue):
            return None
        self.next += 1
        return self._propose(self.queue[self.next - 1])


def derive(space: SearchSpace, result: SupernetResult, samples: int, seed: int, cost: CostTable | None = None,
           budget: float | None = None, floor: float = 0.85) -> list[tuple[str, Arch]]:
    """[("argmax", arch), ("sample", arch) x samples] from a final theta (samples seeded).

    The argmax is the per-layer mode of theta, or with `cost` and `budget` the budget-constrained decode
    (`budget_decode`: the most probable arch with cost in [floor * budget, budget])."""
    probs = result.probs()
    if cost is not None and budget is not None:
        logp = [[math.log(v) if v > 0 else -math.inf for v in p] for p in probs]
        out = [("argmax", space.decode(budget_decode(cost, logp, budget, floor)))]
    else:
        out = [("argmax", space.decode([max(range(len(p)), key=p.__getitem__) for p in probs]))]
    rng = random.Random(seed)
    for _ in range(samples):
        out.append(("sample", space.decode([rng.choices(range(len(p)), weights=p)[0] for p in probs])))
    return out


def path_model(space: SearchSpace, weights: Mapping[str, Any], arch: Arch) -> Any:
    """`space.build(arch)` holding the supernet weights (`SupernetResult.weights`) of its chosen path."""
    net = space.supernet()  # type: ignore[attr-defined]
    net.load_state_dict(dict(weights), strict=True)
    model = space.build(arch)
    model.load_state_dict(net.path_state_dict(arch), strict=True)
    return model


class _FromSupernet:
    """The problem, whose training jobs start derived archs from their supernet path's weights: handed
    to the job as an exact parent with no morphism (the same arch), so it is fine-tuned, not retrained."""

    def __init__(self, problem: Any, starts: Mapping[str, bytes]) -> None:
        self._problem, self._starts = problem, dict(starts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._problem, name)

    def expensive_job(self, arch: Arch, parent: Any = None, budget: Any = None) -> Any:
        from hwnas.search.problem import Parent

        start = self._starts.get(arch.id)
        if parent is None and start is not None:
            parent = Parent(start, (), True)
        return self._problem.expensive_job(arch, parent, budget)


class FBNetSearcher(Searcher):
    """FBNet (Wu et al., CVPR 2019): Gumbel-softmax supernet with a latency-table loss, swept over targets."""

    name = "fbnet"
    Params = FBNetParams

    def __init__(self, problem: Any, budget: int, seed: int = 0, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(problem, budget, seed, params)
        self.params: FBNetParams
        self.starts: dict[str, bytes] = {}  # arch id -> supernet-initialised checkpoint (derive_init: supernet)
        if not hasattr(problem.space, "supernet"):
            raise ConfigError(f"space {problem.space.spec} has no supernet; fbnet searches layer-wise spaces (mobile)")

    def _cost(self):
        p, table = self.params, getattr(self.problem, "table", None)  # the table of the problem's latency_ms
        identity = None
        if p.table_device:
            from hwnas.devices import load_device

            identity = load_device(p.table_device).identity()
        return make_cost(p.cost, self.problem.space, table, identity)

    def supernets(self, root: Path, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
        """Run (or resume) the warm-up and every target's supernet search under `root`; per-target summaries."""
        from hwnas.train.datasets import load_dataset

        space, p, seed = self.problem.space, self.params, self.seed
        cost = self._cost()
        data = self.problem.dataset
        data = (load_dataset(data) if isinstance(data, str) else data).fit_to(space.input_shape)
        config = p.config(seed)
        warm = None
        warm_s = warm_cpu = 0.0
        if config.warmup_epochs:
            res = search_supernet(space, data, cost, config, None, root / "warmup", until=config.warmup_epochs, log=log)
            warm, warm_s, warm_cpu = root / "warmup" / CHECKPOINT, res.wall_s, res.cpu_s
        out = []
        for i, target in enumerate(p.target_list()):
            res = search_supernet(space, data, cost, config, target, root / f"target-{i}", start=warm, log=log)
            budget = target.T if p.decode == "budget" and target.loss == "budget" else None
            derived = derive(space, res, p.samples, seed * 1000 + i, cost, budget, p.decode_floor)
            mode = [max(range(len(q)), key=q.__getitem__) for q in res.probs()]
            if p.derive_init == "supernet" and res.weights is not None:
                for _, a in derived:
                    self.starts.setdefault(a.id, checkpoint_bytes(a, path_model(space, res.weights, a)))
            out.append({
                "target": {k: v for k, v in asdict(target).items() if v is not None}, "knob": target.knob,
                "cost": cost.name, "epochs": res.epochs,
                # the warm-up is shared; a target's own search cost includes it (its wall time happened once)
                "search_s": round(res.wall_s, 2), "search_cpu_s": round(res.cpu_s, 2),
                "own_search_s": round(res.wall_s - warm_s, 2), "own_search_cpu_s": round(res.cpu_s - warm_cpu, 2),
                "warnings": res.warnings, "decode": "budget" if budget is not None else "mode",
                "mode": {"arch": str(space.decode(mode)), cost.name: round(cost.of(mode), 6)},
                "derived": [{"kind": k, "arch": str(a), "arch_id": a.id,
                             cost.name: round(cost.of(space.encode(a)), 6)} for k, a in derived],
                "history": [{"epoch": h["epoch"], "tau": round(h["tau"], 5), "probs": h["probs"],
                             "train_ce": round(h["train_ce"], 4),
                             "expected_cost": h["expected_cost"], "argmax_cost": h["argmax_cost"]}
                            for h in res.history],
            })
        return out

    def search(self, run: Any, executor: Any, resume: bool, on_trial: Callable | None = None) -> Any:
        from hwnas.search.runner import run_search

        space = self.problem.space
        start = time.perf_counter()
        log = logging.getLogger(__name__).info  # per-epoch progress (shown with logging at INFO)
        if run.artifact_dir is not None:
            targets = self.supernets(Path(run.artifact_dir) / "dnas", log)
        else:  # in-memory storage: checkpoints in a temporary folder (no resume)
            with tempfile.TemporaryDirectory(prefix="hwnas-fbnet-") as tmp:
                targets = self.supernets(Path(tmp), log)
        supernet_s = time.perf_counter() - start
        archs: dict[str, Arch] = {}
        for t in targets:
            for d in t["derived"]:
                archs.setdefault(d["arch_id"], space.parse(d["arch"]))
        run.storage.update_run(run.id, info={"dnas": {
            "layers": [list(c) for c in space.choices], "targets": targets,
            "supernet_wall_s": round(supernet_s, 2), "derived_unique": len(archs),
            "retrain": RETRAIN[self.params.derive_init],
        }})
        strategy = DerivedArchs(space, len(self.problem.objectives), list(archs.values()))
        budget = min(self.budget, len(archs))
        problem = _FromSupernet(self.problem, self.starts) if self.starts else self.problem
        result = run_search(problem, strategy, run, budget, executor, resume=resume, on_trial=on_trial)
        # the run's wall time includes the supernet searches, not only the retraining of derived archs
        wall = float(run.info.get("search_wall_s", 0.0)) + supernet_s
        run.storage.update_run(run.id, info={"search_wall_s": round(wall, 3)})
        return replace(result, wall_s=result.wall_s + supernet_s)

