"""FBNet-style macro space: one inverted-residual (MBConv) choice or skip per layer."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from hwnas.errors import ArchError
from hwnas.spaces.base import Arch, Block, Morphisms, SearchSpace
from hwnas.spaces.mobile_morphisms import MobileMorphisms
from hwnas.spaces.mobile_ops import BLOCK_OPS, KIND, OPS, SKIP, MBConv
from hwnas.spaces.supernet import Supernet

SEPARATOR = "-"


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

    def stem_block(self) -> Block:
        c_img, h, w = self.input_shape
        stem_c, stem_s = self.config["stem"]
        return Block("stem", c_img, stem_c, (h, w), stride=stem_s, kernel=3)

    def layer_block(self, index: int, gene: str) -> Block | None:
        """The block searchable layer `index` runs with `gene` (None for a skip)."""
        if gene == SKIP:
            return None
        c_in, c_out, stride, hw = self.layers()[index]
        op = OPS[gene]
        return Block(KIND, c_in, c_out, hw, stride, op.kernel, op.expansion, op.groups)

    def head_block(self) -> Block:
        _, c_last, stride, (h, w) = self.layers()[-1]
        return Block("head", c_last, self.num_classes, (_conv_out(h, stride), _conv_out(w, stride)))

    def blocks(self, arch: Arch) -> list[Block]:
        self.check(arch)
        layers = [self.layer_block(i, gene) for i, gene in enumerate(arch.genes)]
        return [self.stem_block(), *(b for b in layers if b is not None), self.head_block()]

    @staticmethod
    def layer_name(index: int) -> str:
        """Stable module name of searchable layer `index` (`l0`, `l1`, ...), whether it is a block or skip."""
        return f"l{index}"

    def build(self, arch: Arch) -> nn.Module:
        """`stem`, `l0`..`l{n-1}` (a skip layer is an `nn.Identity`, so names never shift) and `head`."""
        self.check(arch)
        modules: list[tuple[str, nn.Module]] = [("stem", self.build_block(self.stem_block()))]
        for i, gene in enumerate(arch.genes):
            block = self.layer_block(i, gene)
            modules.append((self.layer_name(i), nn.Identity() if block is None else self.build_block(block)))
        modules.append(("head", self.build_block(self.head_block())))
        return nn.Sequential(OrderedDict(modules))

    def build_block(self, block: Block) -> nn.Module:
        if block.kind == "stem":
            return Stem(block.in_channels, block.out_channels, block.stride)
        if block.kind == "head":
            return Head(block.in_channels, self.config["head"], block.out_channels)
        if block.kind == KIND:
            return MBConv(
                block.in_channels, block.out_channels, block.kernel, block.expansion,
                block.groups, block.stride,
            )
        raise ArchError(f"space {self.spec} has no block kind {block.kind!r}")

    # -- opt-in abilities ---------------------------------------------------------------------------
    def supernet(self) -> nn.Module:
        """A `Supernet`: a mixed op per layer over the candidate blocks `build` uses (see spaces/supernet.py)."""
        return Supernet(self)

    def morphisms(self) -> Morphisms:
        """Exact and approximate MBConv morphisms (see `hwnas.spaces.mobile_morphisms`)."""
        return MobileMorphisms(self)
