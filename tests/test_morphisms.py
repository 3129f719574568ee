"""Network morphisms: exact operators preserve the function (random and trained weights), approximate
children are valid trainable nets with the expected arch, bad operators are clear errors."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from hwnas.errors import ArchError, ConfigError
from hwnas.search.strategies import make_strategy
from hwnas.spaces import get_space
from hwnas.spaces.mobile import MobileSpace
from hwnas.train import TrainConfig, train_arch
from hwnas.train.trainer import recalibrate_bn

TOL = 1e-5


def _nontrivial(net: nn.Module, shape, gen: torch.Generator) -> nn.Module:
    """Random weights with realistic BN: affine params perturbed, running stats estimated on random inputs."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.weight.shape, generator=gen)
            m.bias.data = torch.randn(m.bias.shape, generator=gen) * 0.3
    recalibrate_bn(net, torch.randn(64, *shape, generator=gen) + 0.3)
    return net.eval()


def _sequences(morphisms, arch, rng: random.Random, extra: int):
    """Every single exact operator of `arch`, plus `extra` random chains of 2-3 exact operators."""
    exact = [o for o in morphisms.operators(arch) if morphisms.is_exact([o])]
    seqs = [[o] for o in exact]
    for _ in range(extra):
        cur, ops = arch, []
        for _ in range(rng.randint(2, 3)):
            avail = [o for o in morphisms.operators(cur) if morphisms.is_exact([o])]
            if not avail:
                break
            ops.append(rng.choice(avail))
            cur = morphisms.apply_arch(cur, ops[-1:])
        seqs.append(ops)
    return seqs


def _max_diff(space, parent_arch, parent, ops, x, expected=None) -> tuple[float, object]:
    m = space.morphisms()
    child_arch, state = m.apply(parent_arch, parent.state_dict(), ops)
    assert child_arch == m.apply_arch(parent_arch, ops)
    with torch.device("meta"):  # no initialisation: every tensor comes from `state`
        child = space.build(child_arch)
    child.load_state_dict(state, strict=True, assign=True)
    child.eval()
    with torch.no_grad():
        return float((child(x) - (parent(x) if expected is None else expected)).abs().max()), child_arch


def _run_cases(space, nets, rng, gen, extra) -> tuple[int, float, set[str]]:
    cases, worst, names = 0, 0.0, set()
    m = space.morphisms()
    for arch, net in nets:
        x = torch.randn(4, *space.input_shape, generator=gen)
        with torch.no_grad():
            expected = net(x)
        for ops in _sequences(m, arch, rng, extra):
            diff, _ = _max_diff(space, arch, net, ops, x, expected)
            worst = max(worst, diff)
            names |= {o.split("@")[0] for o in ops}
            cases += 1
    return cases, worst, names


def test_exact_mobile_operators_preserve_the_function_on_random_weights():
    torch.set_num_threads(1)
    space = get_space("mobile:mnist")
    rng, gen = random.Random(0), torch.Generator().manual_seed(0)
    nets = []
    for _ in range(10):
        arch = space.sample(rng)
        nets.append((arch, _nontrivial(space.build(arch), space.input_shape, gen)))
    cases, worst, names = _run_cases(space, nets, rng, gen, extra=12)
    assert cases >= 200
    assert names == set(space.morphisms().exact_ops)  # grow, e3e6, k3k5, g2g1 all exercised
    assert worst <= TOL, worst


def test_exact_mobile_operators_preserve_the_function_on_trained_weights():
    torch.set_num_threads(1)
    space = get_space("mobile:mnist")
    rng, gen = random.Random(1), torch.Generator().manual_seed(1)
    nets = []
    for genes in (["k3_e3_g2", "k5_e1", "skip", "k3_e3", "skip", "k3_e1_g2", "k3_e6_g2"],
                  ["k3_e1", "k3_e3", "k5_e3_g2", "k3_e1", "skip", "k3_e3_g2", "skip"]):
        arch = space.make(genes)
        net, result = train_arch(arch, "digits", TrainConfig(epochs=1, data_fraction=0.3, device="cpu"))
        # it learned something (training loss below chance-level cross-entropy, ln 10): not the initial weights
        assert result.train_loss < math.log(10), result
        nets.append((arch, net.eval()))
    cases, worst, _ = _run_cases(space, nets, rng, gen, extra=10)
    assert cases >= 40 and worst <= TOL, worst


