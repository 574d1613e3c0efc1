"""Candidate retrieval with ``implicit``: ALS (default), BPR or item-kNN (cosine).

One interface in front of the three, as implicit does it: :meth:`Candidates.fit` on a
users x items CSR matrix (implicit 0.7's orientation), then :meth:`Candidates.recommend`
for a known user or :meth:`Candidates.recommend_history` for a history given by hand
(a new user, or a user whose history grew since training). The DQN then ranks the few
hundred candidates instead of the whole catalog.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from recommender.errors import ConfigError

log = logging.getLogger(__name__)

KINDS = ("als", "bpr", "cosine")


@dataclass(frozen=True)
class CandidateConfig:
    """Settings of the retrieval model."""

    kind: str = "als"
    """``als`` (implicit AlternatingLeastSquares), ``bpr`` or ``cosine`` (item-kNN)."""
    factors: int = 64
    """Latent factors of ALS/BPR."""
    regularization: float = 0.01
    """L2 regularisation of ALS/BPR."""
    alpha: float = 1.0
    """ALS confidence scale. implicit 0.7 uses ``alpha * weight`` itself as the confidence of an
    observed pair (unobserved pairs have confidence 1, preference 0); a negative weight means
    "disliked" (preference 0 with confidence ``alpha * |weight|``)."""
    iterations: int = 15
    """ALS sweeps (BPR: epochs, 100 is implicit's default)."""
    neighbours: int = 20
    """Item-kNN: neighbours kept per item."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"candidate model {self.kind!r} is not known (allowed: {', '.join(KINDS)})")
        if not 1 <= self.factors <= 1024:
            raise ConfigError(f"factors {self.factors} is out of range (allowed: 1-1024)")
        if not 1 <= self.iterations <= 1000:
            raise ConfigError(f"iterations {self.iterations} is out of range (allowed: 1-1000)")


def _single_thread() -> None:
    # implicit warns (and runs slower) when OpenBLAS uses several threads per ALS solve.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, "blas")
    except ImportError:  # pragma: no cover - threadpoolctl ships with scipy's stack
        pass


class Candidates:
    """A fitted implicit model. Item indices are the columns of the matrix it was fitted on."""

    def __init__(self, config: CandidateConfig = CandidateConfig()) -> None:
        self.config = config
        self.model: Any = None
        self.n_items = 0

    def fit(self, user_items: csr_matrix, show_progress: bool = False) -> Candidates:
        """Fit on ``user_items`` (CSR ``[n_users, n_items]``, weights >= 0; users x items)."""
        _single_thread()
        c = self.config
        if c.kind == "als":
            from implicit.cpu.als import AlternatingLeastSquares

            self.model = AlternatingLeastSquares(factors=c.factors, regularization=c.regularization, alpha=c.alpha,
                                                 iterations=c.iterations, random_state=c.seed, num_threads=1)
        elif c.kind == "bpr":
            from implicit.cpu.bpr import BayesianPersonalizedRanking

            self.model = BayesianPersonalizedRanking(factors=c.factors, regularization=c.regularization,
                                                     iterations=c.iterations, random_state=c.seed, num_threads=1)
        else:
            from implicit.nearest_neighbours import CosineRecommender

            self.model = CosineRecommender(K=c.neighbours, num_threads=1)
        with warnings.catch_warnings():
            # implicit's CosineRecommender normalises our CSR into a COO matrix itself, then warns about it
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            self.model.fit(csr_matrix(user_items, dtype=np.float32), show_progress=show_progress)
        self.n_items = user_items.shape[1]
        return self

    @property
    def item_factors(self) -> np.ndarray | None:
        """float32 ``[n_items, factors]`` (ALS/BPR; BPR's last column is the item bias), or None for kNN."""
        f = getattr(self.model, "item_factors", None)
        return None if f is None else np.asarray(f, np.float32)

    @property
    def user_factors(self) -> np.ndarray | None:
        """float32 ``[n_users, factors]`` (ALS/BPR), or None for kNN."""
        f = getattr(self.model, "user_factors", None)
        return None if f is None else np.asarray(f, np.float32)

    def recommend(self, user: int, user_row: csr_matrix, n: int, filter_seen: bool = True,
                  filter_items: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` items ``(ids int64 [n], scores float32 [n])`` for a user seen in training.

        ``user_row`` is that user's CSR row ``[1, n_items]`` (used to filter seen items).
        """
        ids, scores = self.model.recommend(user, user_row, N=n, filter_already_liked_items=filter_seen,
                                           filter_items=filter_items)
        return np.asarray(ids, np.int64), np.asarray(scores, np.float32)

    def recommend_history(self, user_row: csr_matrix, n: int, filter_seen: bool = True,
                          filter_items: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` items for a history given as a CSR row ``[1, n_items]`` (folded in, not trained on)."""
        if self.config.kind == "cosine":
            return self.recommend(0, user_row, n, filter_seen, filter_items)
        ids, scores = self.model.recommend(0, user_row, N=n, filter_already_liked_items=filter_seen,
                                           filter_items=filter_items, recalculate_user=True)
        return np.asarray(ids, np.int64), np.asarray(scores, np.float32)

    def user_vector(self, user_row: csr_matrix) -> np.ndarray:
        """float32 ``[factors]``: the ALS/BPR user factor of a history row ``[1, n_items]`` (folded in)."""
        return np.asarray(self.model.recalculate_user(0, user_row), np.float32).ravel()

    def fold_in(self, user_rows: csr_matrix) -> np.ndarray:
        """float32 ``[n, factors]``: ALS/BPR user factors of ``n`` history rows (CSR ``[n, n_items]``),
        solved against the trained item factors (implicit's ``recalculate_user``; nothing refit)."""
        n = user_rows.shape[0]
        return np.asarray(self.model.recalculate_user(np.arange(n), csr_matrix(user_rows, dtype=np.float32)),
                          np.float32).reshape(n, -1)

    def score_all(self, users: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """float32 ``[len(users), n_items]`` scores of every item for known users (for full ranking)."""
        if self.config.kind == "cosine":
            sim = self.model.similarity  # [n_items, n_items] sparse
            return np.asarray((user_items[users] @ sim).todense(), np.float32)
        uf = self.user_factors[users]
        return uf @ self.item_factors.T

    def state(self) -> dict[str, Any]:
        """Arrays and config to save (ALS/BPR only)."""
        return {"config": asdict(self.config), "user_factors": self.user_factors, "item_factors": self.item_factors}

    @classmethod
    def from_factors(cls, config: CandidateConfig, user_factors: np.ndarray, item_factors: np.ndarray) -> Candidates:
        """Rebuild a fitted ALS model from saved factors (no refit)."""
        from implicit.cpu.als import AlternatingLeastSquares

        _single_thread()
        c = cls(config)
        m = AlternatingLeastSquares(factors=config.factors, regularization=config.regularization, alpha=config.alpha,
                                    iterations=config.iterations, random_state=config.seed, num_threads=1)
        m.user_factors = np.ascontiguousarray(user_factors, np.float32)
        m.item_factors = np.ascontiguousarray(item_factors, np.float32)
        c.model, c.n_items = m, item_factors.shape[0]
        return c
