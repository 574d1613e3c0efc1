"""TrainConfig options for worlds that offer a few candidates a step (RecSim): the bootstrap's
argmax over ``next_candidates`` offered tracks, and the state without the whole-log taste vector."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recommender import rewards as rw  # noqa: E402
from recommender.dataset import Interactions  # noqa: E402
from recommender.errors import ConfigError  # noqa: E402
from recommender.model import NetConfig  # noqa: E402
from recommender.train import TrainConfig, Trainer, _offered  # noqa: E402

torch.set_num_threads(1)


def test_offered_masks_k_random_actions_a_row():
    rng = np.random.default_rng(0)
    m = _offered((50, 20), 3, rng)
    assert m.shape == (50, 20) and m.dtype == torch.bool
    assert m.sum(1).tolist() == [3] * 50
    assert len({tuple(r.nonzero().flatten().tolist()) for r in m}) > 40  # drawn afresh per transition
    assert m.float().mean(0).min() > 0  # every action gets offered somewhere
    assert _offered((5, 20), 0, rng) is None and _offered((5, 20), 20, rng) is None


def _pairs() -> Interactions:
    """Sessions of two plays, an hour apart: first one of tracks 1-3 (completed), then one of 4-6
    drawn at random, where only 4 is completed. After the first play the best next track is worth
    1, a random one about 1/3 of the time 1."""
    rng = np.random.default_rng(0)
    users, items, ts, outs = [], [], [], []
    for u in range(40):
        for s in range(12):
            second = int(rng.integers(4, 7))
            users += [u, u]
            items += [int(rng.integers(1, 4)), second]
            ts += [s * 3600.0, s * 3600.0 + 60]
            outs += [rw.COMPLETED, rw.COMPLETED if second == 4 else rw.SKIPPED]
    return Interactions(40, 6, np.array(users), np.array(items), np.array(ts), np.array(outs, np.int8))


def _q_first_and_next(next_candidates: int) -> tuple[float, torch.Tensor]:
    """Mean Q of the first plays (tracks 1-3) at a session's start, and Q of every track after one."""
    cfg = TrainConfig(net=NetConfig(dim=16, max_history=8), epochs=40, batch_size=16, seed=3, lr=1e-2, gamma=0.9,
                      sqn_weight=0.0, continue_bonus=0.0, tau=0.05, next_candidates=next_candidates)
    net = Trainer(_pairs(), cfg, progress=False).run()
    with torch.no_grad():
        # after two whole sessions (a start), and after those and one first play (track 3)
        h = net.encode(torch.tensor([[0, 1, 4, 2, 5], [1, 4, 2, 5, 3]]),
                       torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 0, 1]]))[:, -1]
        q = net.q_values(h, net.item_vectors(), torch.arange(7))[:, 1:]
    return float(q[0, :3].mean()), q[1]


def test_next_candidates_values_the_pick_among_what_is_offered():
    """The first play's target is 1 + 0.9 * the value of the next pick: with every track on offer,
    the best one (track 4, worth 1: about 1.9 in all); with one random track offered, the mean over
    the catalog (the conservative term keeps tracks 1-3, never played second, below 0 there), far
    less. Both are checked against the network's own Q after the first play (Bellman-consistent)."""
    start, after = _q_first_and_next(0)
    assert start == pytest.approx(1 + 0.9 * float(after.max()), abs=0.3)
    assert start == pytest.approx(1.9, abs=0.3)
    start1, after1 = _q_first_and_next(1)
    assert start1 == pytest.approx(1 + 0.9 * float(after1.mean()), abs=0.3)
    assert start - start1 > 1.0


def test_user_taste_off_leaves_the_taste_vector_out_of_the_state():
    data = _pairs()
    data.user_features = np.random.default_rng(1).normal(size=(data.n_users, 4)).astype(np.float32)
    on = Trainer(data, TrainConfig(net=NetConfig(dim=8, max_history=4), epochs=1), progress=False)
    off = Trainer(data, TrainConfig(net=NetConfig(dim=8, max_history=4), epochs=1, user_taste=False), progress=False)
    assert on.net.user_dim == 4 and on.net.user_proj is not None
    assert off.net.user_dim == 0 and off.net.user_proj is None
    off.run()  # trains with the taste vectors present in the data, and ignores them


def test_bad_next_candidates_is_refused():
    with pytest.raises(ConfigError, match="next_candidates -1 is out of range"):
        TrainConfig(next_candidates=-1)
