"""One contract for every recommender model family (implicit's shared test mixin, as a parametrised test)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recommender import rewards as rw  # noqa: E402
from recommender.candidates import CandidateConfig  # noqa: E402
from recommender.dataset import Interactions  # noqa: E402
from recommender.evaluation import ROWS  # noqa: E402
from recommender.families import ModelFamily, Neural, families  # noqa: E402
from recommender.model import NetConfig  # noqa: E402
from recommender.train import TrainConfig  # noqa: E402

torch.set_num_threads(1)


def _data() -> Interactions:
    """40 users walking 15 items in cycles, one in four plays skipped, with 4 content features."""
    rng = np.random.default_rng(0)
    users, items, ts, outs = [], [], [], []
    for u in range(40):
        start = int(rng.integers(15))
        for k in range(12):
            users.append(u)
            items.append((start + k) % 15 + 1)
            ts.append(1e9 + 60.0 * k)
            outs.append(rw.SKIPPED if k % 4 == 3 else rw.COMPLETED)
    feats = rng.normal(size=(16, 4)).astype(np.float32)
    return Interactions(40, 15, np.array(users), np.array(items), np.array(ts), np.array(outs, np.int8), feats)


def _families() -> dict[str, ModelFamily]:
    dqn = TrainConfig(net=NetConfig(dim=8, max_history=5), epochs=1, batch_size=32)
    return families(dqn, CandidateConfig(factors=4, iterations=2), CandidateConfig(kind="cosine", neighbours=5))


NAMES = list(_families())
USERS = np.arange(0, 40, 3)


def test_every_row_of_the_table_is_a_family():
    assert set(NAMES) == {r for rows in ROWS.values() for r in rows}


@pytest.mark.parametrize("name", NAMES)
def test_family_contract(name):
    data = _data()
    fam = _families()[name]
    assert fam.name == name and dataclasses.is_dataclass(fam.config)
    with pytest.raises(RuntimeError, match="before fit"):
        fam.score(USERS)
    assert fam.fit(data) is fam
    scores = fam.score(USERS)
    assert scores.shape == (len(USERS), data.n_items + 1) and scores.dtype == np.float64
    assert np.all(scores[:, 0] == -np.inf) and np.isfinite(scores[:, 1:]).all()
    # seeded: the same data and config give the same scores
    again = _families()[name].fit(data).score(USERS)
    np.testing.assert_allclose(again, scores, rtol=1e-5, atol=1e-6)


def test_rows_that_train_the_same_network_share_it_and_others_refuse():
    data = _data()
    fams = _families()
    dqn, by_q = fams["dqn"].fit(data), fams["dqn, ranked by Q"]
    assert isinstance(dqn, Neural) and isinstance(by_q, Neural)
    assert by_q.sharing(dqn).net is dqn.net
    assert not np.allclose(by_q.score(USERS)[:, 1:], dqn.score(USERS)[:, 1:])  # another head
    noq, gru = fams["dqn, no Q-loss"], fams["gru4rec (DQN's inputs)"]
    assert isinstance(noq, Neural) and isinstance(gru, Neural)
    assert noq.training_key() == gru.training_key()  # untuned, one model under two names
    with pytest.raises(ValueError, match="trains another one"):
        gru.sharing(dqn)
