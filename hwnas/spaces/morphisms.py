"""Network morphisms, the part every space shares: operator strings, arch-only application, exactness,
and helpers for weights (seeded fresh modules, kernel resizing).

An operator is `<change>@<where>`. Exact ones preserve the parent's function in eval mode; approximate
ones shrink the network and are trained with knowledge distillation from the parent. Each space's
operators live beside it: `mobile_morphisms.py` (`@lN` = searchable layer N) and `nb201_morphisms.py`
(`@eP` = edge P of the cell).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import ArchError
from hwnas.spaces.base import Arch, SearchSpace


def parse_operator(op: str, prefix: str) -> tuple[str, int]:
    """(change, index) of `<change>@<prefix><index>`."""
    name, at, where = op.partition("@")
    if not at or not where.startswith(prefix) or not where[len(prefix):].isdigit():
        raise ArchError(f"malformed morphism operator {op!r}; expected <change>@{prefix}<index>, e.g. grow@{prefix}3")
    return name, int(where[len(prefix):])


def seed_of(*parts: object) -> int:
    """A 64-bit seed derived from `parts` (the same parts give the same seed in every process)."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little")


def fresh_state(module_factory: Callable[[], nn.Module], seed: int) -> dict[str, torch.Tensor]:
    """State dict of a freshly initialised module, deterministic in `seed` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {k: v.detach().clone() for k, v in module_factory().state_dict().items()}


def resize_kernel(w: torch.Tensor, k: int) -> torch.Tensor:
    """Zero-pad (bigger) or centre-crop (smaller) the last two dims of a square kernel to k x k."""
    d = (k - w.shape[-1]) // 2
    if d >= 0:
        return F.pad(w, (d, d, d, d))
    return w[..., -d:d, -d:d].clone()


class BaseMorphisms:
    """Shared bookkeeping: operator tables, exactness, arch-only application."""

    exact_ops: frozenset[str] = frozenset()
    approx_ops: frozenset[str] = frozenset()
    prefix = ""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def _gene_after(self, genes: Sequence[str], name: str, index: int) -> str | None:
        """The new gene at `index` after `name`, or None when the operator does not apply there."""
        raise NotImplementedError

    def operators(self, arch: Arch) -> list[str]:
        """Every operator applicable to `arch`, exact ones first, in layer order."""
        self.space.check(arch)
        out = []
        for name in sorted(self.exact_ops) + sorted(self.approx_ops):
            for i in range(len(arch.genes)):
                if self._gene_after(arch.genes, name, i) is not None:
                    out.append(f"{name}@{self.prefix}{i}")
        return out

    def is_exact(self, operators: Sequence[str]) -> bool:
        """True when every operator preserves the function."""
        return all(self._name(op) in self.exact_ops for op in operators)

    def _name(self, op: str) -> str:
        name, _ = parse_operator(op, self.prefix)
        if name not in self.exact_ops | self.approx_ops:
            valid = ", ".join(sorted(self.exact_ops | self.approx_ops))
            raise ArchError(f"unknown {self.space.name} morphism {name!r} in {op!r}; valid: {valid}")
        return name

    def _step(self, arch: Arch, op: str) -> tuple[Arch, int]:
        name = self._name(op)
        _, index = parse_operator(op, self.prefix)
        if index >= len(arch.genes):
            raise ArchError(f"operator {op!r}: {arch.space} archs have {len(arch.genes)} positions")
        gene = self._gene_after(arch.genes, name, index)
        if gene is None:
            raise ArchError(f"operator {op!r} does not apply to {arch} (gene {arch.genes[index]!r})")
        genes = list(arch.genes)
        genes[index] = gene
        return self.space.make(genes), index

    def apply_arch(self, arch: Arch, operators: Sequence[str]) -> Arch:
        """The child arch after applying `operators` in order."""
        self.space.check(arch)
        for op in operators:
            arch, _ = self._step(arch, op)
        return arch
