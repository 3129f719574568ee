"""SearchSpace interface, the frozen `Arch` genotype and the `Block` a latency table is keyed on."""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from torch import nn

from hwnas.errors import ArchError

Seed = int | random.Random


def as_rng(seed: Seed) -> random.Random:
    """A `random.Random` from a seed, or the generator itself."""
    return seed if isinstance(seed, random.Random) else random.Random(seed)


@dataclass(frozen=True)
class Arch:
    """One architecture: the canonical space spec and one choice (gene) per searchable position."""

    space: str
    genes: tuple[str, ...]
    text: str = field(compare=False)

    @property
    def id(self) -> str:
        """Stable 16-hex-digit id derived from the space spec and genes."""
        key = f"{self.space}/{'|'.join(self.genes)}".encode()
        return hashlib.sha256(key).hexdigest()[:16]

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Block:
    """A unit a runtime executes as one piece; its `key` is what latency tables are keyed on.

    `input_shape` is (C, H, W) without the batch dimension.
    """

    kind: str
    in_channels: int
    out_channels: int
    input_hw: tuple[int, int]
    stride: int = 1
    kernel: int = 0
    expansion: int = 1
    groups: int = 1

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, *self.input_hw)

    @property
    def key(self) -> str:
        h, w = self.input_hw
        return (
            f"{self.kind}:k{self.kernel}:e{self.expansion}:g{self.groups}:s{self.stride}"
            f":c{self.in_channels}-{self.out_channels}:{h}x{w}"
        )


class Morphisms(Protocol):
    """A space's network morphisms (opt-in ability, see `SearchSpace.morphisms()`).

    An operator is a string naming the change and where it applies (e.g. `expand@l3`). Exact
    operators preserve the parent's function in eval mode; approximate ones shrink the network.
    """

    def operators(self, arch: Arch) -> list[str]:
        """Every operator applicable to `arch`."""
        ...

    def is_exact(self, operators: Sequence[str]) -> bool:
        """True when every operator preserves the function."""
        ...

    def apply_arch(self, arch: Arch, operators: Sequence[str]) -> Arch:
        """The child arch after applying `operators` in order (no weights involved)."""
        ...

    def apply(
        self, arch: Arch, state: Mapping[str, object], operators: Sequence[str]
    ) -> tuple[Arch, dict[str, object]]:
        """(child arch, child state dict) from a parent's arch and trained state dict."""
        ...


class SearchSpace(ABC):
    """A fixed-length categorical search space: position i takes one of `choices[i]`.

    Subclasses define the choices, the string format and how to build networks and blocks.
    """

    name: str = ""
    presets: dict[str, dict] = {}
    default_preset: str = ""
    chain: bool = False  # blocks(arch) is a chain: each block consumes the previous one's output

    def __init__(self, preset: str | None = None) -> None:
        preset = preset or self.default_preset
        if preset not in self.presets:
            valid = ", ".join(sorted(self.presets))
            raise ArchError(f"space {self.name!r} has no preset {preset!r}; valid presets: {valid}")
        self.preset = preset
        self.config = self.presets[preset]

    # -- identity --------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        """Canonical space spec, `name:preset`."""
        return f"{self.name}:{self.preset}"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.config["input_shape"])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    # -- genotype --------------------------------------------------------------------------
    @property
    @abstractmethod
    def choices(self) -> tuple[tuple[str, ...], ...]:
        """The valid genes at each position."""

    @abstractmethod
    def format(self, genes: Sequence[str]) -> str:
        """Canonical string of a genotype."""

    @abstractmethod
    def split(self, text: str) -> list[str]:
        """Genes of an arch string (raise ArchError when the structure is malformed)."""

    def make(self, genes: Sequence[str]) -> Arch:
        """Validate genes and return the Arch."""
        genes = tuple(genes)
        if len(genes) != len(self.choices):
            raise ArchError(
                f"{self.spec} archs have {len(self.choices)} positions, got {len(genes)}"
            )
        for i, (gene, valid) in enumerate(zip(genes, self.choices)):
            if gene not in valid:
                raise ArchError(
                    f"position {i} of a {self.spec} arch cannot be {gene!r}; valid: {', '.join(valid)}"
                )
        return Arch(self.spec, genes, self.format(genes))

    def parse(self, text: str) -> Arch:
        """Arch from its string form; errors say what was wrong and what is valid."""
        if not isinstance(text, str) or not text.strip():
            raise ArchError(f"empty arch string for space {self.spec}")
        return self.make(self.split(text.strip()))

    def check(self, arch: Arch) -> Arch:
        """Raise unless `arch` belongs to this space."""
        if arch.space != self.spec:
            raise ArchError(f"arch {arch} belongs to space {arch.space}, not {self.spec}")
        return arch

    def effective(self, genes: Sequence[str]) -> tuple[str, ...]:
        """The genes as the network computes them: a gene that cannot affect the output (a dead edge) becomes
        the choice that means absent. Here every gene counts; spaces with such genes override."""
        return tuple(genes)

    def encode(self, arch: Arch) -> list[int]:
        """Integer index of each gene within its position's choices."""
        self.check(arch)
        return [valid.index(g) for g, valid in zip(arch.genes, self.choices)]

    def decode(self, indices: Sequence[int]) -> Arch:
        """Inverse of `encode`."""
        if len(indices) != len(self.choices):
            raise ArchError(f"{self.spec} needs {len(self.choices)} indices, got {len(indices)}")
        return self.make(valid[int(i)] for i, valid in zip(indices, self.choices))

    def sample(self, seed: Seed) -> Arch:
        """A uniformly random arch; the same seed gives the same arch."""
        rng = as_rng(seed)
        return self.make(rng.choice(valid) for valid in self.choices)

    def mutate(self, arch: Arch, seed: Seed) -> Arch:
        """Change one randomly chosen mutable position to a different choice."""
        self.check(arch)
        rng = as_rng(seed)
        mutable = [i for i, valid in enumerate(self.choices) if len(valid) > 1]
        i = rng.choice(mutable)
        genes = list(arch.genes)
        genes[i] = rng.choice([g for g in self.choices[i] if g != genes[i]])
        return self.make(genes)

    def size(self) -> int:
        """Number of distinct genotypes."""
        n = 1
        for valid in self.choices:
            n *= len(valid)
        return n

    # -- networks --------------------------------------------------------------------------
    @abstractmethod
    def build(self, arch: Arch) -> nn.Module:
        """The PyTorch network of an arch (training mode, freshly initialised)."""

    @abstractmethod
    def blocks(self, arch: Arch) -> list[Block]:
        """The blocks the network executes, in order, with their input shapes."""

    @abstractmethod
    def build_block(self, block: Block) -> nn.Module:
        """A standalone module of one block, identical to the one inside built networks."""

    # -- opt-in abilities ------------------------------------------------------------------
    def morphisms(self) -> Morphisms | None:
        """Network morphism operators on (arch, state dict), or None when the space has none."""
        return None
