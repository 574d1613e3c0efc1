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


def test_sampled_ranks_draw_only_unseen_negatives_and_estimate_the_full_rank():
    # user 0: the 5 best-scored items were seen in training; the target beats every unseen item
    scores = np.tile(np.arange(400, dtype=np.float64)[::-1], (2, 1))  # item i scores 399 - i
    seen = csr_matrix((np.ones(5, np.float32), ([0] * 5, [1, 2, 3, 4, 5])), shape=(2, 400))
    targets = np.array([6, 201])
    r = ranks_sampled(scores, targets, seen, negatives=100)
    assert r[0] == 0  # a sampled seen item would outrank it
    # user 1: 200 unseen items beat the target out of 398 unseen others; over many draws the sampled
    # rank averages 100 * 200 / 398 (uniform without replacement), which a biased sampler misses
    mean = np.mean([ranks_sampled(scores, targets, seen, negatives=100, seed=s)[1] for s in range(200)])
    assert abs(mean - 100 * 200 / 398) < 1.0


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


def _tiny_cfg(**kw):
    from recommender.model import NetConfig
    from recommender.train import TrainConfig

    return TrainConfig(net=NetConfig(dim=16, max_history=10), epochs=6, batch_size=16, lr=1e-2, **kw)


def test_evaluate_runs_every_model_and_ablation_in_one_run_over_seeds():
    pytest.importorskip("torch")
    from recommender.evaluation import ROWS, evaluate

    res = evaluate(sequential_data(), "synthetic", _tiny_cfg(), seeds=2)
    assert list(res.rows) == [r for rows in ROWS.values() for r in rows]
    full = {m: r["full"]["NDCG@10"] for m, r in res.rows.items()}
    for m in ("dqn", "dqn, gamma 0", "dqn, no Q-loss", "gru4rec (ids)", "gru4rec (DQN's inputs)"):
        assert full[m] > 1.5 * full["most-popular"], m
    for r in res.rows.values():
        assert r["sampled"]["HR@10"] >= r["full"]["HR@10"]
        assert len(r["per_seed"]) == 2 and r["full"]["NDCG@10"] == pytest.approx(np.mean(r["per_seed"]), abs=1e-4)
    # the seeds differ for trained models (a std of exactly 0 would mean one seed counted twice)
    assert res.rows["dqn"]["full_std"]["NDCG@10"] > 0
    table = res.table()
    assert "| dqn, gamma 0 |" in table and "± " in table and "hash of (user, item)" in table


def test_tuning_uses_the_same_budget_per_family_and_never_the_test_item():
    pytest.importorskip("torch")
    from recommender.evaluation import tune

    data = sequential_data(n_users=40)
    kw = {"budget": 2, "dqn_config": _tiny_cfg(), "epochs_at": (1, 2), "families": ("als", "item-knn", "dqn")}
    a = tune(data, **kw)
    assert len(a.trials["als"]) == 2 and len(a.trials["item-knn"]) == 2 and len(a.trials["dqn"]) == 2 * 2
    best = max(a.trials["als"], key=lambda t: t["ndcg10"])["config"]
    assert (a.als.factors, a.als.regularization) == (best["factors"], best["regularization"])
    assert a.dqn.epochs in (1, 2)
    # replacing every user's last (test) event changes nothing: tuning never looks at it
    last = data.bounds[1:] - 1
    item = data.item.copy()
    item[last] = item[last] % data.n_items + 1
    changed = Interactions(data.n_users, data.n_items, data.user, item, data.ts, data.outcome)
    b = tune(changed, **kw)
    assert a.trials == b.trials


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
