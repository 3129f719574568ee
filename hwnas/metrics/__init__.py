"""Cost metrics of an arch: params, MACs/FLOPs (explicit units) and peak activation bytes."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hwnas.metrics.analytic import ConvWork, mbconv_work
from hwnas.metrics.flops import OpCounts, count_macs, count_params
from hwnas.metrics.memory import peak_activation_bytes
from hwnas.spaces import Arch, space_of


@dataclass(frozen=True)
class Cost:
    """Static costs of one arch at batch size 1, float32."""

    params: int
    macs: int
    flops: int
    activation_bytes: int
    uncounted_ops: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


def arch_cost(arch: Arch) -> Cost:
    """Params, MACs, FLOPs (2 x MACs) and peak activation bytes of an arch's network."""
    space = space_of(arch)
    model = space.build(arch)
    counts = count_macs(model, space.input_shape)
    return Cost(
        params=count_params(model),
        macs=counts.macs,
        flops=counts.flops,
        activation_bytes=peak_activation_bytes(model, space.input_shape),
        uncounted_ops=counts.uncounted_ops,
    )


__all__ = [
    "ConvWork", "Cost", "OpCounts", "arch_cost", "count_macs", "count_params", "mbconv_work", "peak_activation_bytes",
]
