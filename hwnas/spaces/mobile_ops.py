"""The `mobile` space's op vocabulary and its MBConv block: op names <-> (kernel, expansion, groups), and
the block's convolutions by name, which `build`, morphisms, the supernet and cost features all read.

Adding an op option (a kernel, an expansion, a group count) is an edit of the tuples below: the space's
choices, its networks, its morphism operators and its analytic MAC features follow from them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

KERNELS = (3, 5)
EXPANSIONS = (1, 3, 6)
GROUPS = (1, 2)
SKIP = "skip"  # the gene of a layer that passes its input through (only where the shape allows)
KIND = "mbconv"  # the `Block.kind` of an MBConv (part of latency-table keys)


@dataclass(frozen=True)
class Op:
    """One MBConv variant: depthwise kernel, expansion ratio, groups of the 1x1 convs."""

    kernel: int
    expansion: int
    groups: int

    @property
    def name(self) -> str:
        """Canonical op name, e.g. `k3_e6` or `k5_e1_g2`."""
        return op_name(self.kernel, self.expansion, self.groups)


def op_name(kernel: int, expansion: int, groups: int) -> str:
    """Canonical op name, e.g. `k3_e6` or `k5_e1_g2`."""
    return f"k{kernel}_e{expansion}" + (f"_g{groups}" if groups > 1 else "")


OPS: dict[str, Op] = {op.name: op for op in itertools.starmap(Op, itertools.product(KERNELS, EXPANSIONS, GROUPS))}
BLOCK_OPS: tuple[str, ...] = tuple(OPS)
GROW_OP = op_name(KERNELS[0], EXPANSIONS[0], GROUPS[0])  # the cheapest block: what a grown skip becomes


@dataclass(frozen=True)
class Conv:
    """One convolution of a block, followed by BatchNorm (and ReLU when `relu`); `name` is its part's name."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    groups: int
    relu: bool

    def output_hw(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        h, w = input_hw
        return (h - 1) // self.stride + 1, (w - 1) // self.stride + 1

    def macs(self, input_hw: tuple[int, int]) -> int:
        """Multiply-accumulates at batch size 1 (what fvcore counts for the conv)."""
        h, w = self.output_hw(input_hw)
        return h * w * self.out_channels * (self.in_channels // self.groups) * self.kernel**2


def mbconv_convs(c_in: int, c_out: int, op: Op, stride: int) -> tuple[Conv, ...]:
    """The convolutions of an MBConv in order: `expand` (1x1, grouped; absent at expansion 1), `dw`
    (k x k depthwise, strided) and `project` (1x1, grouped, no ReLU). A channel shuffle follows a
    grouped expand."""
    mid = c_in * op.expansion
    expand = [Conv("expand", c_in, mid, 1, 1, op.groups, True)] if op.expansion != 1 else []
    return (*expand, Conv("dw", mid, mid, op.kernel, stride, mid, True),
            Conv("project", mid, c_out, 1, 1, op.groups, False))


class ConvBN(nn.Module):
    """One part of a block: `conv` -> `bn` (-> ReLU)."""

    def __init__(self, spec: Conv) -> None:
        super().__init__()
        self.conv = nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.kernel // 2,
                              groups=spec.groups, bias=False)
        self.bn = nn.BatchNorm2d(spec.out_channels)
        self.act = nn.ReLU() if spec.relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class ChannelShuffle(nn.Module):
    """Interleave channels across groups so grouped 1x1 convs mix information."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (self.groups, -1)).transpose(1, 2).flatten(1, 2)


class MBConv(nn.Module):
    """Inverted residual: `expand` -> `shuffle` -> `dw` -> `project` (see `mbconv_convs`), plus the input
    when stride 1 keeps the shape. Parts are named, so state-dict keys read `l3.dw.conv.weight`."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expansion: int, groups: int, stride: int) -> None:
        super().__init__()
        self.op = Op(kernel, expansion, groups)
        self.convs = mbconv_convs(c_in, c_out, self.op, stride)
        for spec in self.convs:
            self.add_module(spec.name, ConvBN(spec))
            if spec.name == "expand" and groups > 1:
                self.shuffle = ChannelShuffle(groups)
        self.parts = tuple(name for name, _ in self.named_children())
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for name in self.parts:
            y = getattr(self, name)(y)
        return x + y if self.residual else y
