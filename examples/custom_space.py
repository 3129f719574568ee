"""A search space of your own: subclass SearchSpace, register it, and search it like a built-in one.

    python examples/custom_space.py            # 6 candidates on sklearn digits (8x8)
    python examples/custom_space.py --small    # 2 candidates (CI)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from hwnas import api
from hwnas.errors import ArchError
from hwnas.spaces import SPACES, Arch, Block, SearchSpace


class TinyCNN(SearchSpace):
    """Conv stacks for 8x8 grey images: width, depth and kernel, e.g. `w16-d2-k3`."""

    name = "tinycnn"
    presets = {"digits": {"input_shape": (1, 8, 8), "num_classes": 10}}
    default_preset = "digits"

    @property
    def choices(self) -> tuple[tuple[str, ...], ...]:
        return (("w8", "w16", "w32"), ("d1", "d2", "d3"), ("k3", "k5"))

    def format(self, genes: Sequence[str]) -> str:
        return "-".join(genes)

    def split(self, text: str) -> list[str]:
        genes = text.split("-")
        if len(genes) != 3:
            raise ArchError(f"a {self.spec} arch looks like w16-d2-k3, got {text!r}")
        return genes

    def _shape(self, arch: Arch) -> tuple[int, int, int]:
        width, depth, kernel = (int(g[1:]) for g in arch.genes)
        return width, depth, kernel

    def blocks(self, arch: Arch) -> list[Block]:
        width, depth, kernel = self._shape(arch)
        c_in = self.input_shape[0]
        out = []
        for _ in range(depth):
            out.append(Block("conv", c_in, width, self.input_shape[1:], kernel=kernel))
            c_in = width
        return out

    def build_block(self, block: Block) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(block.in_channels, block.out_channels, block.kernel, padding=block.kernel // 2, bias=False),
            nn.BatchNorm2d(block.out_channels), nn.ReLU(),
        )

    def build(self, arch: Arch) -> nn.Module:
        self.check(arch)
        layers = [self.build_block(b) for b in self.blocks(arch)]
        width = self.blocks(arch)[-1].out_channels
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, self.num_classes))


if TinyCNN.name not in SPACES:
    SPACES.add(TinyCNN.name, TinyCNN)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/custom-space")
    parser.add_argument("--small", action="store_true", help="2 candidates")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    run = api.search("tinycnn", ["accuracy", "params"], data="digits", strategy="random",
                     budget=2 if args.small else 6, train={"epochs": 1 if args.small else 3}, storage=f"sqlite:///{args.out}/runs.db")
    for t in run.pareto_front():
        print(f"{t.values['accuracy']:.3f}  {t.values['params']:>8.0f} params  {t.arch_str}")
    print(f"report: {api.report(run)}")


if __name__ == "__main__":
    main()
