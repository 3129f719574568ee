"""The `nb201` cell's op vocabulary and op modules: op names, edge order, liveness and `make_op`."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from hwnas.errors import ArchError

NONE = "none"  # the op of an absent edge
OPS: tuple[str, ...] = (NONE, "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Edge (to_node, from_node) of each gene position, in NAS-Bench-201 string order.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def live_edges(genes: Sequence[str]) -> list[int]:
    """Positions whose op reaches the cell output from its input (dead and `none` edges cost nothing)."""
    ops = dict(zip(EDGES, genes))
    reachable = {0}
    for to in (1, 2, 3):
        if any(ops[(to, src)] != NONE and src in reachable for src in range(to)):
            reachable.add(to)
    feeds_output = {3}
    for src in (2, 1, 0):
        if any(ops[(to, src)] != NONE and to in feeds_output for to in range(src + 1, 4)):
            feeds_output.add(src)
    return [
        pos
        for pos, (to, src) in enumerate(EDGES)
        if genes[pos] != NONE and src in reachable and to in feeds_output
    ]


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv(k x k) -> BatchNorm, the NAS-Bench-201 conv op."""

    CONV, BN = 1, 2  # positions of the conv and its BatchNorm (state-dict keys `<op>.1.weight`, `<op>.2.bias`)

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


def make_op(op: str, channels: int) -> nn.Module:
    """The module of one cell op at a given channel count."""
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if op == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ArchError(f"no module for nb201 op {op!r}; valid: {', '.join(OPS[1:])}")
