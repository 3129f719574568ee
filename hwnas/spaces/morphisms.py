"""Network morphisms of the `mobile` and `nb201` spaces: operators on (arch, trained state dict).

An operator is `<change>@<where>`. Exact ones preserve the parent's function in eval mode; approximate
ones shrink the network and are trained with knowledge distillation from the parent.

mobile (`@lN` = searchable layer N):
  exact:  grow (skip -> k3_e1, residual branch output zero: its last BN has weight = bias = 0),
          e3e6 (new hidden channels with zero outgoing weights), k3k5 (zero-padded depthwise kernel),
          g2g1 (grouped 1x1 convs made dense with zero off-diagonal blocks, channel shuffle absorbed
          by permuting hidden channels);
  approx: prune (block -> skip, where the layer keeps its shape), e6e3 / e3e1 (keep the hidden
          channels with the largest L1 norm of outgoing weights), e1e3 (inserts an identity-initialised
          expand conv, but the ReLU after it drops negative inputs, so it is not exact: a block's
          input is a BN output, which can be negative), k5k3 (centre crop), g1g2 (keep the diagonal blocks).
nb201 (`@eP` = edge P in NB201 string order, the same edge in every cell):
  exact:  conv1 / conv3 (none -> nor_conv_1x1 / nor_conv_3x3, new conv's BN weight = bias = 0),
          k1k3 (zero-padded kernel);
  approx: k3k1 (centre crop), prune (any op -> none).

Every MBConv operator goes through one canonical form: dense expand/project matrices indexed by
hidden channel (no groups, no shuffle), which is exact; the child's block is read back out of it by
assigning hidden channels to the child's group slots (most important first).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.errors import ArchError
from hwnas.spaces.base import Arch, Block, SearchSpace

BN_EPS = 1e-5  # torch's BatchNorm2d default, used by every block of both spaces
_BN = ("weight", "bias", "running_mean", "running_var")


def _parse(op: str, prefix: str) -> tuple[str, int]:
    name, at, where = op.partition("@")
    if not at or not where.startswith(prefix) or not where[len(prefix):].isdigit():
        raise ArchError(f"malformed morphism operator {op!r}; expected <change>@{prefix}<index>, e.g. grow@{prefix}3")
    return name, int(where[len(prefix):])


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little")


def _fresh_state(module_factory, seed: int) -> dict[str, torch.Tensor]:
    """State dict of a freshly initialised module, deterministic in `seed` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {k: v.detach().clone() for k, v in module_factory().state_dict().items()}


def _resize_kernel(w: torch.Tensor, k: int) -> torch.Tensor:
    """Zero-pad (bigger) or centre-crop (smaller) the last two dims of a square kernel to k x k."""
    d = (k - w.shape[-1]) // 2
    if d >= 0:
        return F.pad(w, (d, d, d, d))
    return w[..., -d:d, -d:d].clone()


class _Morphisms:
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
        name, _ = _parse(op, self.prefix)
        if name not in self.exact_ops | self.approx_ops:
            valid = ", ".join(sorted(self.exact_ops | self.approx_ops))
            raise ArchError(f"unknown {self.space.name} morphism {name!r} in {op!r}; valid: {valid}")
        return name

    def _step(self, arch: Arch, op: str) -> tuple[Arch, int]:
        name = self._name(op)
        _, index = _parse(op, self.prefix)
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


