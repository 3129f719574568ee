"""Supernet search of one target: weights (SGD) on the train split, theta (Adam) on an arch split.

Epoch e: tau = tau0 * exp(-decay * e); every weight step samples relaxed choices (Gumbel-softmax)
and minimises cross-entropy on a train batch; after `warmup_epochs` (theta frozen, uniform paths),
theta steps on arch-split batches are interleaved so that each epoch passes once over both splits
(`schedule: alternate`: the paper's whole weight pass, then the whole theta pass). The theta loss is
`Target.loss(CE, cost)`, the cost being the exact expected cost under softmax(theta) or (`cost_from:
sample`, the paper) the cost of the forward pass's Gumbel sample. An epoch checkpoint (model with
theta, both optimizers, RNG states, history) is written after every epoch, so a killed search
resumes from its last finished epoch.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hwnas.errors import ConfigError, HwnasError
from hwnas.search.dnas.cost import CostTable
from hwnas.search.dnas.relax import (
    TAU0,
    TAU_DECAY,
    US_PER_MS,
    budget_loss,
    fbnet_loss,
    gumbel_weights,
    tau_at,
)
from hwnas.search.dnas.state import load_state, read_meta, save_state
from hwnas.spaces import SearchSpace
from hwnas.train import Splits, TrainingDivergedError, resolve_device

CHECKPOINT = "checkpoint.safetensors"
MODES = ("auto", "hard", "soft")
NOISE = ("sample", "batch")
LOSSES = ("budget", "fbnet")
COST_FROM = ("expected", "sample")
SCHEDULES = ("interleaved", "alternate")
UNITS = {"latency_ms": US_PER_MS, "flops": 1.0, "params": 1.0}  # fbnet loss: log1p(cost * unit)


class DnasDivergedError(TrainingDivergedError):
    """A supernet search produced NaN/inf; its last good epoch checkpoint is kept."""


@dataclass(frozen=True)
class SupernetConfig:
    """Supernet training settings shared by every target of a sweep."""

    epochs: int = 6
    warmup_epochs: int = 2
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    theta_lr: float = 1e-2
    theta_weight_decay: float = 5e-4
    tau0: float = TAU0
    tau_decay: float = TAU_DECAY
    mode: str = "auto"  # hard straight-through (one path per layer) on CPU, soft on CUDA
    noise: str = "batch"  # hard mode: one Gumbel draw per batch ("sample": per sample, slower)
    arch_fraction: float = 0.2
    data_fraction: float = 1.0
    # the theta loss's cost: "expected" under softmax(theta), or "sample": of the same Gumbel sample as the
    # forward pass (the paper; straight-through in hard mode)
    cost_from: str = "expected"
    # "interleaved": theta steps spread over the weight steps of an epoch; "alternate": the paper's epoch of
    # weight steps over the weight split, then theta steps over the arch split
    schedule: str = "interleaved"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.epochs < 1 or not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError("fbnet needs epochs >= 1 and 0 <= warmup_epochs < epochs")
        if self.mode not in MODES or self.noise not in NOISE:
            raise ConfigError(f"fbnet mode is one of {', '.join(MODES)} and noise one of {', '.join(NOISE)}")
        if self.cost_from not in COST_FROM or self.schedule not in SCHEDULES:
            raise ConfigError(f"fbnet cost_from is one of {', '.join(COST_FROM)} and schedule one of "
                              f"{', '.join(SCHEDULES)}")
        if not 0 < self.arch_fraction < 1 or not 0 < self.data_fraction <= 1:
            raise ConfigError("fbnet needs 0 < arch_fraction < 1 and 0 < data_fraction <= 1")
        if min(self.lr, self.theta_lr, self.tau0, self.batch_size) <= 0 or self.tau_decay < 0:
            raise ConfigError("fbnet needs lr, theta_lr, tau0, batch_size > 0 and tau_decay >= 0")

    def hard(self, device: torch.device) -> bool:
        return self.mode == "hard" or (self.mode == "auto" and device.type == "cpu")


@dataclass(frozen=True)
class Target:
    """One point of the sweep: `budget` (CE + lam * max(0, cost/T - 1), T in the cost's unit) or
    `fbnet` (CE * alpha * log1p(cost in us/flops/params)^beta)."""

    loss: str = "budget"
    T: float | None = None
    lam: float = 1.0
    alpha: float = 0.2
    beta: float = 0.6

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"fbnet target loss is one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.loss == "budget" and (self.T is None or self.T <= 0):
            raise ConfigError("an fbnet budget target needs T > 0 (in the cost's unit, e.g. ms)")
        if self.lam < 0 or self.alpha <= 0 or self.beta <= 0:
            raise ConfigError("fbnet targets need lam >= 0, alpha > 0 and beta > 0")

    def loss_of(self, ce: torch.Tensor, cost: torch.Tensor, cost_name: str) -> torch.Tensor:
        if self.loss == "budget":
            return budget_loss(ce, cost, float(self.T), self.lam)  # type: ignore[arg-type]
        return fbnet_loss(ce, cost, UNITS[cost_name], self.alpha, self.beta)

    @property
    def knob(self) -> float:
        """The value a sweep varies (T for budgets, beta for the FBNet loss)."""
        return float(self.T) if self.loss == "budget" else float(self.beta)


@dataclass
class SupernetResult:
    """Final theta (per layer logits), per-epoch history and cost, and the supernet's final weights."""

    theta: list[list[float]]
    history: list[dict[str, Any]]
    epochs: int
    wall_s: float
    cpu_s: float
    warnings: list[str] = field(default_factory=list)
    weights: dict[str, torch.Tensor] | None = None  # the supernet's state dict (CPU), for `path_model`

    def probs(self) -> list[list[float]]:
        return [torch.softmax(torch.tensor(t), 0).tolist() for t in self.theta]


def cost_sha(cost: CostTable) -> str:
    """Fingerprint of a cost table (another latency table -> another fingerprint)."""
    return hashlib.sha256(json.dumps(asdict(cost), sort_keys=True).encode()).hexdigest()[:16]


def _carve(data: Splits, config: SupernetConfig) -> tuple[torch.Tensor, ...]:
    """(x_w, y_w, x_a, y_a): the used share of the train split, cut into weight and arch parts by seed."""
    n = max(2, int(len(data.x_train) * config.data_fraction))
    order = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(config.seed))[:n]
    n_arch = max(1, int(round(n * config.arch_fraction)))
    a, w = order[:n_arch], order[n_arch:]
    return data.x_train[w], data.y_train[w], data.x_train[a], data.y_train[a]


