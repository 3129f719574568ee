"""The latency model written once: numpy table predictions and the torch DNAS cost agree term by term."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.latency import Calibration, LatencySource, LatencyTable, LatencyTableError, load_predictor
from hwnas.latency.model import TERMS
from hwnas.search.dnas import latency_cost, make_cost
from hwnas.spaces import get_space

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "latency_tables" / "ort-cpu-1t" / "mobile-mnist.json"
SPACE = get_space("mobile:mnist")


@pytest.fixture(scope="module")
def shipped() -> LatencyTable:
    return LatencyTable.load(TABLE)


def _onehot(idx: list[int]) -> list[torch.Tensor]:
    return [torch.nn.functional.one_hot(torch.tensor(i), len(c)).double() for i, c in zip(idx, SPACE.choices)]


def _only(term: str, value: float) -> Calibration:
    """A calibration whose only non-zero coefficient is `term`."""
    zero = {t.coef: 0.0 for t in TERMS}
    return Calibration(**{**zero, term: value}, n=3)


@pytest.mark.parametrize("term", [t.coef for t in TERMS])
def test_each_term_costs_the_same_in_numpy_and_torch(shipped, term):
    table = copy.copy(shipped)
    table.calibration = _only(term, 0.37)
    table.drift_factor = 1.07
    cost = latency_cost(SPACE, table)
    archs = [SPACE.sample(s) for s in range(40)]
    predicted = table.predict_many_ms(archs)
    torch_cost = np.array([float(cost.expected(_onehot(SPACE.encode(a)))) for a in archs])
    np.testing.assert_allclose(torch_cost, predicted, rtol=1e-9, atol=1e-12)
    assert np.ptp(predicted) > 0 or term == "offset_ms", f"the shipped table gives {term} no variation to compare"


def test_the_expected_cost_is_linear_within_a_layer(shipped):
    """With the other layers fixed, mixing two candidates of one layer (skips included, which pass the layout
    on) costs the probability-weighted mean of the two archs' numpy predictions."""
    cost = latency_cost(SPACE, shipped)
    base = SPACE.encode(SPACE.sample(11))
    for layer, row in enumerate(SPACE.choices):
        i, j = 0, len(row) - 1
        a, b = list(base), list(base)
        a[layer], b[layer] = i, j
        probs = _onehot(base)
        probs[layer] = torch.zeros(len(row), dtype=torch.float64)
        probs[layer][i], probs[layer][j] = 0.3, 0.7
        mean = 0.3 * shipped.predict_ms(SPACE.decode(a)) + 0.7 * shipped.predict_ms(SPACE.decode(b))
        assert float(cost.expected(probs)) == pytest.approx(mean, rel=1e-9)


def test_tables_and_fitted_tables_are_latency_sources(shipped, tmp_path):
    from hwnas.latency.fit import fit_table

    space = get_space("nb201:cifar100")
    archs = [space.sample(s) for s in range(12)]
    nb201 = LatencyTable.load(REPO / "latency_tables" / "ort-cpu-1t" / "nb201-cifar100.json")
    y = 1.3 * nb201.predict_many_ms(archs) + 0.2
    fitted, _ = fit_table([str(a) for a in archs], y, space="nb201:cifar100", train=8, prior=nb201, dead_edges="free")
    loaded = load_predictor(fitted.save(tmp_path / "fit.json"))
    for source in (shipped, loaded):
        assert isinstance(source, LatencySource)
        sample = [get_space(source.space).sample(s) for s in range(5)]
        assert list(source.predict_many_ms(sample)) == [source.predict_ms(a) for a in sample]
        assert source.fingerprint()["sha256"] == source.sha256 and source.describe()
    with pytest.raises(LatencyTableError, match="per-block latency table, not FittedTable"):
        make_cost("latency_ms", space, loaded)


def test_a_calibration_term_missing_from_the_file_reads_as_zero(shipped):
    data = shipped.to_dict()
    del data["calibration"]["switch_ms_per_kelem"]
    table = LatencyTable.from_dict(data)
    assert table.calibration == replace(shipped.calibration, switch_ms_per_kelem=0.0)