# -- mobile -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    """Where an MBConv keeps what: module indices in `body` and, per hidden slot s (the expand conv's
    output channel, i.e. before the shuffle), its expand group `a`, position after the shuffle `pos`
    and project group `b`."""

    c_in: int
    c_out: int
    kernel: int
    expansion: int
    groups: int

    @property
    def mid(self) -> int:
        return self.c_in * self.expansion

    @property
    def has_expand(self) -> bool:
        return self.expansion != 1

    @property
    def idx(self) -> dict[str, int]:
        if not self.has_expand:
            return {"dw": 0, "bn2": 1, "proj": 3, "bn3": 4}
        dw = 4 if self.groups > 1 else 3
        return {"expand": 0, "bn1": 1, "dw": dw, "bn2": dw + 1, "proj": dw + 3, "bn3": dw + 4}

    def slots(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        g, mid = self.groups, self.mid
        m = mid // g
        s = np.arange(mid)
        if self.has_expand:
            a = s // m
            pos = (s % m) * g + s // m if g > 1 else s
        else:  # no expand conv: slot s is input channel s
            a = s // (self.c_in // g)
            pos = s
        return a, pos, pos // m


@dataclass
class _Canon:
    """An MBConv as dense matrices over hidden channels (exact for every layout)."""

    expand: torch.Tensor  # (C, c_in); identity when the block has no expand conv
    bn1: dict[str, torch.Tensor]
    relu_before_dw: bool
    dw: torch.Tensor  # (C, k, k)
    bn2: dict[str, torch.Tensor]
    proj: torch.Tensor  # (c_out, C)
    bn3: dict[str, torch.Tensor]


def _bn(state: Mapping[str, torch.Tensor], i: int, order: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    out = {}
    for k in _BN:
        v = state[f"body.{i}.{k}"]
        out[k] = v if order is None else v[torch.as_tensor(order)]
    return out


def _to_canon(state: Mapping[str, torch.Tensor], lay: _Layout) -> _Canon:
    a, pos, b = lay.slots()
    ix, g, mid = lay.idx, lay.groups, lay.mid
    cg, og, m = lay.c_in // g, lay.c_out // g, mid // g
    if lay.has_expand:
        w = state[f"body.{ix['expand']}.weight"][:, :, 0, 0]
        expand = torch.zeros(mid, lay.c_in, dtype=w.dtype)
        for grp in range(g):
            rows = torch.as_tensor(np.flatnonzero(a == grp))
            expand[rows, grp * cg:(grp + 1) * cg] = w[rows]
        bn1 = _bn(state, ix["bn1"])
    else:
        expand = torch.eye(lay.c_in)
        bn1 = {"weight": torch.full((mid,), math.sqrt(1 + BN_EPS)), "bias": torch.zeros(mid),
               "running_mean": torch.zeros(mid), "running_var": torch.ones(mid)}
    dw = state[f"body.{ix['dw']}.weight"][torch.as_tensor(pos), 0]
    pw = state[f"body.{ix['proj']}.weight"][:, :, 0, 0]
    proj = torch.zeros(lay.c_out, mid, dtype=pw.dtype)
    for grp in range(g):
        sel = np.flatnonzero(b == grp)
        proj[grp * og:(grp + 1) * og, torch.as_tensor(sel)] = pw[grp * og:(grp + 1) * og][:, torch.as_tensor(pos[sel] - grp * m)]
    bn3 = {k: state[f"body.{ix['bn3']}.{k}"] for k in (*_BN, "num_batches_tracked")}
    return _Canon(expand, bn1, lay.has_expand, dw, _bn(state, ix["bn2"], pos), proj, bn3)


def _from_canon(c: _Canon, lay: _Layout, fresh: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The child block's state: canonical channels placed in the child's slots, most important first
    (L1 norm of outgoing weights), each where its expand and project weights fit the groups best.
    Slots left over keep fresh weights with zero outgoing weights (they add nothing)."""
    a, pos, b = lay.slots()
    ix, g, mid = lay.idx, lay.groups, lay.mid
    cg, og, m = lay.c_in // g, lay.c_out // g, mid // g
    E, P = c.expand.abs().numpy(), c.proj.abs().numpy()
    if lay.has_expand:
        in_aff = np.stack([E[:, grp * cg:(grp + 1) * cg].sum(1) for grp in range(g)], 1)[:, a]
    else:
        in_aff = E[:, :mid]
    out_aff = np.stack([P[grp * og:(grp + 1) * og].sum(0) for grp in range(g)], 1)[:, b]
    aff = in_aff * out_aff
    order = np.argsort(-P.sum(0), kind="stable")
    free = np.ones(mid, bool)
    assign: list[tuple[int, int]] = []
    for ch in order:
        if not free.any():
            break
        s = int(np.argmax(np.where(free, aff[ch], -1.0)))
        free[s] = False
        assign.append((int(ch), s))
    st = dict(fresh)
    ch = torch.as_tensor([c for c, _ in assign], dtype=torch.long)
    sl = np.array([s for _, s in assign], dtype=np.int64)
    p = torch.as_tensor(pos[sl])
    proj = st[f"body.{ix['proj']}.weight"].clone()
    for grp in range(g):  # zero outgoing weights of every slot, then fill the assigned ones
        rows = slice(grp * og, (grp + 1) * og)
        proj[rows, torch.as_tensor(pos[b == grp] - grp * m)] = 0.0
        sel = np.flatnonzero(b[sl] == grp)
        proj[rows, torch.as_tensor(pos[sl[sel]] - grp * m), 0, 0] = c.proj[rows][:, ch[sel]]
    dw = st[f"body.{ix['dw']}.weight"].clone()
    dw[p, 0] = _resize_kernel(c.dw[ch], lay.kernel)
    for k in _BN:
        v = st[f"body.{ix['bn2']}.{k}"].clone()
        v[p] = c.bn2[k][ch]
        st[f"body.{ix['bn2']}.{k}"] = v
    if lay.has_expand:
        ew = st[f"body.{ix['expand']}.weight"].clone()
        cols = torch.as_tensor(a[sl][:, None] * cg + np.arange(cg)[None, :])
        ew[torch.as_tensor(sl), :, 0, 0] = torch.gather(c.expand[ch], 1, cols)
        st[f"body.{ix['expand']}.weight"] = ew
        for k in _BN:
            v = st[f"body.{ix['bn1']}.{k}"].clone()
            v[torch.as_tensor(sl)] = c.bn1[k][ch]
            st[f"body.{ix['bn1']}.{k}"] = v
    st[f"body.{ix['proj']}.weight"], st[f"body.{ix['dw']}.weight"] = proj, dw
    for k, v in c.bn3.items():
        st[f"body.{ix['bn3']}.{k}"] = v.clone()
    return st


