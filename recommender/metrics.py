"""Ranking metrics: full-ranking HR and NDCG at k, and the sampled variant beside them.

With one held-out item per user, HR@k is the share of users whose item ranks in the
top k and NDCG@k averages ``1 / log2(rank + 2)`` (rank 0-based) over those users.
"""

from __future__ import annotations

import numpy as np

KS = (5, 10, 20)


def ranks_full(scores: np.ndarray, targets: np.ndarray, seen) -> np.ndarray:
    """0-based rank of each target among all items, seen items filtered.

    Args:
        scores: float ``[U, I]`` scores of every item for each test user (higher first).
        targets: int ``[U]`` held-out item index per user.
        seen: CSR ``[U, I]`` of items each user saw in training; those never outrank.

    Ties count half (a constant score gives the expected random rank, not rank 0).
    """
    s = np.array(scores, np.float64, copy=True)
    rows = np.repeat(np.arange(s.shape[0]), np.diff(seen.indptr))
    s[rows, seen.indices] = -np.inf
    u = np.arange(len(targets))
    t = s[u, targets]
    higher = (s > t[:, None]).sum(axis=1)
    ties = (s == t[:, None]).sum(axis=1) - 1
    return higher + ties // 2


def ranks_sampled(scores: np.ndarray, targets: np.ndarray, seen, negatives: int = 100,
                  seed: int = 0) -> np.ndarray:
    """0-based rank of each target among ``negatives`` unseen items drawn uniformly without
    replacement (the sampled protocol; fewer when fewer are unseen)."""
    rng = np.random.default_rng(seed)
    n_users, n_items = scores.shape
    out = np.zeros(n_users, np.int64)
    allowed = np.ones(n_items, bool)
    for u in range(n_users):
        allowed[1:] = True
        allowed[seen.indices[seen.indptr[u]:seen.indptr[u + 1]]] = False
        allowed[targets[u]] = False
        pool = np.flatnonzero(allowed[1:]) + 1
        neg = rng.choice(pool, size=min(negatives, len(pool)), replace=False)
        out[u] = int((scores[u, neg] > scores[u, targets[u]]).sum())
    return out


def hit_ndcg(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """``{"HR@k": ..., "NDCG@k": ...}`` for 0-based ``ranks`` ``[U]``."""
    r = np.asarray(ranks, np.float64)
    out: dict[str, float] = {}
    for k in ks:
        hit = r < k
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(r + 2.0), 0.0).mean())
    return out