def search_supernet(
    space: SearchSpace, data: Splits, cost: CostTable, config: SupernetConfig, target: Target | None,
    directory: Path | None = None, start: Path | None = None, until: int | None = None,
    log: Callable[[str], None] | None = None,
) -> SupernetResult:
    """Train a supernet for `target` up to epoch `until` (default `config.epochs`) and return theta.

    `directory` holds the epoch checkpoint (resumed when present and made by the same settings);
    `start` is a checkpoint to begin from (the shared warm-up). `target=None` trains weights only
    (the warm-up, theta frozen).
    """
    until = config.epochs if until is None else until
    dev = resolve_device(config.device)
    torch.manual_seed(config.seed)
    net = space.supernet().to(dev)  # type: ignore[attr-defined]
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=config.lr, momentum=config.momentum,
                            nesterov=config.momentum > 0, weight_decay=config.weight_decay)
    t_opt = torch.optim.Adam(net.arch_parameters(), lr=config.theta_lr, weight_decay=config.theta_weight_decay)
    gen = torch.Generator().manual_seed(config.seed + 1)
    opts, gens = {"w": w_opt, "theta": t_opt}, {"gen": gen}
    key = {"config": asdict(config), "cost": cost_sha(cost), "space": space.spec}
    tkey = None if target is None else asdict(target)
    path = None if directory is None else Path(directory) / CHECKPOINT
    epoch, history = _resume(path, start, net, opts, gens, key, tkey, config)
    run = _Search(net, w_opt, t_opt, gen, config, cost, target, config.hard(dev), path, dev,
                  *(t.to(dev) for t in _carve(data, config)))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    prior_wall = sum(h.get("wall_s", 0.0) for h in history)
    prior_cpu = sum(h.get("cpu_s", 0.0) for h in history)
    warnings = [w for h in history for w in h.get("warnings", [])]
    while epoch < until:
        rec = run.epoch(epoch)
        warnings += rec["warnings"]
        history.append(rec)
        epoch += 1
        if log:
            log(f"epoch {epoch}/{until} tau {rec['tau']:.3f} ce {rec['train_ce']:.3f} E[{cost.name}] "
                f"{rec['expected_cost']:.4g} argmax {rec['argmax_cost']:.4g} ({rec['wall_s']:.1f} s)")
        if path is not None:
            save_state(path, net, opts, gens, {**key, "target": tkey, "epoch": epoch, "history": history})
    return SupernetResult(
        theta=[t.detach().cpu().tolist() for t in net.theta], history=history, epochs=epoch,
        wall_s=prior_wall + time.perf_counter() - wall0, cpu_s=prior_cpu + time.process_time() - cpu0,
        warnings=warnings, weights={k: v.detach().cpu() for k, v in net.state_dict().items()},
    )