class MobileMorphisms(_Morphisms):
    """Morphisms of the FBNet-style `mobile` space (see the module docstring)."""

    exact_ops = frozenset({"grow", "e3e6", "k3k5", "g2g1"})
    approx_ops = frozenset({"prune", "e6e3", "e3e1", "e1e3", "k5k3", "g1g2"})
    prefix = "l"
    _CHANGE = {"e3e6": (0, 3, 6), "e6e3": (0, 6, 3), "e3e1": (0, 3, 1), "e1e3": (0, 1, 3),
               "k3k5": (1, 3, 5), "k5k3": (1, 5, 3), "g2g1": (2, 2, 1), "g1g2": (2, 1, 2)}

    def _params(self, gene: str) -> tuple[int, int, int] | None:
        from hwnas.spaces.mobile import _OP_PARAMS

        return _OP_PARAMS.get(gene)

    def _gene_after(self, genes: Sequence[str], name: str, index: int) -> str | None:
        from hwnas.spaces.mobile import SKIP, op_name

        gene, valid = genes[index], self.space.choices[index]
        if name == "grow":
            return "k3_e1" if gene == SKIP else None
        if name == "prune":
            return SKIP if gene != SKIP and SKIP in valid else None
        params = self._params(gene)
        if params is None:
            return None
        k, e, g = params
        field, old, new = self._CHANGE[name]
        kegs = [e, k, g]
        if kegs[field] != old:
            return None
        kegs[field] = new
        child = op_name(kegs[1], kegs[0], kegs[2])
        return child if child in valid else None

    def _layout(self, arch: Arch, index: int) -> tuple[_Layout, Block]:
        c_in, c_out, stride, hw = self.space.layers()[index]  # type: ignore[attr-defined]
        k, e, g = self._params(arch.genes[index])  # type: ignore[misc]
        return _Layout(c_in, c_out, k, e, g), Block("mbconv", c_in, c_out, hw, stride, k, e, g)

    def apply(
        self, arch: Arch, state: Mapping[str, object], operators: Sequence[str]
    ) -> tuple[Arch, dict[str, object]]:
        """(child arch, child state dict); new weights are seeded from the parent arch and operator."""
        self.space.check(arch)
        st: dict[str, torch.Tensor] = dict(state)  # type: ignore[arg-type]
        for step, op in enumerate(operators):
            child, i = self._step(arch, op)
            prefix = self.space.layer_name(i) + "."  # type: ignore[attr-defined]
            old = {k[len(prefix):]: v for k, v in st.items() if k.startswith(prefix)}
            st = {k: v for k, v in st.items() if not k.startswith(prefix)}
            if child.genes[i] != "skip":
                lay, block = self._layout(child, i)
                fresh = _fresh_state(lambda block=block: self.space.build_block(block), _seed(arch.id, step, op))
                if arch.genes[i] == "skip":  # grow: residual branch outputs exactly zero
                    new = fresh
                    n = lay.idx["bn3"]
                    new[f"body.{n}.weight"] = torch.zeros_like(new[f"body.{n}.weight"])
                    new[f"body.{n}.bias"] = torch.zeros_like(new[f"body.{n}.bias"])
                else:
                    parent_lay, _ = self._layout(arch, i)
                    new = _from_canon(_to_canon(old, parent_lay), lay, fresh)
                st.update({prefix + k: v for k, v in new.items()})
            arch = child
        return arch, st


