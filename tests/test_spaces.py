"""Search spaces: string round trips, determinism, genotype operations, network building."""

from __future__ import annotations

import csv
import random

import pytest
import torch

from hwnas.errors import ArchError, UnknownNameError
from hwnas.spaces import SPACES, get_space
from hwnas.spaces.nb201 import live_edges

ALL_SPECS = [f"{n}:{p}" for n in SPACES.names() for p in SPACES.get(n).presets]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_benchmark_arch_string_round_trips(bench_csv):
    space = get_space("nb201:cifar100")
    rows = _rows(bench_csv)
    assert len(rows) == 15625
    archs = {space.parse(r["arch_str"]) for r in rows}
    for r in rows:
        assert str(space.parse(r["arch_str"])) == r["arch_str"]
    assert len(archs) == 15625  # every benchmark row is a distinct genotype
    assert len({a.id for a in archs}) == 15625


def test_sampled_benchmark_archs_build_and_run(bench_csv):
    space = get_space("nb201:cifar100")
    rows = random.Random(0).sample(_rows(bench_csv), 12)
    x = torch.randn(2, *space.input_shape)
    for r in rows:
        model = space.build(space.parse(r["arch_str"])).eval()
        with torch.no_grad():
            y = model(x)
        assert y.shape == (2, 100)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_same_seed_same_archs_and_string_round_trip(spec):
    space = get_space(spec)
    first = [space.sample(s) for s in range(20)]
    assert first == [space.sample(s) for s in range(20)]
    assert len(set(first)) > 1
    for arch in first:
        assert space.parse(str(arch)) == arch
        assert space.decode(space.encode(arch)) == arch


@pytest.mark.parametrize("spec", ["nb201", "mobile:mnist", "mobile:cifar"])
def test_built_networks_run_and_blocks_chain(spec):
    space = get_space(spec)
    arch = space.sample(3)
    model = space.build(arch).eval()
    with torch.no_grad():
        y = model(torch.randn(1, *space.input_shape))
    assert y.shape == (1, space.num_classes)
    blocks = space.blocks(arch)
    assert blocks[0].kind == "stem" and blocks[-1].kind == "head"
    assert blocks[0].input_shape == space.input_shape
    for block in blocks:  # every block builds alone and runs on its declared input shape
        out = space.build_block(block).eval()(torch.randn(1, *block.input_shape))
        assert out.shape[0] == 1 and torch.isfinite(out).all()
    assert len({b.key for b in blocks}) == len({(b.kind, b.kernel, b.expansion, b.groups, b.stride,
                                                 b.in_channels, b.out_channels, b.input_hw) for b in blocks})


def test_mobile_blocks_are_the_network():
    space = get_space("mobile:mnist")
    arch = space.sample(7)
    blocks = space.blocks(arch)
    x = torch.randn(1, *space.input_shape)
    for block in blocks[:-1]:  # each block's declared input shape is what flows into it
        assert tuple(x.shape[1:]) == block.input_shape
        x = space.build_block(block).eval()(x)
    assert len(blocks) == 2 + sum(g != "skip" for g in arch.genes)


def test_mutate_changes_exactly_one_position():
    for spec in ("nb201", "mobile:cifar"):
        space = get_space(spec)
        arch = space.sample(1)
        for seed in range(30):
            child = space.mutate(arch, seed)
            assert sum(a != b for a, b in zip(arch.genes, child.genes)) == 1
            assert child == space.mutate(arch, seed)


def test_arch_id_depends_on_space_preset():
    a = get_space("mobile:mnist").sample(0)
    b = get_space("mobile:cifar").make(a.genes + ("k3_e1",) * 4)
    assert a.id != b.id


def test_nb201_live_edges_prune_dead_paths():
    # Only node 0 -> 1 -> 3 path is alive: edge (2,0) feeds node 2 which never reaches the output.
    genes = ("nor_conv_3x3", "nor_conv_1x1", "none", "none", "skip_connect", "none")
    assert live_edges(genes) == [0, 4]
    # Node 1 has no input, so its outgoing edges are dead even though they are not `none`.
    genes = ("none", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_1x1", "none")
    assert live_edges(genes) == [3]
    assert live_edges(("none",) * 6) == []


def test_effective_genes_mark_dead_edges_absent_and_keep_every_live_one():
    nb201 = get_space("nb201")
    dead = nb201.parse("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|none~0|skip_connect~1|none~2|").genes
    # node 2 never reaches the output: its input edge (2,0) is dead; the path 0 -> 1 -> 3 stays
    assert nb201.effective(dead) == ("nor_conv_3x3", "none", "none", "none", "skip_connect", "none")
    empty = nb201.parse("|none~0|+|none~0|nor_conv_3x3~1|+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|").genes
    assert nb201.effective(empty) == ("none",) * 6  # no path from the input at all
    live = nb201.parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|skip_connect~2|")
    assert nb201.effective(live.genes) == live.genes
    mobile = get_space("mobile")
    arch = mobile.sample(3)
    assert mobile.effective(arch.genes) == arch.genes  # every mobile gene is a layer: none is inert


def test_nb201_disconnected_cell_outputs_zeros_and_prunes_parameters():
    space = get_space("nb201")
    empty = space.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    dead = space.parse("|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    skip = space.parse("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    n = {a: sum(p.numel() for p in space.build(a).parameters()) for a in (empty, dead, skip)}
    assert n[empty] == n[skip] == n[dead]  # all cell convs of `dead` are on dead edges
    model = space.build(empty).eval()
    cell = model[1]
    assert torch.equal(cell(torch.randn(1, 16, 32, 32)), torch.zeros(1, 16, 32, 32))


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("|nor_conv_3x3~0|", "nodes"),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown nb201 op 'conv'"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "should come from node 0"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "needs 2 inputs"),
        ("", "empty"),
    ],
)
def test_malformed_nb201_strings_say_what_is_wrong(text, fragment):
    with pytest.raises(ArchError, match=fragment):
        get_space("nb201").parse(text)


def test_bad_mobile_strings_and_names():
    space = get_space("mobile")
    good = str(space.sample(0)).split("-")
    with pytest.raises(ArchError, match="positions"):
        space.parse("-".join(good[:-1]))
    with pytest.raises(ArchError, match="valid: k3_e1"):
        space.parse("-".join(["k4_e1"] + good[1:]))  # an even kernel: never an op of this space
    with pytest.raises(ArchError, match="cannot be 'skip'"):
        space.parse("-".join(good[:1] + ["skip"] + good[2:]))
    with pytest.raises(UnknownNameError, match="valid: mobile, nb201"):
        get_space("resnet")
    with pytest.raises(ArchError, match="valid presets: cifar, imagenet, mnist"):
        get_space("mobile:tiny")
    with pytest.raises(ArchError, match="belongs to space"):
        get_space("nb201").build(space.sample(0))
