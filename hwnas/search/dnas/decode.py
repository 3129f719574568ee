"""Budget-constrained decode: the most probable arch under theta whose table cost lies just below a budget.

hwnas's addition beside FBNet (which exports the per-layer mode of theta, or samples): a budget that acts
on the *expected* cost can be met by a mixture whose mode is far off, so the exported arch is chosen as

    argmax_arch  sum_l log p(l, choice_l)   s.t.   floor * T <= cost(arch) <= T

by an exact dynamic program over layers (state: the cost so far in `bins` steps of T / bins, and the
tensor's layout when the table counts layout switches). When no arch lies in the window it relaxes to
cost <= T, and when the budget is below the fastest arch it returns the fastest arch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hwnas.search.dnas.cost import CostTable

DECODES = ("budget", "mode")


def _moves(cost: CostTable, layer: int, layout: bool) -> list[tuple[float, bool]]:
    """Per candidate of `layer` entered in `layout`: (cost added, layout after it)."""
    sw, row = cost.switches, cost.per_layer[layer]
    if sw is None:
        return [(c, False) for c in row]
    out = []
    for c, lay in zip(row, sw.layouts[layer]):
        out.append((c, layout) if lay is None else (c + sw.at_layer[layer] * (lay[0] != layout), lay[1]))
    return out


def _head(cost: CostTable, layout: bool) -> float:
    sw = cost.switches
    return 0.0 if sw is None else sw.at_head * (sw.head_in != layout)


def budget_decode(cost: CostTable, log_probs: Sequence[Sequence[float]], budget: float, floor: float = 0.85,
                  bins: int = 2000) -> list[int]:
    """Per layer the candidate index of the most probable arch with cost in [floor * budget, budget]
    (else <= budget, else the fastest arch); exact up to the cost grid of budget / bins per layer."""
    step = budget / bins
    start = bool(cost.switches.stem_out) if cost.switches is not None else False
    best = {start: np.full(bins + 1, -np.inf)}
    first = round(cost.fixed / step)
    if first > bins:
        return cost.fastest()
    best[start][first] = 0.0
    back: list[dict[bool, tuple[np.ndarray, np.ndarray]]] = []  # per layer: new layout -> (prev layout, choice)
    for layer, lp in enumerate(log_probs):
        nxt: dict[bool, np.ndarray] = {}
        ptr: dict[bool, tuple[np.ndarray, np.ndarray]] = {}
        for layout, score in best.items():
            for i, (c, out) in enumerate(_moves(cost, layer, layout)):
                k = round(c / step)
                if k > bins or not math.isfinite(lp[i]):
                    continue
                cand = np.full(bins + 1, -np.inf)
                cand[k:] = score[:bins + 1 - k] + lp[i]
                cur = nxt.setdefault(out, np.full(bins + 1, -np.inf))
                prev, choice = ptr.setdefault(out, (np.zeros(bins + 1, bool), np.full(bins + 1, -1)))
                better = cand > cur
                cur[better], prev[better], choice[better] = cand[better], layout, i
        best, back = nxt, back + [ptr]
    return _pick(cost, best, back, budget, floor, step)


def _pick(cost: CostTable, best: dict[bool, np.ndarray], back: list, budget: float, floor: float,
          step: float) -> list[int]:
    """The best end state in the window (else under the budget), traced back to per-layer choices."""
    for lo in (floor * budget, 0.0):
        found = None
        for layout, score in best.items():
            h = _head(cost, layout)
            for b in np.argsort(-score):
                if not np.isfinite(score[b]):
                    break
                if lo <= b * step + h <= budget:
                    if found is None or score[b] > found[0]:
                        found = (score[b], layout, int(b))
                    break
        if found is not None:
            break
    if found is None:
        return cost.fastest()
    _, layout, b = found
    path = []
    for layer in range(len(back) - 1, -1, -1):
        prev, choice = back[layer][layout]
        i, before = int(choice[b]), bool(prev[b])
        path.append(i)
        c, _ = _moves(cost, layer, before)[i]
        b, layout = b - round(c / step), before
    return path[::-1]
