"""Network morphisms of the NAS-Bench-201 cell: operators on (arch, trained state dict) at one edge (`@eP`,
edge P in NB201 string order, the same edge in every cell).

  exact:  conv1 / conv3 (none -> nor_conv_1x1 / nor_conv_3x3, new conv's BN weight = bias = 0),
          k1k3 (zero-padded kernel);
  approx: k3k1 (centre crop), prune (any op -> none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from hwnas.spaces.base import Arch
from hwnas.spaces.morphisms import BaseMorphisms, fresh_state, resize_kernel, seed_of
from hwnas.spaces.nb201_ops import NONE, ReLUConvBN

_CONV1, _CONV3 = "nor_conv_1x1", "nor_conv_3x3"
_CONV_WEIGHT = f".{ReLUConvBN.CONV}.weight"
_BN_AFFINE = (f".{ReLUConvBN.BN}.weight", f".{ReLUConvBN.BN}.bias")


class NB201Morphisms(BaseMorphisms):
    """Morphisms of the NAS-Bench-201 cell (every cell shares the genotype, so all cells change)."""

    exact_ops = frozenset({"conv1", "conv3", "k1k3"})
    approx_ops = frozenset({"k3k1", "prune"})
    prefix = "e"
    _FROM_TO = {"conv1": (NONE, _CONV1), "conv3": (NONE, _CONV3), "k1k3": (_CONV1, _CONV3), "k3k1": (_CONV3, _CONV1)}

    def _gene_after(self, genes: Sequence[str], name: str, index: int) -> str | None:
        if name == "prune":
            return NONE if genes[index] != NONE else None
        old, new = self._FROM_TO[name]
        return new if genes[index] == old else None

    def apply(
        self, arch: Arch, state: Mapping[str, object], operators: Sequence[str]
    ) -> tuple[Arch, dict[str, object]]:
        """(child arch, child state dict). Conv modules the child has and the parent lacks (the grown
        edge, and edges it brings to life) start with BN weight = bias = 0, so they output zero."""
        self.space.check(arch)
        child = self.apply_arch(arch, operators)
        fresh = fresh_state(lambda: self.space.build(child), seed_of(arch.id, *operators))
        out: dict[str, object] = {}
        for key, v in fresh.items():
            old = state.get(key)
            if isinstance(old, torch.Tensor) and old.shape == v.shape:
                out[key] = old
            elif isinstance(old, torch.Tensor) and key.endswith(_CONV_WEIGHT):  # resized conv kernel
                out[key] = resize_kernel(old, v.shape[-1])
            elif ".ops." in key and key.endswith(_BN_AFFINE):  # BN of a new conv edge
                out[key] = torch.zeros_like(v)
            else:
                out[key] = v
        return child, out