def test_nb201_none_to_conv_and_kernel_growth_are_exact():
    torch.set_num_threads(1)
    space = get_space("nb201")
    rng, gen = random.Random(2), torch.Generator().manual_seed(2)
    archs = [space.parse("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|none~2|"),
             space.parse("|none~0|+|nor_conv_1x1~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"),
             space.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")]
    nets = [(a, _nontrivial(space.build(a), space.input_shape, gen)) for a in archs]
    cases, worst, names = _run_cases(space, nets, rng, gen, extra=0)
    assert names == {"conv1", "conv3", "k1k3"} and cases >= 20
    assert worst <= TOL, worst


def test_a_grown_edge_brings_dead_edges_to_life_without_changing_the_output():
    # node 1 is unreachable, so edge 1->2 (a conv) is dead; growing edge 0->1 makes it live: new modules
    space = get_space("nb201")
    arch = space.parse("|none~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|")
    net = _nontrivial(space.build(arch), space.input_shape, torch.Generator().manual_seed(3))
    diff, child = _max_diff(space, arch, net, ["conv1@e0"], torch.randn(2, 3, 32, 32))
    assert str(child).startswith("|nor_conv_1x1~0|") and diff <= TOL
    assert len(space.build(child).state_dict()) > len(net.state_dict())


APPROX = [
    ("mobile:mnist", "k3_e1-k3_e3-k3_e3-k3_e1-k3_e1-k3_e1-k3_e1", "prune@l2", "k3_e1-k3_e3-skip-k3_e1-k3_e1-k3_e1-k3_e1"),
    ("mobile:mnist", "k3_e6-k3_e3-k3_e3-k3_e1-k3_e1-k3_e1-k3_e1", "e6e3@l0", "k3_e3-k3_e3-k3_e3-k3_e1-k3_e1-k3_e1-k3_e1"),
    ("mobile:mnist", "k3_e1-k5_e3_g2-k3_e3-k3_e1-k3_e1-k3_e1-k3_e1", "e3e1@l1", "k3_e1-k5_e1_g2-k3_e3-k3_e1-k3_e1-k3_e1-k3_e1"),
    ("mobile:mnist", "k3_e1-k3_e3-k3_e3-k3_e1_g2-k3_e1-k3_e1-k3_e1", "e1e3@l3", "k3_e1-k3_e3-k3_e3-k3_e3_g2-k3_e1-k3_e1-k3_e1"),
    ("mobile:mnist", "k3_e1-k3_e3-k5_e6-k3_e1-k3_e1-k3_e1-k3_e1", "k5k3@l2", "k3_e1-k3_e3-k3_e6-k3_e1-k3_e1-k3_e1-k3_e1"),
    ("mobile:mnist", "k3_e1-k3_e3-k3_e3-k3_e1-k3_e6-k3_e1-k3_e1", "g1g2@l4", "k3_e1-k3_e3-k3_e3-k3_e1-k3_e6_g2-k3_e1-k3_e1"),
    ("nb201", "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|", "k3k1@e2",
     "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"),
    ("nb201", "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|", "prune@e0",
     "|none~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"),
]


@pytest.mark.parametrize("spec, parent, op, expected", APPROX)
def test_approximate_children_are_valid_trainable_nets(spec, parent, op, expected):
    torch.manual_seed(0)
    space = get_space(spec)
    m = space.morphisms()
    arch = space.parse(parent)
    assert op in m.operators(arch) and not m.is_exact([op])
    net = _nontrivial(space.build(arch), space.input_shape, torch.Generator().manual_seed(4))
    child_arch, state = m.apply(arch, net.state_dict(), [op])
    assert str(child_arch) == expected
    child = space.build(child_arch)
    child.load_state_dict(state, strict=True)
    before = {k: v.clone() for k, v in child.state_dict().items()}
    x, y = torch.randn(16, *space.input_shape), torch.randint(0, space.num_classes, (16,))
    opt = torch.optim.SGD(child.parameters(), lr=0.05)
    child.train()
    loss = nn.functional.cross_entropy(child(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(before[k], v) for k, v in child.state_dict().items() if k.endswith("weight"))


def test_shrinking_keeps_the_hidden_channels_with_the_largest_outgoing_weights():
    space = get_space("mobile:mnist")
    m = space.morphisms()
    arch = space.parse("k3_e6-k3_e3-k3_e3-k3_e1-k3_e1-k3_e1-k3_e1")
    net = space.build(arch)
    proj = net.l0.project.conv.weight  # (16, 96, 1, 1): outgoing weights of the 96 hidden channels
    keep = torch.zeros(96, dtype=torch.bool)
    keep[torch.randperm(96, generator=torch.Generator().manual_seed(0))[:48]] = True
    with torch.no_grad():
        proj[:, ~keep] *= 1e-3  # the other half is unimportant
    _, state = m.apply(arch, net.state_dict(), ["e6e3@l0"])
    kept = state["l0.dw.conv.weight"]  # the child's depthwise kernels, one per hidden channel
    parent_dw = net.l0.dw.conv.weight.detach()
    matches = [int(torch.nonzero((parent_dw == k).all(dim=(1, 2, 3))).flatten()[0]) for k in kept]
    assert sorted(matches) == sorted(torch.nonzero(keep).flatten().tolist())


@pytest.mark.parametrize("op, message", [
    ("grow@l3x", "malformed morphism operator"),
    ("widen@l1", "unknown mobile morphism 'widen'"),
    ("e3e6@l0", "does not apply"),
    ("grow@l9", "have 7 positions"),
])
def test_bad_operators_say_what_is_wrong(op, message):
    space = get_space("mobile:mnist")
    with pytest.raises(ArchError, match=message):
        space.morphisms().apply_arch(space.parse("k3_e1-k3_e1-k3_e1-k3_e1-k3_e1-k3_e1-k3_e1"), [op])


def test_lemonade_on_a_space_without_morphisms_names_the_spaces_that_have_them():
    class Plain(MobileSpace):
        name = "plain"

        def morphisms(self):
            return None

    with pytest.raises(ConfigError, match="Spaces with morphisms: mobile, nb201"):
        make_strategy("lemonade", Plain(), 2)