# -- nb201 ------------------------------------------------------------------------------------
class NB201Morphisms(_Morphisms):
    """Morphisms of the NAS-Bench-201 cell (every cell shares the genotype, so all cells change)."""

    exact_ops = frozenset({"conv1", "conv3", "k1k3"})
    approx_ops = frozenset({"k3k1", "prune"})
    prefix = "e"
    _FROM_TO = {"conv1": ("none", "nor_conv_1x1"), "conv3": ("none", "nor_conv_3x3"),
                "k1k3": ("nor_conv_1x1", "nor_conv_3x3"), "k3k1": ("nor_conv_3x3", "nor_conv_1x1")}

    def _gene_after(self, genes: Sequence[str], name: str, index: int) -> str | None:
        if name == "prune":
            return "none" if genes[index] != "none" else None
        old, new = self._FROM_TO[name]
        return new if genes[index] == old else None

    def apply(
        self, arch: Arch, state: Mapping[str, object], operators: Sequence[str]
    ) -> tuple[Arch, dict[str, object]]:
        """(child arch, child state dict). Conv modules the child has and the parent lacks (the grown
        edge, and edges it brings to life) start with BN weight = bias = 0, so they output zero."""
        self.space.check(arch)
        child = self.apply_arch(arch, operators)
        fresh = _fresh_state(lambda: self.space.build(child), _seed(arch.id, *operators))
        out: dict[str, object] = {}
        for key, v in fresh.items():
            old = state.get(key)
            if isinstance(old, torch.Tensor) and old.shape == v.shape:
                out[key] = old
            elif isinstance(old, torch.Tensor) and key.endswith(".1.weight"):  # resized conv kernel
                out[key] = _resize_kernel(old, v.shape[-1])
            elif ".ops." in key and key.endswith((".2.weight", ".2.bias")):  # BN of a new conv edge
                out[key] = torch.zeros_like(v)
            else:
                out[key] = v
        return child, out
