"""FBNet-style differentiable NAS: Gumbel-softmax supernet, latency-table cost, target sweep (`method: fbnet`)."""

from hwnas.search.dnas.cost import COSTS, CostTable, check_table, latency_cost, make_cost, static_cost
from hwnas.search.dnas.decode import budget_decode
from hwnas.search.dnas.relax import budget_loss, cost_factor, fbnet_loss, gumbel_weights, tau_at
from hwnas.search.dnas.searcher import DerivedArchs, FBNetParams, FBNetSearcher, derive, path_model
from hwnas.search.dnas.trainer import (
    DnasDivergedError,
    SupernetConfig,
    SupernetResult,
    Target,
    search_supernet,
)

__all__ = [
    "COSTS", "CostTable", "DerivedArchs", "DnasDivergedError", "FBNetParams", "FBNetSearcher", "SupernetConfig",
    "SupernetResult", "Target", "budget_decode", "budget_loss", "check_table", "cost_factor", "derive", "fbnet_loss",
    "gumbel_weights", "latency_cost", "make_cost", "path_model", "search_supernet", "static_cost", "tau_at",
]
