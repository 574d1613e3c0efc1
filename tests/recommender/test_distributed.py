"""Data-parallel recommender training: batch shards, gradient averaging over gloo, Ray Train on two nodes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recommender.distributed import _average_gradients, shard_steps  # noqa: E402
from recommender.model import NetConfig  # noqa: E402
from recommender.train import TrainConfig, Trainer, score_users  # noqa: E402
from tests.ray_cluster import two_node_cluster  # noqa: E402
from tests.recommender.test_model import cyclic_data  # noqa: E402

cluster = two_node_cluster()  # started only by the test that asks for it


def test_shards_split_every_batch_once_and_take_the_same_steps():
    order = np.random.default_rng(0).permutation(103)
    per_rank = [shard_steps(103, 16, 3, r, order) for r in range(3)]
    assert len({len(s) for s in per_rank}) == 1 == len({len(s) for s in per_rank})
    assert len(per_rank[0]) == 7  # 6 full batches and the last 7 windows, split 3/2/2
    for step in range(7):
        parts = [per_rank[r][step] for r in range(3)]
        assert sorted(np.concatenate(parts).tolist()) == sorted(order[step * 16:(step + 1) * 16].tolist())
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # a last batch smaller than the number of ranks is skipped by every rank alike
    assert all(len(shard_steps(33, 16, 2, r, np.arange(33))) == 2 for r in range(2))


def _config() -> TrainConfig:
    # No sampled unshown tracks (CQL), no dropout: both sides then compute exactly the same losses.
    return TrainConfig(net=NetConfig(dim=16, max_history=8, dropout=0.0, id_dropout=0.0), batch_size=16, unshown_weight=0.0,
                       seed=3)


def _rank(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        tr = Trainer(cyclic_data(), _config(), progress=False)
        _average_gradients(tr.net, world)
        idx = np.array_split(np.arange(16), world)[rank]
        tr.step(torch.from_numpy(tr.win_items[idx]), torch.from_numpy(tr.win_outs[idx]),
                torch.from_numpy(tr.win_ends[idx]), tr.user_feats[torch.from_numpy(tr.win_users[idx])])
        torch.save({k: p.grad for k, p in tr.net.named_parameters() if p.grad is not None}, f"{out}.{rank}")
        # Both ranks leave the group together: a rank that tears gloo down while the other
        # is still inside it can abort the other ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # subprocesses
def test_two_ranks_take_the_single_process_step(tmp_path):
    """Averaged gradients of two half batches are the whole batch's gradient in one process.

    (Gradients, not weights, are compared: Adam's first step moves each weight by about
    lr * sign(gradient), which turns rounding noise in a near-zero gradient into 2 * lr.)"""
    import torch.multiprocessing as mp

    out = str(tmp_path / "state")
    mp.spawn(_rank, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    single = Trainer(cyclic_data(), _config(), progress=False)
    idx = np.arange(16)
    single.step(torch.from_numpy(single.win_items[idx]), torch.from_numpy(single.win_outs[idx]),
                torch.from_numpy(single.win_ends[idx]), single.user_feats[torch.from_numpy(single.win_users[idx])])
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    grads = {k: p.grad for k, p in single.net.named_parameters() if p.grad is not None}
    assert set(ranks[0]) == set(ranks[1]) == set(grads) and len(grads) > 5
    for k, g in grads.items():
        assert torch.equal(ranks[0][k], ranks[1][k]), k  # the ranks stay in lockstep
        torch.testing.assert_close(ranks[0][k], g, rtol=1e-4, atol=1e-6, msg=k)


@pytest.mark.slow
def test_ray_train_on_two_nodes_learns_the_next_track(cluster, tmp_path):
    """Two workers of one CPU each on two one-CPU nodes: one rank per node."""
    from recommender.distributed import fit_data_parallel

    data = cyclic_data()
    cfg = TrainConfig(net=NetConfig(dim=16, max_history=8), epochs=15, batch_size=16, seed=3, lr=1e-2)
    net, history = fit_data_parallel(data, cfg, workers=2, storage=tmp_path)
    assert [int(h["epoch"]) for h in history] == list(range(1, 16))
    assert history[-1]["loss"] < history[0]["loss"]
    scores = score_users(net, cfg, [np.array([3, 4, 5]), np.array([11, 12])], [np.ones(3, np.int64)] * 2)
    assert scores[:, 1:].argmax(axis=1).tolist() == [5, 0]  # items 6 and 1, as single-process training learns


FIX = Path(__file__).resolve().parents[1] / "fixtures" / "rec"


def _ingested(qriff, tmp_path) -> Path:
    db = tmp_path / "t.db"
    assert qriff("rec", "ingest", *map(str, sorted(FIX.iterdir())), "--db", str(db), "--quiet").returncode == 0
    return db


@pytest.mark.slow  # subprocesses
def test_unreachable_ray_address_exits_2_before_training(qriff, tmp_path):
    pytest.importorskip("ray")
    db = _ingested(qriff, tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = qriff("rec", "train", "--db", str(db), "--ray-address", f"127.0.0.1:{port}", "--model", str(tmp_path / "m.npz"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"--ray-address '127.0.0.1:{port}' is not reachable" in r.stderr
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.slow
def test_rec_train_joins_a_cluster_by_address(cluster, qriff, tmp_path):
    db = _ingested(qriff, tmp_path)
    r = qriff("rec", "train", "--db", str(db), "--ray-address", cluster.address, "--workers", "2", "--epochs", "2",
              "--dim", "8", "--max-history", "4", "--factors", "4", "--json", "--model", str(tmp_path / "m.npz"),
              timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert Path(out["model"]).exists() and [h["epoch"] for h in out["history"]] == [1, 2]
    nxt = qriff("rec", "next", "--db", str(db), "--model", str(tmp_path / "m.npz"), "--user", "me", "--json")
    assert nxt.returncode == 0, nxt.stderr
