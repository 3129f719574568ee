"""Model-guided multi-objective search: a Gaussian process predicts what needs training, optimistic HVI picks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwnas.errors import ConfigError
from hwnas.pareto import crowding_distance, non_dominated_mask
from hwnas.search.strategies.base import Strategy
from hwnas.search.strategies.local import hv_improvement_2d
from hwnas.search.strategies.warp import NormalScores, blas_single_thread
from hwnas.spaces import Arch, SearchSpace


class SurrogateSearch(Strategy):
    """After `init_samples` initial samples, propose the candidate with the largest optimistic
    hypervolume improvement.

    Initial samples: a Latin-hypercube-like design (per gene, its choices in a random order, repeated as
    needed, so every choice of every gene appears equally often); a uniform sample where a row repeats.

    Candidates: `candidates` unexplored archs per ask, a `mutants` share of them one- or two-gene
    mutations of the current non-dominated archs, the rest uniform samples. Objectives whose values
    `preview(arch)` gives (table latency, params, MACs) are used exactly, never predicted; the others
    (what needs training, or every column of a tabular benchmark) are predicted by a Gaussian process
    (`model="gp"`: kernel (1 - `linear`) exp(-(share of differing genes) / lengthscale) + `linear`
    (share of equal genes), lengthscale by marginal likelihood, `noise`) or an ExtraTrees ensemble of
    `trees` trees (`model="trees"`), refit after every `refit` new results. With `warp` (GP only) each
    objective is fitted both as is and as normal scores of its ranks, and per objective the form whose
    leave-one-out predictions rank the better half of the results better (Spearman; the half the front is
    made of) is used, re-decided at every refit (hwnas/search/strategies/warp.py). Each candidate's point is
    mean - `kappa` * standard deviation, in objectives normalized by the told minimum and the current
    front's maximum (the front spans [0, 1]). Two objectives: exact HV gain of that point with the
    reference `reference`; more objectives, or when no candidate gains: additive epsilon to the front.
    Every `extremes`-th model-guided proposal instead minimizes one objective's optimistic value (in
    turn), so the ends of the front, which fix the HV's scale, are found too (0 turns it off).
    With `explore` (GP only; on by default since issue #22, docs/search.md) the search trusts the model as far
    as it ranks the good results: `trust` is that leave-one-out rank correlation among the better half of the
    results, least over the modeled objectives (in the form used); with probability 1 - trust an ask's candidates are
    instead the unexplored one-gene neighbours of one front member drawn by its crowding distance (the
    ends count as the largest finite one), so every part of the front is searched around even where the
    model is wrong about it; the acquisition still picks among them.
    When the problem previews values, only `previewed` random candidates of the pool are previewed
    and scored per ask (a preview may build the network).

    Inert genes (issue #22, docs/search.md): where the space has genes that cannot affect the network
    (`SearchSpace.effective`: nb201's dead edges), the model's features are the one-hot genes and, beside
    them, the one-hot effective genes (dead edges as `none`), so the kernel sees that archs computing the
    same function are alike; and every candidate is replaced by its effective arch (the same function
    without the dead ops: equal accuracy, no higher cost), so no query trains weights that cannot reach
    the output. The initial design stays as drawn.
    """

    name = "surrogate"

    def __init__(
        self, space: SearchSpace, num_objectives: int, seed: int = 0, *,
        init_samples: int = 6, candidates: int = 300, mutants: float = 0.9, trees: int = 12,
        refit: int = 1, kappa: float = 1.0, model: str = "gp", noise: float = 0.01,
        reference: float = 2.0, linear: float = 0.5, extremes: int = 10, previewed: int = 48,
        warp: bool = True, explore: bool = True,
    ) -> None:
        super().__init__(space, num_objectives, seed)
        if init_samples < 2 or candidates < 1 or not 0 <= mutants <= 1 or trees < 1 or refit < 1 or kappa < 0 \
                or model not in ("gp", "trees") or noise <= 0:
            raise ConfigError(
                "surrogate needs init_samples >= 2, candidates >= 1, 0 <= mutants <= 1, trees >= 1, refit >= 1, "
                "kappa >= 0, model gp|trees, noise > 0"
            )
        self.init_samples, self.candidates, self.mutants = int(init_samples), int(candidates), float(mutants)
        self.trees, self.refit, self.kappa = int(trees), int(refit), float(kappa)
        self.model, self.noise, self.reference = model, float(noise), float(reference)
        self.linear, self.extremes, self.previewed = float(linear), int(extremes), int(previewed)
        self.warp, self.explore = bool(warp), bool(explore)
        self.trust = 1.0  # the model's leave-one-out rank correlation among the good results (see explore)
        self.n_explored = 0
        self._warps: list[NormalScores | None] = []  # per modeled objective: its warp, None when fitted as is
        self.warped_share: list[float] = []  # per refit, the share of objectives fitted warped
        self.n_model = 0
        self.np_rng = np.random.default_rng(self.seed)
        self.card = np.array([len(c) for c in space.choices], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.card)[:-1]])
        # a space whose genes can be inert (a dead edge): the model sees the effective genes beside the raw ones
        self._inert = type(space).effective is not SearchSpace.effective
        self._effective_cache: dict[bytes, np.ndarray] = {}
        radix = [1]
        for c in self.card[:0:-1]:  # mixed radix in Python ints: a large space's count overflows int64
            radix.insert(0, radix[0] * int(c))
        self.radix = np.array(radix, dtype=object)
        self._index = [{g: k for k, g in enumerate(c)} for c in space.choices]
        self._known: set[int] = set()  # keys of every arch proposed or told (never proposed again)
        self._model = None
        self._init_design: np.ndarray | None = None
        self._fit_at = -1
        self._exact_cache: dict[int, np.ndarray] = {}
        self._previewed: bool | None = None
        self._code_cache: dict[str, np.ndarray] = {}
        self._front: set[str] = set()  # non-dominated among the results seen by the last ask
        self._seen: set[str] = set()
        self.n_proposed = 0

    # -- encoding -------------------------------------------------------------------------------
    def _indices(self, genes: Sequence[str]) -> np.ndarray:
        """Each gene's index among its position's choices."""
        return np.array([self._index[i][g] for i, g in enumerate(genes)], dtype=np.int64)

    def _codes(self, arch: Arch, arch_id: str | None = None) -> np.ndarray:
        key = arch_id or arch.id
        row = self._code_cache.get(key)
        if row is None:
            row = self._indices(arch.genes)
            self._code_cache[key] = row
        return row

    @property
    def _features(self) -> int:
        """The genes the kernel compares: each gene and, where genes can be inert, each effective gene."""
        return len(self.card) * (2 if self._inert else 1)

    def _onehot(self, codes: np.ndarray) -> np.ndarray:
        """One-hot genes, and where genes can be inert, the one-hot effective genes beside them."""
        width = int(self.card.sum())
        out = np.zeros((len(codes), width * (2 if self._inert else 1)), dtype=float)
        out[np.arange(len(codes))[:, None], self.offsets[None, :] + codes] = 1.0
        if self._inert:
            eff = np.stack([self._effective_codes(row) for row in codes])
            out[np.arange(len(codes))[:, None], width + self.offsets[None, :] + eff] = 1.0
        return out

    def _effective_codes(self, codes: np.ndarray) -> np.ndarray:
        key = codes.tobytes()
        row = self._effective_cache.get(key)
        if row is None:
            row = self._indices(self.space.effective([c[int(i)] for c, i in zip(self.space.choices, codes)]))
            self._effective_cache[key] = row
        return row

    def _propose_codes(self, codes: np.ndarray) -> Arch:
        return self._propose(self.space.decode([int(c) for c in codes]))

    def _key(self, codes: np.ndarray) -> int:
        """The arch's index in the space (an exact Python int)."""
        return int(codes.astype(object) @ self.radix)

    def _propose(self, arch: Arch) -> Arch:
        self._known.add(self._key(self._codes(arch)))
        return super()._propose(arch)

    def _on_tell(self, arch: Arch, values, first: bool) -> None:
        # a told arch may never have been proposed here (a resumed run replays the journal's results)
        self._known.add(self._key(self._codes(arch)))

    # -- exact (previewed) objectives ---------------------------------------------------------------
    def _exact(self, key: int, codes: np.ndarray) -> np.ndarray:
        """Minimized previewed values (NaN where the objective needs training) of one arch."""
        row = self._exact_cache.get(key)
        if row is None:
            arch = self.space.decode([int(c) for c in codes])
            natural = self.preview(arch)
            row = np.array([
                (-1.0 if o.direction == "max" else 1.0) * float(natural[o.name]) if o.name in natural else np.nan
                for o in self.objectives
            ], dtype=float) if self.objectives else np.full(self.num_objectives, np.nan)
            self._exact_cache[key] = row
        return row

    # -- candidates ----------------------------------------------------------------------------
    def _design(self) -> np.ndarray:
        """The `init_samples` initial codes: per gene, its choices in random order (repeated as needed), so
        every choice of every gene appears equally often (a Latin-hypercube-like design)."""
        if self._init_design is None:
            n = self.init_samples
            self._init_design = np.stack([
                np.concatenate([self.np_rng.permutation(int(c)) for _ in range(-(-n // int(c)))])[:n] for c in self.card
            ], axis=1)
        return self._init_design

    def _pool(self, front_codes: np.ndarray) -> np.ndarray:
        n = self.candidates
        n_mut = int(round(n * self.mutants)) if len(front_codes) else 0
        d = len(self.card)
        rand = (self.np_rng.random((n - n_mut, d)) * self.card).astype(np.int64)
        mut = front_codes[self.np_rng.integers(len(front_codes), size=n_mut)] if n_mut else rand[:0]
        for _ in range(2):  # one gene each, a second one for half of them
            rows = np.arange(n_mut) if _ == 0 else np.flatnonzero(self.np_rng.random(n_mut) < 0.5)
            pos = self.np_rng.integers(d, size=len(rows))
            step = 1 + (self.np_rng.random(len(rows)) * (self.card[pos] - 1)).astype(np.int64)
            mut[rows, pos] = (mut[rows, pos] + step) % self.card[pos]
        return self._unexplored(np.concatenate([mut, rand]))

    def _unexplored(self, rows: np.ndarray) -> np.ndarray:
        """The distinct unexplored archs among `rows`, each replaced by its effective arch where genes can be
        inert (the same function without the dead ops: never spend a query on weights that cannot reach
        the output)."""
        if self._inert and len(rows):
            rows = np.stack([self._effective_codes(r) for r in rows])
        rows = np.unique(rows, axis=0)
        return rows[np.array([self._key(r) not in self._known for r in rows], dtype=bool)]

    # -- model -----------------------------------------------------------------------------------
    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        if self.model == "trees":
            from sklearn.ensemble import ExtraTreesRegressor

            model = ExtraTreesRegressor(
                n_estimators=self.trees, min_samples_leaf=1, max_features=0.5, bootstrap=True,
                random_state=int(self.np_rng.integers(2**31 - 1)),
            )
            model.fit(X, Y)
            self._model = model
            return
        from scipy.linalg import solve_triangular

        # GP, kernel exp(-(genes that differ) / (genes * lengthscale)); lengthscale by marginal likelihood
        mu, sd = Y.mean(axis=0), Y.std(axis=0) + 1e-9
        Yn = (Y - mu) / sd
        S = (X @ X.T) / self._features
        best = None
        for ls in (0.05, 0.1, 0.2, 0.4, 0.8):
            L = np.linalg.cholesky(self._kernel(S, ls) + self.noise * np.eye(len(X)))
            beta = solve_triangular(L, Yn, lower=True)
            nll = 0.5 * float((beta * beta).sum()) + Y.shape[1] * float(np.log(np.diag(L)).sum())
            if best is None or nll < best[0]:
                best = (nll, ls, L)
        _, ls, L = best  # the inverse only for the chosen lengthscale
        Linv = solve_triangular(L, np.eye(len(X)), lower=True)
        self._model = (X, ls, Linv, Linv.T @ (Linv @ Yn), mu, sd)

    def _fit_outputs(self, X: np.ndarray, Y: np.ndarray) -> None:
        """Fit the model to each objective both as is and warped to normal scores (one GP, shared kernel),
        per objective keep the form whose leave-one-out predictions rank the better half of the results better
        (the half the front is made of), and set `trust`: that rank correlation, least over the objectives."""
        if self.model != "gp":
            self._fit(X, Y)
            self._warps = []
            return
        m = Y.shape[1]
        warps = [NormalScores(y) for y in Y.T] if self.warp else []
        both = np.hstack([Y, np.stack([w.scores for w in warps], axis=1)]) if warps else Y
        self._fit(X, both)
        rho = _good_half_spearman(both, self._loo(both))
        self._warps = [w if rho[m + j] > rho[j] else None for j, w in enumerate(warps)]
        if warps:
            self.warped_share.append(np.mean([w is not None for w in self._warps]))
        used = rho[[m + j if self._warps and self._warps[j] is not None else j for j in range(m)]]
        used = used[np.isfinite(used)]  # NaN: the better half is all tied, nothing to rank
        self.trust = float(np.clip(used.min(), 0.0, 1.0)) if len(used) else 1.0

    def _loo(self, Y: np.ndarray) -> np.ndarray:
        """The GP's closed-form leave-one-out means of each column of Y (in its normalized units)."""
        _, _, Linv, alpha, mu, sd = self._model
        return (Y - mu) / sd - alpha / (Linv * Linv).sum(axis=0)[:, None]

    def _front_neighbours(self, front_codes: np.ndarray, Zf: np.ndarray) -> np.ndarray | None:
        """The unexplored one-gene neighbours of one front member drawn by crowding distance (the ends count
        as the largest finite one); None when every front member's neighbours are explored."""
        crowd = crowding_distance(Zf)
        finite = crowd[np.isfinite(crowd)]
        top = finite.max() if len(finite) and finite.max() > 0 else 1.0
        weight = np.where(np.isfinite(crowd), crowd, top) + 1e-12
        for i in self.np_rng.choice(len(front_codes), size=len(front_codes), replace=False, p=weight / weight.sum()):
            nb = self._unexplored(self._neighbours(front_codes[i]))
            if len(nb):
                return nb
        return None

    def _neighbours(self, codes: np.ndarray) -> np.ndarray:
        """Every arch that differs from `codes` in exactly one gene."""
        out = []
        for g, c in enumerate(self.card):
            for step in range(1, int(c)):
                row = codes.copy()
                row[g] = (row[g] + step) % c
                out.append(row)
        return np.array(out, dtype=np.int64)

    def _kernel(self, S: np.ndarray, ls: float) -> np.ndarray:
        """Covariance from the share S of equal genes: (1 - linear) exp(-(1 - S) / ls) + linear S."""
        return (1.0 - self.linear) * np.exp(-(1.0 - S) / ls) + self.linear * S

    def _predict(self, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.model == "trees":
            per_tree = np.stack([t.tree_.predict(Xc.astype(np.float32))[:, :, 0] for t in self._model.estimators_])  # (T, n, k)
            return per_tree.mean(axis=0), per_tree.std(axis=0)
        X, ls, Linv, alpha, mu, sd = self._model
        Ks = self._kernel((Xc @ X.T) / self._features, ls)
        V = Linv @ Ks.T
        var = np.clip(1.0 - (V * V).sum(axis=0), 0.0, None)
        return mu + (Ks @ alpha) * sd, np.sqrt(var)[:, None] * sd[None, :]

    def _front_mask(self, ids: list[str], F: np.ndarray) -> np.ndarray:
        """Non-dominated rows, updated from the last front and the new results (dominated stays dominated)."""
        check = np.array([i in self._front or i not in self._seen for i in ids])
        mask = np.zeros(len(ids), dtype=bool)
        mask[check] = non_dominated_mask(F[check])
        self._seen.update(ids)
        self._front = {i for i, m in zip(ids, mask) if m}
        return mask

    def ask(self) -> Arch | None:
        with blas_single_thread():  # the GP's small products: BLAS threads cost more than they give
            return self._ask()

    def _ask(self) -> Arch | None:
        self.n_proposed += 1
        ids, F = self.feasible()
        n_known = len(self._known)
        if n_known < self.init_samples:
            row = self._design()[n_known]
            if self._key(row) not in self._known:
                return self._propose_codes(row)
        if n_known < self.init_samples or len(ids) < 2:
            return self._propose(self._random())
        codes = np.stack([self._codes(self.archs[i], i) for i in ids])
        front = self._front_mask(ids, F)
        lo, hi = F.min(axis=0), F[front].max(axis=0)
        scale = np.where(hi > lo, hi - lo, 1.0)
        Z = (F - lo) / scale
        explore = self.explore and self.np_rng.random() >= self.trust  # trust: set by the last fit
        pool = self._front_neighbours(codes[front], Z[front]) if explore else None
        explore = pool is not None
        pool = pool if explore else self._pool(codes[front])
        if not len(pool):
            return self._propose(self._random())
        if self._previewed is None:  # which objectives preview gives is a property of the problem
            self._previewed = bool(np.isfinite(self._exact(self._key(codes[0]), codes[0])).any())
        if self._previewed:  # a preview may build the network (params, MACs): score a random subset
            pool = pool[self.np_rng.permutation(len(pool))[:self.previewed]]
        exact = np.stack([self._exact(self._key(c), c) for c in pool]) if self._previewed \
            else np.full((len(pool), self.num_objectives), np.nan)
        modeled = np.flatnonzero(np.isnan(exact).any(axis=0))
        P = (exact - lo) / scale
        if len(modeled):
            if self._model is None or len(ids) - self._fit_at >= self.refit:
                self._fit_outputs(self._onehot(codes), np.clip(Z[:, modeled], None, 3.0))
                self._fit_at = len(ids)
            mean, std = self._predict(self._onehot(pool))
            opt, m = mean - self.kappa * std, len(modeled)
            P[:, modeled] = np.stack([w.inverse(opt[:, m + j]) if w else opt[:, j] for j, w in enumerate(self._warps)],
                                     axis=1) if self._warps else opt
        Zf = Z[front]
        self.n_model += 1
        self.n_explored += explore
        if self.extremes and not explore and self.n_model % self.extremes == 0:  # one objective's extreme, in turn
            k = (self.n_model // self.extremes) % self.num_objectives
            return self._propose_codes(pool[int(np.argmin(P[:, k]))])
        eps = np.min(np.max(P[:, None, :] - Zf[None, :, :], axis=2), axis=1)
        score = eps
        if self.num_objectives == 2:
            gain = hv_improvement_2d(P, Zf, self.reference)
            if gain.max() > 0:
                score = -gain
        best = np.flatnonzero(score <= score.min() + 1e-12)
        return self._propose_codes(pool[int(best[self.rng.randrange(len(best))])])

    def params(self) -> dict:
        return {
            "init_samples": self.init_samples, "candidates": self.candidates, "mutants": self.mutants,
            "trees": self.trees, "refit": self.refit, "kappa": self.kappa, "model": self.model,
            "noise": self.noise, "reference": self.reference,
            "linear": self.linear, "extremes": self.extremes,
            "previewed": self.previewed, "warp": self.warp, "explore": self.explore,
        }


def _good_half_spearman(Y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per column, the Spearman correlation of Y and `predicted` among the better half of Y (minimized: the
    rows at or below the column's median); NaN where those rows are all tied."""
    out = np.full(Y.shape[1], np.nan)
    for c in range(Y.shape[1]):
        good = Y[:, c] <= np.median(Y[:, c])
        if np.ptp(Y[good, c]) > 0:
            out[c] = _spearman(Y[good, c:c + 1], predicted[good, c:c + 1])[0]
    return out


def _spearman(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each column of A with the same column of B."""
    from scipy.stats import rankdata

    r, q = rankdata(A, axis=0), rankdata(B, axis=0)
    r, q = r - r.mean(axis=0), q - q.mean(axis=0)
    return (r * q).sum(axis=0) / np.sqrt((r * r).sum(axis=0) * (q * q).sum(axis=0) + 1e-12)
