"""Helpers of the model-guided search: the normal-scores output warp and the one-BLAS-thread guard."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

_CONTROLLER: Any = None


class NormalScores:
    """Monotone warp of one objective's results to normal scores (Phi^-1 of their mid-ranks), and back.

    A GP fitted to the scores sees every landscape with the same marginal: outliers (an arch that fails to
    learn) no longer set the scale, and a landscape where most archs score near the best is spread out.
    `inverse` maps predicted scores back by interpolating between the results; beyond the best and worst
    result it continues the line through the outer tenth of them (so optimism can pass the best result).
    """

    def __init__(self, values: np.ndarray) -> None:
        from scipy.stats import norm, rankdata

        y = np.asarray(values, dtype=float)
        self.scores = norm.ppf((rankdata(y) - 0.5) / len(y))
        self._x, first = np.unique(self.scores, return_index=True)
        self._y = y[first]
        self._k = min(len(self._x) - 1, max(1, len(self._x) // 10))

    def inverse(self, scores: np.ndarray) -> np.ndarray:
        x, y, k = self._x, self._y, self._k
        if len(x) < 2:
            return np.full(len(scores), y[0])
        out = np.interp(scores, x, y)
        lo, hi = scores < x[0], scores > x[-1]
        out[lo] = y[0] + (scores[lo] - x[0]) * (y[k] - y[0]) / (x[k] - x[0])
        out[hi] = y[-1] + (scores[hi] - x[-1]) * (y[-1] - y[-1 - k]) / (x[-1] - x[-1 - k])
        return out


def blas_single_thread() -> AbstractContextManager:
    """Limit BLAS/OpenMP to one thread: the search's matrices are small, threads only spin (23x CPU)."""
    global _CONTROLLER
    try:
        if _CONTROLLER is None:
            import scipy.linalg  # noqa: F401  - load scipy's own BLAS first: the controller sees loaded libraries only
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()
        return _CONTROLLER.limit(limits=1)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return nullcontext()
