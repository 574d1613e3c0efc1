"""Offline evaluation: metrics, the leave-last-out split with its tie-break, and one run of every model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from recommender import rewards as rw
from recommender.dataset import Interactions, leave_last_out, tie_break_key
from recommender.errors import DatasetError
from recommender.metrics import hit_ndcg, ranks_full, ranks_sampled


def test_ranks_filter_seen_items_and_count_ties_half():
    scores = np.array([[-np.inf, 5.0, 4.0, 3.0, 2.0], [-np.inf, 1.0, 1.0, 1.0, 1.0]])
    seen = csr_matrix(np.array([[0, 1, 0, 0, 0], [0, 0, 0, 0, 0]], np.float32))
    r = ranks_full(scores, np.array([3, 2]), seen)
    assert r.tolist() == [1, 1]  # item 1 filtered; ties: 3 equal others count half
    m = hit_ndcg(np.array([0, 1, 9, 25]), ks=(1, 10))
    assert m["HR@1"] == 0.25 and m["HR@10"] == 0.75
    assert m["NDCG@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 4)


def test_sampled_ranks_are_never_worse_than_full():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 400))
    targets = rng.integers(1, 400, 50)
    seen = csr_matrix((50, 400), dtype=np.float32)
    full, sampled = ranks_full(scores, targets, seen), ranks_sampled(scores, targets, seen, negatives=100)
    assert (sampled <= full).all() and sampled.max() <= 100


def _data(ts):
    n = len(ts)
    return Interactions(2, 5, np.array([0] * n + [1]), np.arange(1, n + 2) % 5 + 1, np.array(list(ts) + [1.0]),
                        np.full(n + 1, rw.COMPLETED, np.int8))


def test_leave_last_out_by_time_with_a_fixed_tie_break():
    d = _data([3.0, 1.0, 2.0, 2.0])  # user 0: items 2,3,4,5 at times 3,1,2,2; user 1 has one event
    s = leave_last_out(d)
    assert s.test_users.tolist() == [0] and s.test_items.tolist() == [2]  # the latest, item 2 at t=3
    assert len(s.train) == 4
    # equal timestamps: order by the hash, not by item id, and the same in every run
    k = tie_break_key(np.array([0, 0]), np.array([4, 5]))
    again = tie_break_key(np.array([0, 0]), np.array([4, 5]))
    assert (k == again).all() and k[0] != k[1]
    order = d.item[d.user == 0].tolist()
    assert order[0] == 3 and order[-1] == 2 and set(order[1:3]) == {4, 5}


def test_leave_last_out_needs_two_events():
    d = Interactions(1, 3, np.array([0]), np.array([1]), np.array([1.0]), np.array([1], np.int8))
    with pytest.raises(DatasetError, match="2 or more events"):
        leave_last_out(d)


def sequential_data(n_users=60, n_items=30, length=30, seed=0) -> Interactions:
    """Users move through items mostly in a cycle: sequence models should beat popularity."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        i = rng.integers(n_items)
        for k in range(length):
            i = (i + 1) % n_items if rng.random() < 0.9 else rng.integers(n_items)
            users.append(u)
            items.append(i + 1)
            ts.append(float(k))
    return Interactions(n_users, n_items, np.array(users), np.array(items), np.array(ts),
                        np.full(len(users), rw.COMPLETED, np.int8))


def test_evaluate_runs_every_model_in_one_run():
    pytest.importorskip("torch")
    from recommender.evaluation import MODELS, evaluate
    from recommender.model import NetConfig
    from recommender.train import TrainConfig

    cfg = TrainConfig(net=NetConfig(dim=16, max_history=10), epochs=6, batch_size=16, lr=1e-2)
    res = evaluate(sequential_data(), "synthetic", cfg)
    assert set(MODELS) <= set(res.rows) and "dqn (Q head)" in res.rows
    full = {m: r["full"]["NDCG@10"] for m, r in res.rows.items()}
    assert full["dqn"] > 1.5 * full["most-popular"] and full["gru4rec"] > 1.5 * full["most-popular"]
    for r in res.rows.values():
        assert r["sampled"]["HR@10"] >= r["full"]["HR@10"]
    table = res.table()
    assert "| dqn |" in table and "sampled HR@10" in table and "hash of (user, item)" in table


def test_movielens_100k_loads_when_installed():
    from recommender.dataset import load_movielens_100k, movielens_100k_dir

    try:
        movielens_100k_dir()
    except DatasetError as exc:
        pytest.skip(f"MovieLens-100K is a benchmark data set, not installed here: {exc}")
    d = load_movielens_100k()
    assert (d.n_users, d.n_items, len(d)) == (943, 1682, 100_000)
    assert d.item_features.shape == (1683, 32)
    same_ts = np.zeros(len(d), bool)
    key = d.user.astype(np.int64) * 10**10 + d.ts.astype(np.int64)
    _, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    same_ts = counts[inv] > 1
    assert 0.74 < same_ts.mean() < 0.78  # anchors.md: 76% share a timestamp with another of the same user
