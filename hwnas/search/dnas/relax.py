"""Gumbel-softmax relaxation of the architecture logits, FBNet's temperature schedule and the losses."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

TAU0, TAU_DECAY = 5.0, 0.045  # FBNet: tau = 5.0 * exp(-0.045 * epoch)
US_PER_MS = 1000.0


def tau_at(epoch: int, tau0: float = TAU0, decay: float = TAU_DECAY) -> float:
    """Temperature of (0-based) `epoch`: tau0 * exp(-decay * epoch)."""
    return float(tau0 * math.exp(-decay * epoch))


def gumbel_weights(theta: Sequence[torch.Tensor], tau: float, rows: int, generator: torch.Generator,
                   hard: bool) -> list[torch.Tensor]:
    """Per layer relaxed weights softmax((theta + g) / tau), shape (rows, n); one Gumbel draw per row.

    `rows` = batch size gives per-sample noise (the paper); `rows` = 1 shares one draw (one path per
    batch in hard mode, expanded by `MixedOp`). Hard: straight-through one-hot of the argmax
    (value one-hot, gradient of the soft weights). Noise is drawn on the CPU from `generator`
    (reproducible on any device) and computed in log space, so it is finite for any tau > 0.
    """
    out = []
    for t in theta:
        u = torch.rand((rows, t.numel()), generator=generator).clamp_(1e-10, 1.0 - 1e-7)
        g = (-torch.log(-torch.log(u))).to(t.device)
        soft = F.softmax((t.unsqueeze(0) + g) / tau, dim=1)
        if hard:
            one_hot = F.one_hot(soft.detach().argmax(1), t.numel()).to(soft.dtype)
            soft = one_hot - soft.detach() + soft
        out.append(soft)
    return out


def cost_factor(cost: torch.Tensor, unit: float, alpha: float, beta: float) -> torch.Tensor:
    """FBNet's alpha * log(cost)^beta with cost in `unit`s (latency: microseconds), via log1p.

    log(LAT in ms) is negative at our 0.1-0.3 ms and its beta-th power NaN; log1p(LAT in us) is
    > 0 for any positive latency (about log(LAT_us) at 100-300 us), so the term stays finite and
    differentiable.
    """
    return alpha * torch.log1p(cost * unit).pow(beta)


def fbnet_loss(ce: torch.Tensor, cost: torch.Tensor, unit: float, alpha: float = 0.2,
               beta: float = 0.6) -> torch.Tensor:
    """CE * alpha * log(cost)^beta (see `cost_factor` for units)."""
    return ce * cost_factor(cost, unit, alpha, beta)


def budget_loss(ce: torch.Tensor, cost: torch.Tensor, target: float, lam: float) -> torch.Tensor:
    """CE + lambda * max(0, cost / T - 1): no penalty under the budget T (same unit as cost)."""
    return ce + lam * F.relu(cost / target - 1.0)
