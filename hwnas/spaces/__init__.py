"""Search spaces: the registry and `get_space("name[:preset]")`."""

from __future__ import annotations

from functools import cache

from hwnas.errors import ArchError
from hwnas.registry import Registry
from hwnas.spaces.base import Arch, Block, Morphisms, SearchSpace
from hwnas.spaces.mobile import MobileSpace
from hwnas.spaces.nb201 import NB201Space
from hwnas.spaces.state_keys import upgrade_state_dict

SPACES: Registry[type[SearchSpace]] = Registry("search space")
SPACES.add(NB201Space.name, NB201Space)
SPACES.add(MobileSpace.name, MobileSpace)


@cache
def get_space(spec: str) -> SearchSpace:
    """The space for a spec like `nb201`, `nb201:cifar100`, `mobile` or `mobile:imagenet`."""
    name, _, preset = spec.partition(":")
    return SPACES.get(name)(preset or None)


def parse_arch(spec: str, text: str) -> Arch:
    """Parse an arch string of the space `spec`."""
    return get_space(spec).parse(text)


def space_of(arch: Arch) -> SearchSpace:
    """The space an arch belongs to."""
    return get_space(arch.space)


__all__ = [
    "Arch", "ArchError", "Block", "Morphisms", "SearchSpace", "SPACES", "get_space", "parse_arch", "space_of",
    "upgrade_state_dict",
]
