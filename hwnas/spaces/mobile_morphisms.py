"""Network morphisms of the `mobile` space: operators on (arch, trained state dict) at one layer (`@lN`).

Operators follow from the op vocabulary (`mobile_ops`): between neighbouring values of each field, e.g.
`e3e6` / `e6e3`, `k3k5` / `k5k3`, `g1g2` / `g2g1`, plus `grow` and `prune`.
  exact:  grow (skip -> the cheapest block, residual branch output zero: its last BN has weight = bias = 0),
          a larger expansion from one above 1 (new hidden channels with zero outgoing weights), a larger
          kernel (zero-padded depthwise kernel), fewer groups (grouped 1x1 convs made dense with zero
          off-diagonal blocks, channel shuffle absorbed by permuting hidden channels);
  approx: prune (block -> skip, where the layer keeps its shape), a smaller expansion (keep the hidden
          channels with the largest L1 norm of outgoing weights), expansion 1 -> more (inserts an
          identity-initialised expand conv, but the ReLU after it drops negative inputs, so it is not
          exact: a block's input is a BN output, which can be negative), a smaller kernel (centre crop),
          more groups (keep the diagonal blocks).

Every operator goes through one canonical form: dense expand/project matrices indexed by hidden channel
(no groups, no shuffle), which is exact; the child's block is read back out of it by assigning hidden
channels to the child's group slots (most important first). Weights are addressed by the block's part
names (`expand`, `dw`, `project`, each `.conv` and `.bn`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from hwnas.spaces.base import Arch
from hwnas.spaces.mobile_ops import EXPANSIONS, GROUPS, GROW_OP, KERNELS, OPS, SKIP, Op
from hwnas.spaces.morphisms import BaseMorphisms, fresh_state, resize_kernel, seed_of

BN_EPS = 1e-5  # torch's BatchNorm2d default, used by every block
_BN = ("weight", "bias", "running_mean", "running_var")
_FIELDS = (("expansion", "e", EXPANSIONS), ("kernel", "k", KERNELS), ("groups", "g", GROUPS))


def _changes() -> dict[str, tuple[str, int, int]]:
    """`<letter><old><letter><new>` -> (Op field, old, new), between neighbouring values of each field."""
    out = {}
    for field, letter, values in _FIELDS:
        for a, b in zip(values, values[1:]):
            out[f"{letter}{a}{letter}{b}"] = (field, a, b)
            out[f"{letter}{b}{letter}{a}"] = (field, b, a)
    return out


def _exact(field: str, old: int, new: int) -> bool:
    """Whether changing `field` from `old` to `new` can preserve the function (see the module docstring)."""
    if field == "kernel":
        return new > old
    if field == "expansion":
        return old > 1 and new > old
    return new < old  # groups


@dataclass(frozen=True)
class _Layout:
    """Per hidden slot s of an MBConv (the expand conv's output channel, i.e. before the shuffle): its
    expand group `a`, position after the shuffle `pos` and project group `b`."""

    c_in: int
    c_out: int
    op: Op

    @property
    def mid(self) -> int:
        return self.c_in * self.op.expansion

    @property
    def has_expand(self) -> bool:
        return self.op.expansion != 1

    def slots(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        g, mid = self.op.groups, self.mid
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


def _bn(state: Mapping[str, torch.Tensor], part: str, order: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    out = {}
    for k in _BN:
        v = state[f"{part}.bn.{k}"]
        out[k] = v if order is None else v[torch.as_tensor(order)]
    return out


def _identity_bn(n: int) -> dict[str, torch.Tensor]:
    """BN statistics that pass `n` channels through unchanged in eval mode."""
    return {"weight": torch.full((n,), math.sqrt(1 + BN_EPS)), "bias": torch.zeros(n),
            "running_mean": torch.zeros(n), "running_var": torch.ones(n)}


def _to_canon(state: Mapping[str, torch.Tensor], lay: _Layout) -> _Canon:
    a, pos, b = lay.slots()
    g, mid = lay.op.groups, lay.mid
    cg, og, m = lay.c_in // g, lay.c_out // g, mid // g
    if lay.has_expand:
        w = state["expand.conv.weight"][:, :, 0, 0]
        expand = torch.zeros(mid, lay.c_in, dtype=w.dtype)
        for grp in range(g):
            rows = torch.as_tensor(np.flatnonzero(a == grp))
            expand[rows, grp * cg:(grp + 1) * cg] = w[rows]
        bn1 = _bn(state, "expand")
    else:
        expand, bn1 = torch.eye(lay.c_in), _identity_bn(mid)
    dw = state["dw.conv.weight"][torch.as_tensor(pos), 0]
    pw = state["project.conv.weight"][:, :, 0, 0]
    proj = torch.zeros(lay.c_out, mid, dtype=pw.dtype)
    for grp in range(g):
        sel = np.flatnonzero(b == grp)
        proj[grp * og:(grp + 1) * og, torch.as_tensor(sel)] = pw[grp * og:(grp + 1) * og][:, torch.as_tensor(pos[sel] - grp * m)]
    bn3 = {k: state[f"project.bn.{k}"] for k in (*_BN, "num_batches_tracked")}
    return _Canon(expand, bn1, lay.has_expand, dw, _bn(state, "dw", pos), proj, bn3)


def _assign(c: _Canon, lay: _Layout) -> list[tuple[int, int]]:
    """(canonical channel, child slot) pairs: channels by importance (L1 norm of outgoing weights), each
    to the free slot whose expand and project groups hold most of its weights."""
    a, _, b = lay.slots()
    g, mid = lay.op.groups, lay.mid
    cg, og = lay.c_in // g, lay.c_out // g
    E, P = c.expand.abs().numpy(), c.proj.abs().numpy()
    if lay.has_expand:
        in_aff = np.stack([E[:, grp * cg:(grp + 1) * cg].sum(1) for grp in range(g)], 1)[:, a]
    else:
        in_aff = E[:, :mid]
    out_aff = np.stack([P[grp * og:(grp + 1) * og].sum(0) for grp in range(g)], 1)[:, b]
    aff = in_aff * out_aff
    free = np.ones(mid, bool)
    assign: list[tuple[int, int]] = []
    for ch in np.argsort(-P.sum(0), kind="stable"):
        if not free.any():
            break
        s = int(np.argmax(np.where(free, aff[ch], -1.0)))
        free[s] = False
        assign.append((int(ch), s))
    return assign


def _from_canon(c: _Canon, lay: _Layout, fresh: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The child block's state: canonical channels placed in the child's slots (see `_assign`).
    Slots left over keep fresh weights with zero outgoing weights (they add nothing)."""
    a, pos, b = lay.slots()
    g, m, og, cg = lay.op.groups, lay.mid // lay.op.groups, lay.c_out // lay.op.groups, lay.c_in // lay.op.groups
    assign = _assign(c, lay)
    st = dict(fresh)
    ch = torch.as_tensor([channel for channel, _ in assign], dtype=torch.long)
    sl = np.array([s for _, s in assign], dtype=np.int64)
    p = torch.as_tensor(pos[sl])
    proj = st["project.conv.weight"].clone()
    for grp in range(g):  # zero outgoing weights of every slot, then fill the assigned ones
        rows = slice(grp * og, (grp + 1) * og)
        proj[rows, torch.as_tensor(pos[b == grp] - grp * m)] = 0.0
        sel = np.flatnonzero(b[sl] == grp)
        proj[rows, torch.as_tensor(pos[sl[sel]] - grp * m), 0, 0] = c.proj[rows][:, ch[sel]]
    dw = st["dw.conv.weight"].clone()
    dw[p, 0] = resize_kernel(c.dw[ch], lay.op.kernel)
    _place_bn(st, "dw", p, {k: v[ch] for k, v in c.bn2.items()})
    if lay.has_expand:
        ew = st["expand.conv.weight"].clone()
        cols = torch.as_tensor(a[sl][:, None] * cg + np.arange(cg)[None, :])
        ew[torch.as_tensor(sl), :, 0, 0] = torch.gather(c.expand[ch], 1, cols)
        st["expand.conv.weight"] = ew
        _place_bn(st, "expand", torch.as_tensor(sl), {k: v[ch] for k, v in c.bn1.items()})
    st["project.conv.weight"], st["dw.conv.weight"] = proj, dw
    for k, v in c.bn3.items():
        st[f"project.bn.{k}"] = v.clone()
    return st


def _place_bn(st: dict[str, torch.Tensor], part: str, rows: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
    for k in _BN:
        v = st[f"{part}.bn.{k}"].clone()
        v[rows] = values[k]
        st[f"{part}.bn.{k}"] = v


class MobileMorphisms(BaseMorphisms):
    """Morphisms of the FBNet-style `mobile` space (see the module docstring)."""

    _CHANGE = _changes()
    exact_ops = frozenset({"grow"} | {n for n, change in _CHANGE.items() if _exact(*change)})
    approx_ops = frozenset({"prune"} | set(_CHANGE) - exact_ops)
    prefix = "l"

    def _gene_after(self, genes: Sequence[str], name: str, index: int) -> str | None:
        gene, valid = genes[index], self.space.choices[index]
        if name == "grow":
            return GROW_OP if gene == SKIP else None
        if name == "prune":
            return SKIP if gene != SKIP and SKIP in valid else None
        op = OPS.get(gene)
        field, old, new = self._CHANGE[name]
        if op is None or getattr(op, field) != old:
            return None
        child = replace(op, **{field: new}).name
        return child if child in valid else None

    def _layout(self, arch: Arch, index: int) -> _Layout:
        c_in, c_out, _, _ = self.space.layers()[index]  # type: ignore[attr-defined]
        return _Layout(c_in, c_out, OPS[arch.genes[index]])

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
            block = self.space.layer_block(i, child.genes[i])  # type: ignore[attr-defined]
            if block is not None:
                fresh = fresh_state(lambda block=block: self.space.build_block(block), seed_of(arch.id, step, op))
                if arch.genes[i] == SKIP:  # grow: the residual branch outputs exactly zero
                    new = {**fresh, "project.bn.weight": torch.zeros_like(fresh["project.bn.weight"]),
                           "project.bn.bias": torch.zeros_like(fresh["project.bn.bias"])}
                else:
                    new = _from_canon(_to_canon(old, self._layout(arch, i)), self._layout(child, i), fresh)
                st.update({prefix + k: v for k, v in new.items()})
            arch = child
        return arch, st
