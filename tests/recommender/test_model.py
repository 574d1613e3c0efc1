"""The recommender DQN: run-time (onnxruntime state, numpy heads) parity with torch, seeding, checkpoints, and learning."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recommender import rewards as rw  # noqa: E402
from recommender.dataset import Interactions  # noqa: E402
from recommender.errors import ConfigError  # noqa: E402
from recommender.model import NetConfig, SeqQNet  # noqa: E402
from recommender.scoring import Scorer, export_weights  # noqa: E402
from recommender.train import TrainConfig, Trainer, action_set, last_window, score_users, windows  # noqa: E402

torch.set_num_threads(1)


def cyclic_data(n_users: int = 30, n_items: int = 12, length: int = 25, seed: int = 0, features: int = 5
                ) -> Interactions:
    """Every user walks the items in a fixed cycle from a random start: the next item is determined."""
    rng = np.random.default_rng(seed)
    users, items, ts, outs = [], [], [], []
    for u in range(n_users):
        start = rng.integers(n_items)
        for k in range(length):
            users.append(u)
            items.append((start + k) % n_items + 1)
            ts.append(1e9 + k)
            outs.append(rw.COMPLETED if k % 4 else rw.SKIPPED)
    feats = rng.normal(size=(n_items + 1, features)).astype(np.float32)
    return Interactions(n_users, n_items, np.array(users), np.array(items), np.array(ts, float),
                        np.array(outs, np.int8), feats)


@pytest.mark.parametrize("encoder,layers", [("gru", 1), ("gru", 2), ("attention", 1), ("attention", 2)])
@pytest.mark.parametrize("rank_by,user_dim", [("q", 0), ("sqn", 5), ("blend", 3)])
def test_onnx_state_and_numpy_heads_match_torch(encoder, layers, rank_by, user_dim):
    torch.manual_seed(0)
    cfg = TrainConfig(net=NetConfig(dim=16, encoder=encoder, layers=layers, max_history=6, heads=2), rank_by=rank_by)
    feats = torch.randn(21, 7)
    net = SeqQNet(20, feats, cfg.net, user_dim=user_dim).eval()
    scorer = Scorer(export_weights(net, cfg.to_json()))
    rng = np.random.default_rng(1)
    for m in (0, 1, 3, 6, 9):  # shorter, equal and longer than max_history
        seq = rng.integers(1, 21, m)
        out = rng.integers(0, 3, m)
        uvec = rng.normal(size=(1, user_dim)).astype(np.float32) if user_dim else None
        expected = score_users(net, cfg, [seq], [out], user_vecs=uvec)[0, 1:]
        h = scorer.state(scorer.item_vectors[seq], out, None if uvec is None else uvec[0])
        got, _ = scorer.scores(h, np.arange(1, 21))
        np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4)


def test_new_track_vector_comes_from_features():
    cfg = TrainConfig(net=NetConfig(dim=8, max_history=4))
    feats = torch.randn(6, 3)
    net = SeqQNet(5, feats, cfg.net).eval()
    scorer = Scorer(export_weights(net, cfg.to_json()))
    f = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    np.testing.assert_allclose(scorer.feature_vectors(f), net.feat(torch.from_numpy(f)).detach().numpy(), atol=1e-6)


def test_windows_cover_every_transition_once():
    seqs = [np.arange(1, 8), np.array([3]), np.array([4, 5])]
    outs = [np.ones(7, np.int64), np.ones(1, np.int64), np.ones(2, np.int64)]
    w, _, users, ends = windows(seqs, outs, 4)
    assert ends.sum() == 2 and ends[:, -1].sum() == 2  # each history's last event ends its session
    assert users.tolist() == [0, 0, 2]
    pairs = {(int(a), int(b)) for row in w for a, b in zip(row[:-1], row[1:]) if a and b}
    assert pairs == {(i, i + 1) for i in range(1, 7)} | {(4, 5)}
    assert (w[:, 0] == 0).sum() >= 1  # left padding
    items, _ = last_window(np.array([1, 2]), np.array([1, 0]), 4)
    assert items.tolist() == [0, 0, 1, 2]


def _train(data, epochs, ckpt=None, **kw):
    cfg = TrainConfig(net=NetConfig(dim=16, max_history=8), epochs=epochs, batch_size=16, seed=3, **kw)
    tr = Trainer(data, cfg, ckpt, progress=False)
    return tr, tr.run()


def test_training_is_seeded_and_resumes_from_checkpoint(tmp_path):
    data = cyclic_data()
    _, a = _train(data, 2)
    _, b = _train(data, 2)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    tr1, _ = _train(data, 1, tmp_path)
    assert (tmp_path / "checkpoint.pt").exists() and tr1.epoch == 1
    tr2, c = _train(data, 2, tmp_path)  # same config but 2 epochs: a different config, starts afresh
    assert len(tr2.history) == 2
    # resuming the same config continues where it stopped and matches an uninterrupted run
    tr3 = Trainer(data, tr2.config, tmp_path, progress=False)
    assert tr3.try_resume() and tr3.epoch == 2
    for (k, va), vc in zip(a.state_dict().items(), c.state_dict().values()):
        assert torch.equal(va, vc), k


@pytest.mark.parametrize("rank_by", ["sqn", "q", "blend"])
def test_learns_a_deterministic_next_track(rank_by):
    data = cyclic_data()
    cfg_kw = {"rank_by": rank_by, "lr": 1e-2}
    tr, net = _train(data, 15, **cfg_kw)
    seqs = [np.array([3, 4, 5]), np.array([11, 12])]
    outs = [np.ones(3, np.int64), np.ones(2, np.int64)]
    scores = score_users(net, tr.config, seqs, outs)
    assert scores[:, 1:].argmax(axis=1).tolist() == [5, 0]  # items 6 and 1 (indices shifted by one)


def test_q_values_reflect_rewards():
    """Every 4th play is skipped (reward 0), the others completed (1): after three completions in a
    row the next track is worth about 0, after a skip and two completions about 1."""
    data = cyclic_data(length=40)
    tr, net = _train(data, 15, lr=1e-2, gamma=0.0, sqn_weight=0.0, continue_bonus=0.0)
    with torch.no_grad():
        items = torch.tensor([[12, 1, 2, 3], [12, 1, 2, 3]])
        h = net.encode(items, torch.tensor([[1, 0, 1, 1], [0, 1, 1, 1]]))[:, -1]
        q = net.q_values(h, net.item_vectors(), torch.arange(13))
    assert q[0, 4] > q[0, 1:].median()  # the played-next track stands out
    assert 0.3 < float(q[0, 4]) < 1.3
    assert float(q[0, 4]) > float(q[1, 4]) + 0.2  # the skip to come is in the value


def test_q_values_the_rest_of_the_session_and_stops_at_its_end():
    """Sessions are pairs (1, 2), (3, 4) or (5, 6), both tracks completed, an hour apart. With gamma
    0.9 the first track of a pair is worth 1 + 0.9 * 1 (the second still comes); the second track
    ends the session, so its target is its reward alone (1, not 1 + 0.9 * 1.9 as it would be if the
    next session's start were bootstrapped through)."""
    rng = np.random.default_rng(0)
    users, items, ts = [], [], []
    for u in range(40):
        for s in range(12):
            first = 2 * int(rng.integers(3)) + 1
            users += [u, u]
            items += [first, first + 1]
            ts += [s * 3600.0, s * 3600.0 + 60]
    data = Interactions(40, 6, np.array(users), np.array(items), np.array(ts), np.full(len(users), rw.COMPLETED,
                                                                                         np.int8))
    _, net = _train(data, 40, lr=1e-2, gamma=0.9, sqn_weight=0.0, continue_bonus=0.0, tau=0.05)
    with torch.no_grad():
        ids = torch.arange(7)
        h = net.encode(torch.tensor([[0, 3, 4, 1]]), torch.tensor([[0, 1, 1, 1]]))[:, -1]
        after_first = float(net.q_values(h, net.item_vectors(), ids)[0, 2])
        h = net.encode(torch.tensor([[0, 1, 2, 3, 4]]), torch.tensor([[0, 1, 1, 1, 1]]))[:, -1]
        q_start = net.q_values(h, net.item_vectors(), ids)[0, [1, 3, 5]]
    assert after_first == pytest.approx(1.0, abs=0.3)
    assert float(q_start.mean()) == pytest.approx(1.9, abs=0.3)


@pytest.mark.parametrize("share", [0.0, 0.25, 1.0])
def test_q_encoder_grad_scales_the_q_gradient_into_the_shared_parts(share):
    """Gradients on what the heads share = supervised part + ``share`` x the Q-loss part; at 0 the
    supervised head trains exactly as without the Q-loss, the Q head still learns."""
    from recommender.train import batch_loss, build_net

    data = cyclic_data()
    base = TrainConfig(net=NetConfig(dim=8, max_history=6), epochs=1)
    tr = Trainer(data, base, progress=False)
    batch = [torch.from_numpy(a[:16]) for a in (tr.win_items, tr.win_outs, tr.win_ends)]

    def grads(**kw):
        net = build_net(data, base)
        net.load_state_dict(tr.net.state_dict())
        net.eval()  # no dropout: the same forward every call
        loss, _ = batch_loss(net, tr.target, TrainConfig(**{**base.__dict__, **kw}), *batch, None,
                             np.random.default_rng(0))
        loss.backward()
        return {k: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for k, p in net.named_parameters()}

    sup, full, mixed = grads(q_weight=0.0), grads(q_weight=1.0), grads(q_encoder_grad=share)
    for k in sup:
        if k.startswith(("q_proj", "q_bias")):
            assert torch.allclose(mixed[k], full[k], atol=1e-6), k  # the Q head itself always learns
            assert mixed[k].abs().sum() > 0, k
        else:
            assert torch.allclose(mixed[k], sup[k] + share * (full[k] - sup[k]), atol=1e-5), k


@pytest.mark.parametrize("kw,match", [
    ({"gamma": 1.0}, "gamma"), ({"epochs": 0}, "epochs"), ({"rank_by": "x"}, "rank_by"), ({"tau": 0.0}, "tau"),
    ({"session_gap": 0.0}, "session_gap"), ({"unshown_weight": -1.0}, "unshown_weight"),
    ({"q_encoder_grad": 1.5}, "q_encoder_grad"),
])
def test_bad_config_is_refused(kw, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kw)


@pytest.mark.parametrize("kw,match", [({"encoder": "lstm"}, "encoder"), ({"dim": 10, "encoder": "attention",
                                                                          "heads": 3}, "divide")])
def test_bad_net_config_is_refused(kw, match):
    with pytest.raises(ConfigError, match=match):
        NetConfig(**kw)


def test_large_catalog_uses_sampled_actions():
    data = cyclic_data(n_items=60)
    cfg = TrainConfig(net=NetConfig(dim=8, max_history=5), epochs=1, batch_size=8, max_full_actions=20,
                      sampled_actions=10)
    tr = Trainer(data, cfg, progress=False)
    ids, cols = action_set(data.n_items, torch.tensor([[5, 7], [7, 59]]), cfg, tr.rng)
    assert len(ids) <= 1 + 4 + 10 and ids[0] == 0
    assert ids[cols].tolist() == [[5, 7], [7, 59]]
    tr.run()
