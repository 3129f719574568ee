"""Supernet ability of layer-wise spaces (`mobile`): one mixed op per layer over that layer's candidate blocks.

The candidate modules are built by the space's own `build_block` from its `layer_block(index, gene)`, so
the network of a derived arch is exactly one path of the supernet: `path_state_dict(arch)` loads
strictly into `space.build(arch)` and gives the same outputs. Module names follow `build`: `stem`,
`l0`..`l{n-1}` (a mixed op whose candidate i is `l{n}.ops.{i}`), `head`; a skip candidate is
`nn.Identity`. The architecture logits `theta` (one vector per layer) live here too; how they are
relaxed (Gumbel-softmax, straight-through) is the searcher's business (`hwnas.search.dnas`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hwnas.errors import ArchError
from hwnas.spaces.base import Arch, Block, SearchSpace


def layer_candidates(space: SearchSpace) -> tuple[Block, list[list[Block | None]], Block]:
    """(stem block, per layer the block of each candidate gene (None for a skip), head block).

    Read from the space's own `stem_block`, `layer_block(index, gene)` and `head_block`, the blocks
    `build` uses, so a candidate's module and latency-table key are the ones of a built network.
    """
    if not all(hasattr(space, m) for m in ("stem_block", "layer_block", "head_block", "layer_name")):
        raise ArchError(f"space {space.spec} is not layer-wise (stem, one block per layer, head); no supernet")
    layers: list[list[Block | None]] = []
    for i, valid in enumerate(space.choices):
        row = [space.layer_block(i, gene) for gene in valid]  # type: ignore[attr-defined]
        if all(b is None for b in row):
            raise ArchError(f"layer {i} of {space.spec} has no block choice; a supernet needs one per layer")
        layers.append(row)
    return space.stem_block(), layers, space.head_block()  # type: ignore[attr-defined]


class MixedOp(nn.Module):
    """The candidates of one layer; runs a weighted sum (soft) or the chosen path per sample (hard)."""

    def __init__(self, choices: Sequence[str], ops: Sequence[nn.Module]) -> None:
        super().__init__()
        self.choices = tuple(choices)
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, hard: bool = False) -> torch.Tensor:
        """`weights` is (n,) for the whole batch or (B, n) per sample.

        Soft: sum_i w_i * op_i(x) over all candidates. Hard: `weights` are one-hot in value
        (straight-through, gradients in the relaxed weights); only the chosen op runs on each
        sample, scaled by its weight (value 1) so theta gets the straight-through gradient.
        """
        if weights.dim() == 1:
            weights = weights.expand(x.shape[0], -1)
        if not hard:
            return sum(w.view(-1, 1, 1, 1) * op(x) for w, op in zip(weights.unbind(1), self.ops))
        index = weights.detach().argmax(1)
        chosen = torch.unique(index)
        if len(chosen) == 1:  # one path for the whole batch
            i = int(chosen)
            return self.ops[i](x) * weights[:, i].view(-1, 1, 1, 1)
        parts = []
        for i in chosen.tolist():
            rows = (index == i).nonzero().squeeze(1)
            parts.append((rows, self.ops[i](x[rows]) * weights[rows, i].view(-1, 1, 1, 1)))
        out = x.new_zeros((x.shape[0], *parts[0][1].shape[1:]))
        for rows, y in parts:
            out = out.index_copy(0, rows, y)
        return out


class Supernet(nn.Module):
    """`stem`, a `MixedOp` per searchable layer (`l0`..), `head`, and architecture logits `theta`."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.choices = space.choices
        stem, layers, head = layer_candidates(space)
        self.stem = space.build_block(stem)
        self.names: list[str] = []
        # per layer, the index of its pass-through (skip) candidate, or None
        self.skip_index: list[int | None] = [next((j for j, b in enumerate(row) if b is None), None) for row in layers]
        for i, (valid, blocks) in enumerate(zip(self.choices, layers)):
            ops = [nn.Identity() if b is None else space.build_block(b) for b in blocks]
            name = space.layer_name(i)  # type: ignore[attr-defined]
            self.add_module(name, MixedOp(valid, ops))
            self.names.append(name)
        self.head = space.build_block(head)
        self.theta = nn.ParameterList(nn.Parameter(torch.zeros(len(v))) for v in self.choices)

    def mixed_ops(self) -> list[MixedOp]:
        return [getattr(self, n) for n in self.names]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter but theta (what the weight optimizer trains)."""
        ids = {id(p) for p in self.theta}
        return [p for p in self.parameters() if id(p) not in ids]

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.theta)

    def forward(self, x: torch.Tensor, weights: Sequence[torch.Tensor] | None = None,
                hard: bool = False) -> torch.Tensor:
        """Weighted by `weights` (one tensor per layer, see `MixedOp`); default softmax(theta), soft."""
        if weights is None:
            weights = [torch.softmax(t, 0) for t in self.theta]
        x = self.stem(x)
        for op, w in zip(self.mixed_ops(), weights):
            x = op(x, w, hard)
        return self.head(x)

    def path_weights(self, arch: Arch) -> list[torch.Tensor]:
        """One-hot weights of `arch`'s choices (use with `hard=True` to run exactly its path)."""
        idx = self.space.encode(arch)
        return [torch.nn.functional.one_hot(torch.tensor(i), len(v)).float() for i, v in zip(idx, self.choices)]

    def derive(self, indices: Sequence[int]) -> Arch:
        """The arch choosing candidate `indices[l]` in every layer."""
        return self.space.decode(indices)

    def path_state_dict(self, arch: Arch) -> dict[str, torch.Tensor]:
        """The state dict of `space.build(arch)` taken from this supernet's shared weights."""
        idx = self.space.encode(arch)
        state = self.state_dict()
        out: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if key.startswith("theta."):
                continue
            head, _, rest = key.partition(".")
            if head in self.names:
                op, _, rest = rest.partition(".")  # "ops"
                i, _, rest = rest.partition(".")
                if int(i) != idx[self.names.index(head)]:
                    continue
                key = f"{head}.{rest}"
            out[key] = value.detach().clone()
        return out
