"""Exactness of the network morphisms: max |child(x) - parent(x)| over random (arch, exact operators, input) cases.

Usage: python benchmarks/lemonade_morphisms.py [--cases 200] [--space mobile:mnist] [--seed 0] [--json]
Parents have random weights with non-trivial BatchNorm (affine parameters perturbed, running statistics
estimated on random inputs); each case applies 1-3 random exact operators and compares eval-mode outputs.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch
from torch import nn

from hwnas.spaces import get_space
from hwnas.train.trainer import recalibrate_bn


def _parent(space, arch, gen: torch.Generator) -> nn.Module:
    net = space.build(arch)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.weight.shape, generator=gen)
            m.bias.data = torch.randn(m.bias.shape, generator=gen) * 0.3
    recalibrate_bn(net, torch.randn(64, *space.input_shape, generator=gen) + 0.3)
    return net.eval()


def measure(spec: str, cases: int, seed: int) -> dict:
    """Run `cases` random cases on space `spec`; max abs difference overall and per operator."""
    space = get_space(spec)
    morphisms = space.morphisms()
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    worst: dict[str, float] = {}
    n, start = 0, time.perf_counter()
    while n < cases:
        arch = space.sample(rng)
        parent = _parent(space, arch, gen)
        x = torch.randn(4, *space.input_shape, generator=gen)
        with torch.no_grad():
            expected = parent(x)
        for _ in range(10):  # 10 cases per parent
            ops, cur = [], arch
            for _ in range(rng.randint(1, 3)):
                exact = [o for o in morphisms.operators(cur) if morphisms.is_exact([o])]
                if not exact:
                    break
                ops.append(rng.choice(exact))
                cur = morphisms.apply_arch(cur, ops[-1:])
            child_arch, state = morphisms.apply(arch, parent.state_dict(), ops)
            with torch.device("meta"):
                child = space.build(child_arch)
            child.load_state_dict(state, strict=True, assign=True)
            with torch.no_grad():
                diff = float((child.eval()(x) - expected).abs().max())
            for op in ops:
                name = op.split("@")[0]
                worst[name] = max(worst.get(name, 0.0), diff)
            n += 1
            if n >= cases:
                break
    return {"space": spec, "cases": n, "max_abs_diff": max(worst.values(), default=0.0),
            "max_abs_diff_by_operator": dict(sorted(worst.items())), "wall_s": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--space", default="mobile:mnist", help="mobile:mnist, mobile:cifar, nb201, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = measure(args.space, args.cases, args.seed)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['space']}: {out['cases']} cases, max |child(x) - parent(x)| = {out['max_abs_diff']:.3g}")
        for name, d in out["max_abs_diff_by_operator"].items():
            print(f"  {name:<6} {d:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
