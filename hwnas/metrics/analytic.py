"""Analytic conv work of an arch's MBConv blocks, from the block's own conv specs (`spaces.mobile_ops`), no tracing."""

from __future__ import annotations

from dataclasses import dataclass

from hwnas.spaces import Arch, space_of
from hwnas.spaces.mobile_ops import KIND, Op, mbconv_convs


@dataclass(frozen=True)
class ConvWork:
    """Batch-1 work of the MBConv blocks of one arch (stem and head excluded)."""

    pointwise_macs: int  # 1x1 convs: expand and project
    depthwise_macs: int  # k x k depthwise convs
    activation_elems: int  # output elements of every conv
    blocks: int


def mbconv_work(arch: Arch) -> ConvWork:
    """MACs by conv kind, conv output elements and the number of MBConv blocks of `arch`."""
    pointwise = depthwise = elems = count = 0
    for block in space_of(arch).blocks(arch):
        if block.kind != KIND:
            continue
        hw = block.input_hw
        op = Op(block.kernel, block.expansion, block.groups)
        for conv in mbconv_convs(block.in_channels, block.out_channels, op, block.stride):
            macs, out_hw = conv.macs(hw), conv.output_hw(hw)
            if conv.kernel == 1:
                pointwise += macs
            else:
                depthwise += macs
            elems += out_hw[0] * out_hw[1] * conv.out_channels
            hw = out_hw
        count += 1
    return ConvWork(pointwise, depthwise, elems, count)