def _resume(path: Path | None, start: Path | None, net: Any, opts: dict[str, Any], gens: dict[str, Any],
            key: dict[str, Any], tkey: dict[str, Any] | None, config: SupernetConfig) -> tuple[int, list[dict]]:
    """(epoch, history) after loading the epoch checkpoint at `path` when there is one, else the shared
    warm-up `start`, else (0, []); a checkpoint made against another cost table or settings is refused."""
    source = path if path is not None and path.is_file() else start
    if source is None:
        return 0, []
    meta = read_meta(source)
    if meta.get("cost") != key["cost"]:
        raise HwnasError(
            f"supernet checkpoint {source} was trained against another cost table (another latency "
            "table or device?); resume with the table it was started with or start a new run"
        )
    found, want = {k: meta.get(k) for k in key}, dict(key)
    if source != path:  # the shared warm-up: theta's settings do not matter there (theta was frozen)
        found["config"], want["config"] = _warm_key(found["config"] or {}), _warm_key(key["config"])
    if found != want or (source == path and meta.get("target") != tkey):
        raise ConfigError(
            f"supernet checkpoint {source} was made with other settings; delete {source.parent} "
            "or start a new run"
        )
    meta = load_state(source, net, opts, gens)
    for g in opts["theta"].param_groups:  # theta settings may differ from the warm-up's (theta was frozen)
        g["lr"], g["weight_decay"] = config.theta_lr, config.theta_weight_decay
    return int(meta["epoch"]), list(meta["history"])


@dataclass
class _Search:
    """One supernet search under way: the supernet, its two optimizers, the noise generator and the
    weight (x_w, y_w) and arch (x_a, y_a) parts of the train split; `epoch` runs one epoch."""

    net: Any
    w_opt: torch.optim.Optimizer
    t_opt: torch.optim.Optimizer
    gen: torch.Generator
    config: SupernetConfig
    cost: CostTable
    target: Target | None
    hard: bool
    path: Path | None
    dev: torch.device
    x_w: torch.Tensor
    y_w: torch.Tensor
    x_a: torch.Tensor
    y_a: torch.Tensor

    def rows(self, batch: int) -> int:
        """Gumbel draws per step: one per sample, or one per batch in hard mode with batch noise."""
        return batch if (self.config.noise == "sample" or not self.hard) else 1

    def epoch(self, epoch: int) -> dict[str, Any]:
        """Weight steps over the weight part, theta steps interleaved so that the epoch passes once over
        the arch part (after the warm-up); the epoch's history record."""
        config, e_wall, e_cpu = self.config, time.perf_counter(), time.process_time()
        tau = tau_at(epoch, config.tau0, config.tau_decay)
        lr = 0.5 * config.lr * (1 + math.cos(math.pi * epoch / config.epochs))  # cosine, per epoch
        for g in self.w_opt.param_groups:
            g["lr"] = lr
        search = self.target is not None and epoch >= config.warmup_epochs
        self.net.train()
        nw, na, bs = len(self.x_w), len(self.x_a), config.batch_size
        steps_w, steps_a = math.ceil(nw / bs), math.ceil(na / bs)
        ow = torch.randperm(nw, generator=self.gen).to(self.dev)
        oa = torch.randperm(na, generator=self.gen).to(self.dev)
        ce_sum, tl_sum, n_theta = 0.0, 0.0, 0
        alternate = config.schedule == "alternate"
        for s in range(steps_w):
            ce_sum += self.weight_step(ow[s * bs:(s + 1) * bs], tau, epoch)
            if search and not alternate and (s + 1) * steps_a // steps_w > s * steps_a // steps_w:
                a = s * steps_a // steps_w
                tl_sum += self.theta_step(oa[a * bs:(a + 1) * bs], tau, epoch)
                n_theta += 1
        for a in range(steps_a if search and alternate else 0):
            tl_sum += self.theta_step(oa[a * bs:(a + 1) * bs], tau, epoch)
            n_theta += 1
        rec = {"epoch": epoch, "tau": tau, "lr": lr, "searching": search, "train_ce": ce_sum / steps_w,
               "theta_loss": tl_sum / n_theta if n_theta else None, "theta_steps": n_theta}
        return self.summary(rec, e_wall, e_cpu)

    def weight_step(self, idx: torch.Tensor, tau: float, epoch: int) -> float:
        """One SGD step of the weights on sampled relaxed choices (theta detached); its cross-entropy."""
        weights = gumbel_weights(list(self.net.theta), tau, self.rows(len(idx)), self.gen, self.hard)
        ce = F.cross_entropy(self.net(self.x_w[idx], [w.detach() for w in weights], self.hard), self.y_w[idx])
        _check(ce, "weight", epoch, tau, self.path)
        self.w_opt.zero_grad(set_to_none=True)
        ce.backward()
        self.w_opt.step()
        return float(ce.detach())

    def theta_step(self, jdx: torch.Tensor, tau: float, epoch: int) -> float:
        """One Adam step of theta on the target's loss (CE on an arch batch, cost per `cost_from`); its loss."""
        theta = list(self.net.theta)
        weights = gumbel_weights(theta, tau, self.rows(len(jdx)), self.gen, self.hard)
        ce_a = F.cross_entropy(self.net(self.x_a[jdx], weights, self.hard), self.y_a[jdx])
        lat = step_cost(self.cost, theta, weights, self.config.cost_from)
        loss = self.target.loss_of(ce_a, lat, self.cost.name)  # type: ignore[union-attr]
        _check(loss, "architecture", epoch, tau, self.path)
        grads = torch.autograd.grad(loss, theta)
        for t, g in zip(theta, grads):
            t.grad = g
        self.t_opt.step()
        self.t_opt.zero_grad(set_to_none=True)
        _check(torch.cat([t.detach().flatten() for t in theta]).sum(), "theta", epoch, tau, self.path)
        return float(loss.detach())

    def summary(self, rec: dict[str, Any], e_wall: float, e_cpu: float) -> dict[str, Any]:
        """The epoch's record `rec` with theta's probabilities, expected and argmax cost, times, warnings."""
        probs = [torch.softmax(t.detach().cpu(), 0) for t in self.net.theta]
        idx = [int(p.argmax()) for p in probs]
        return {
            **rec, "expected_cost": float(self.cost.expected(probs)), "argmax_cost": self.cost.of(idx),
            "probs": [[round(float(v), 5) for v in p] for p in probs],
            "wall_s": round(time.perf_counter() - e_wall, 3), "cpu_s": round(time.process_time() - e_cpu, 3),
            "warnings": _warnings(self.net, probs, rec["epoch"], self.config, rec["searching"]),
        }


