"""The NAS-Bench-201 cell search space (5 ops on 6 edges; C=16, N=5 cells per stage, 3 stages)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from hwnas.errors import ArchError
from hwnas.spaces.base import Arch, Block, Morphisms, SearchSpace
from hwnas.spaces.nb201_morphisms import NB201Morphisms
from hwnas.spaces.nb201_ops import EDGES, NONE, OPS, ReLUConvBN, live_edges, make_op

_NODE_RE = re.compile(r"^\|(?:[a-z0-9_]+~\d+\|)+$")


class ResidualReduction(nn.Module):
    """The ResNet basic block that halves resolution and doubles channels between stages."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, stride=1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class Cell(nn.Module):
    """A NAS-Bench-201 cell: node j sums op(i->j)(node i) over its live incoming edges.

    The op of edge position p is `ops["e{p}"]` (stable names: a `none` edge that becomes a conv
    never shifts the others)."""

    def __init__(self, genes: Sequence[str], channels: int) -> None:
        super().__init__()
        self.live = live_edges(genes)
        self.ops = nn.ModuleDict({f"e{p}": make_op(genes[p], channels) for p in self.live})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x, None, None, None]
        for p in self.live:
            to, src = EDGES[p]
            out = self.ops[f"e{p}"](nodes[src])
            nodes[to] = out if nodes[to] is None else nodes[to] + out
        # A cell whose output is cut off from its input outputs zeros.
        return nodes[3] if nodes[3] is not None else torch.zeros_like(x)


class Head(nn.Sequential):
    """Final BN + ReLU, global average pooling and the linear classifier."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, num_classes),
        )


class NB201Space(SearchSpace):
    """NAS-Bench-201: one cell genotype shared by all 15 cells of the network."""

    name = "nb201"
    presets = {
        "cifar10": {"input_shape": (3, 32, 32), "num_classes": 10},
        "cifar100": {"input_shape": (3, 32, 32), "num_classes": 100},
        "imagenet16": {"input_shape": (3, 16, 16), "num_classes": 120},
    }
    default_preset = "cifar10"
    channels = 16
    cells_per_stage = 5

    @property
    def choices(self) -> tuple[tuple[str, ...], ...]:
        return (OPS,) * len(EDGES)

    def format(self, genes: Sequence[str]) -> str:
        nodes = []
        for to in (1, 2, 3):
            ops = [f"{genes[p]}~{src}" for p, (t, src) in enumerate(EDGES) if t == to]
            nodes.append("|" + "|".join(ops) + "|")
        return "+".join(nodes)

    def split(self, text: str) -> list[str]:
        hint = "expected NAS-Bench-201 form |op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
        parts = text.split("+")
        if len(parts) != 3:
            raise ArchError(f"nb201 arch {text!r} has {len(parts)} nodes, {hint}")
        genes: list[str] = []
        for to, part in enumerate(parts, start=1):
            if not _NODE_RE.match(part):
                raise ArchError(f"nb201 arch node {part!r} is malformed; {hint}")
            items = part.strip("|").split("|")
            if len(items) != to:
                raise ArchError(f"nb201 node {to} needs {to} inputs, got {part!r}; {hint}")
            for src, item in enumerate(items):
                op, _, index = item.partition("~")
                if int(index) != src:
                    raise ArchError(f"nb201 node {to} input {item!r} should come from node {src}")
                if op not in OPS:
                    raise ArchError(f"unknown nb201 op {op!r}; valid: {', '.join(OPS)}")
                genes.append(op)
        return genes

    def effective(self, genes: Sequence[str]) -> tuple[str, ...]:
        """Dead edges (no path from the cell input through them to its output) become `none`."""
        live = set(live_edges(genes))
        return tuple(g if p in live else NONE for p, g in enumerate(genes))

    def _stage_channels(self) -> list[int]:
        return [self.channels * 2**s for s in range(3)]

    def build(self, arch: Arch) -> nn.Module:
        self.check(arch)
        c_in, h, _ = self.input_shape
        layers: list[nn.Module] = [self.build_block(self._stem_block())]
        prev = self.channels
        for stage, c in enumerate(self._stage_channels()):
            if stage > 0:
                layers.append(ResidualReduction(prev, c))
            layers.extend(Cell(arch.genes, c) for _ in range(self.cells_per_stage))
            prev = c
        layers.append(Head(prev, self.num_classes))
        return nn.Sequential(*layers)

    def _stem_block(self) -> Block:
        c_in, h, w = self.input_shape
        return Block("stem", c_in, self.channels, (h, w), kernel=3)

    def blocks(self, arch: Arch) -> list[Block]:
        self.check(arch)
        _, h, w = self.input_shape
        out = [self._stem_block()]
        prev = self.channels
        live = live_edges(arch.genes)
        for stage, c in enumerate(self._stage_channels()):
            if stage > 0:
                out.append(Block("resblock", prev, c, (h, w), stride=2, kernel=3))
                h, w = (h + 1) // 2, (w + 1) // 2
            for _ in range(self.cells_per_stage):
                for pos in live:
                    op = arch.genes[pos]
                    if op != "skip_connect":
                        kernel = 1 if op == "nor_conv_1x1" else 3
                        out.append(Block(op, c, c, (h, w), kernel=kernel))
            prev = c
        out.append(Block("head", prev, self.num_classes, (h, w)))
        return out

    def build_block(self, block: Block) -> nn.Module:
        if block.kind == "stem":
            return nn.Sequential(
                nn.Conv2d(block.in_channels, block.out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(block.out_channels),
            )
        if block.kind == "resblock":
            return ResidualReduction(block.in_channels, block.out_channels)
        if block.kind == "head":
            return Head(block.in_channels, block.out_channels)
        return make_op(block.kind, block.in_channels)

    def morphisms(self) -> Morphisms:
        """Edge morphisms (`none` -> conv exact, see `hwnas.spaces.nb201_morphisms`)."""
        return NB201Morphisms(self)
