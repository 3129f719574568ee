"""FBNet-style macro space: one inverted-residual (MBConv) choice or skip per layer."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from hwnas.errors import ArchError
from hwnas.spaces.base import Arch, Block, Morphisms, SearchSpace

KERNELS = (3, 5)
EXPANSIONS = (1, 3, 6)
GROUPS = (1, 2)
SKIP = "skip"
SEPARATOR = "-"


def op_name(kernel: int, expansion: int, groups: int) -> str:
    """Canonical op name, e.g. `k3_e6` or `k5_e1_g2`."""
    return f"k{kernel}_e{expansion}" + (f"_g{groups}" if groups > 1 else "")


BLOCK_OPS: tuple[str, ...] = tuple(
    op_name(k, e, g) for k, e, g in itertools.product(KERNELS, EXPANSIONS, GROUPS)
)
_OP_PARAMS = {
    op_name(k, e, g): (k, e, g) for k, e, g in itertools.product(KERNELS, EXPANSIONS, GROUPS)
}


class ChannelShuffle(nn.Module):
    """Interleave channels across groups so grouped 1x1 convs mix information."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (self.groups, -1)).transpose(1, 2).flatten(1, 2)


class MBConv(nn.Module):
    """1x1 expand (grouped) -> shuffle -> kxk depthwise -> 1x1 project (grouped), residual when shapes allow."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, expansion: int, groups: int, stride: int
    ) -> None:
        super().__init__()
        mid = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [
                nn.Conv2d(c_in, mid, 1, groups=groups, bias=False),
                nn.BatchNorm2d(mid),
                nn.ReLU(),
            ]
            if groups > 1:
                layers.append(ChannelShuffle(groups))
        layers += [
            nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Conv2d(mid, c_out, 1, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class Stem(nn.Sequential):
    """3x3 conv + BN + ReLU on the input image."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
        )


class Head(nn.Sequential):
    """1x1 conv to the head width, global average pooling and the classifier."""

    def __init__(self, c_in: int, width: int, num_classes: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, num_classes),
        )


def _conv_out(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


class MobileSpace(SearchSpace):
    """Stages of (channels, layers, first stride); each layer picks an MBConv variant or skip."""

    name = "mobile"
    chain = True
    presets = {
        "mnist": {
            "input_shape": (1, 28, 28),
            "num_classes": 10,
            "stem": (16, 1),
            "stages": ((16, 1, 1), (24, 2, 2), (32, 2, 2), (64, 2, 2)),
            "head": 128,
        },
        "cifar": {
            "input_shape": (3, 32, 32),
            "num_classes": 10,
            "stem": (16, 1),
            "stages": ((16, 1, 1), (24, 2, 1), (32, 3, 2), (64, 3, 2), (96, 2, 1)),
            "head": 256,
        },
        "imagenet": {
            "input_shape": (3, 224, 224),
            "num_classes": 1000,
            "stem": (16, 2),
            "stages": (
                (16, 1, 1), (24, 4, 2), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1),
            ),
            "head": 1984,
        },
    }
    default_preset = "mnist"

    def layers(self) -> list[tuple[int, int, int, tuple[int, int]]]:
        """(c_in, c_out, stride, input_hw) of every searchable layer."""
        _, h, w = self.input_shape
        stem_c, stem_s = self.config["stem"]
        h, w = _conv_out(h, stem_s), _conv_out(w, stem_s)
        out, prev = [], stem_c
        for c, n, first_stride in self.config["stages"]:
            for i in range(n):
                stride = first_stride if i == 0 else 1
                out.append((prev, c, stride, (h, w)))
                h, w = _conv_out(h, stride), _conv_out(w, stride)
                prev = c
        return out

    @property
    def choices(self) -> tuple[tuple[str, ...], ...]:
        return tuple(
            BLOCK_OPS + ((SKIP,) if stride == 1 and c_in == c_out else ())
            for c_in, c_out, stride, _ in self.layers()
        )

    def format(self, genes: Sequence[str]) -> str:
        return SEPARATOR.join(genes)

    def split(self, text: str) -> list[str]:
        return text.split(SEPARATOR)

    def make(self, genes: Sequence[str]) -> Arch:
        genes = tuple(genes)
        for i, (gene, valid) in enumerate(zip(genes, self.choices)):
            if gene == SKIP and SKIP not in valid:
                raise ArchError(
                    f"layer {i} of {self.spec} changes shape and cannot be {SKIP!r}; "
                    f"valid: {', '.join(valid)}"
                )
        return super().make(genes)

    def blocks(self, arch: Arch) -> list[Block]:
        self.check(arch)
        c_img, h, w = self.input_shape
        stem_c, stem_s = self.config["stem"]
        out = [Block("stem", c_img, stem_c, (h, w), stride=stem_s, kernel=3)]
        for gene, (c_in, c_out, stride, hw) in zip(arch.genes, self.layers()):
            if gene != SKIP:
                k, e, g = _OP_PARAMS[gene]
                out.append(Block("mbconv", c_in, c_out, hw, stride, k, e, g))
        c_last = self.config["stages"][-1][0]
        last = self.layers()[-1]
        hw = (_conv_out(last[3][0], last[2]), _conv_out(last[3][1], last[2]))
        out.append(Block("head", c_last, self.num_classes, hw))
        return out

    @staticmethod
    def layer_name(index: int) -> str:
        """Stable module name of searchable layer `index` (`l0`, `l1`, ...), whether it is a block or skip."""
        return f"l{index}"

    def build(self, arch: Arch) -> nn.Module:
        """`stem`, `l0`..`l{n-1}` (a skip layer is an `nn.Identity`, so names never shift) and `head`."""
        blocks = iter(self.blocks(arch))
        modules: list[tuple[str, nn.Module]] = [("stem", self.build_block(next(blocks)))]
        for i, gene in enumerate(arch.genes):
            modules.append((self.layer_name(i), nn.Identity() if gene == SKIP else self.build_block(next(blocks))))
        modules.append(("head", self.build_block(next(blocks))))
        return nn.Sequential(OrderedDict(modules))

    def build_block(self, block: Block) -> nn.Module:
        if block.kind == "stem":
            return Stem(block.in_channels, block.out_channels, block.stride)
        if block.kind == "head":
            return Head(block.in_channels, self.config["head"], block.out_channels)
        if block.kind == "mbconv":
            return MBConv(
                block.in_channels, block.out_channels, block.kernel, block.expansion,
                block.groups, block.stride,
            )
        raise ArchError(f"space {self.spec} has no block kind {block.kind!r}")

    # -- supernet ability (hwnas.search.dnas, FBNet) -----------------------------------------------
    def supernet(self) -> nn.Module:
        """A `Supernet`: a mixed op per layer over the candidate blocks `build` uses (see spaces/supernet.py)."""
        from hwnas.spaces.supernet import Supernet

        return Supernet(self)
    def morphisms(self) -> Morphisms:
        """Exact and approximate MBConv morphisms (see `hwnas.spaces.morphisms`)."""
        from hwnas.spaces.morphisms import MobileMorphisms

        return MobileMorphisms(self)