def step_cost(cost: CostTable, theta: list[torch.Tensor], weights: list[torch.Tensor], cost_from: str) -> torch.Tensor:
    """The cost term of a theta step: E_softmax(theta)[cost] ("expected"), or the cost of the Gumbel
    weights of the forward pass ("sample"; averaged over their rows: with one-hot straight-through weights
    the sampled arch's exact table cost, gradient through the relaxed weights)."""
    if cost_from == "sample":
        return cost.expected([w.mean(0) for w in weights])
    return cost.expected([torch.softmax(t, 0) for t in theta])


def _warm_key(config: dict[str, Any]) -> dict[str, Any]:
    """The settings a shared warm-up depends on (theta is frozen there, so not theta's)."""
    theta_only = ("theta_lr", "theta_weight_decay", "cost_from", "schedule")
    return {k: v for k, v in config.items() if k not in theta_only}


def _check(value: torch.Tensor, what: str, epoch: int, tau: float, path: Path | None) -> None:
    if not torch.isfinite(value).all():
        kept = f"the last good epoch checkpoint is kept at {path}" if path else "no checkpoint was kept"
        raise DnasDivergedError(
            f"supernet search diverged: the {what} loss/values became {float(value)} in epoch {epoch} "
            f"(tau {tau:.3g}); {kept}; lower theta_lr or the cost weight (lam), or keep tau larger"
        )


def _warnings(net: Any, probs: list[torch.Tensor], epoch: int, config: SupernetConfig, search: bool) -> list[str]:
    """Failure modes seen in other ports: all-skip collapse and theta hardening long before the end."""
    out = []
    skippable = [i for i, s in enumerate(net.skip_index) if s is not None]
    if search and skippable and all(int(probs[i].argmax()) == net.skip_index[i] for i in skippable):
        out.append(f"epoch {epoch}: collapsed to skip in every skippable layer (check the cost weight)")
    early = [i for i, p in enumerate(probs) if float(p.max()) > 0.99]
    if search and early and epoch < config.epochs - 1:
        out.append(f"epoch {epoch}: theta of layer(s) {early} hardened to one-hot before the last epoch "
                   "(lower theta_lr or raise tau0)")
    return out
