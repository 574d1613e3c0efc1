"""engine.base.rl: schedules, exploration, n-step returns, replay, double-DQN targets, target updates."""

from __future__ import annotations

import numpy as np
import pytest

from engine.base import rl
from engine.base.errors import EngineError


def test_schedule_endpoints_and_monotone():
    s = rl.Schedule(1.0, 0.05, 100)
    vals = [s(t) for t in range(0, 150)]
    assert vals[0] == pytest.approx(1.0)
    assert vals[100] == pytest.approx(0.05)
    assert vals[149] == pytest.approx(0.05)
    assert all(a >= b - 1e-12 for a, b in zip(vals, vals[1:]))


def test_schedule_linear_midpoint_and_errors():
    assert rl.Schedule(1.0, 0.0, 10)(5) == pytest.approx(0.5)
    assert rl.Schedule(1.0, 0.2, 0)(0) == pytest.approx(0.2)
    with pytest.raises(EngineError, match="duration -1 is negative"):
        rl.Schedule(1, 0, -1)


@pytest.mark.parametrize("eps", [0.0, 0.3, 1.0])
def test_epsilon_greedy_rate(eps):
    rng = np.random.default_rng(0)
    q = np.zeros((4000, 5))
    q[:, 2] = 1.0
    a = rl.epsilon_greedy(q, eps, rng)
    greedy_share = (a == 2).mean()
    assert greedy_share == pytest.approx(1 - eps + eps / 5, abs=0.03)
    if eps:
        assert set(np.unique(a)) == {0, 1, 2, 3, 4}, "exploration is uniform over all actions"
    with pytest.raises(EngineError, match="epsilon 1.5"):
        rl.epsilon_greedy(q, 1.5, rng)


def test_boltzmann_matches_softmax():
    rng = np.random.default_rng(1)
    q = np.tile(np.array([0.0, 1.0, 2.0]), (20000, 1))
    for temp in (0.5, 2.0):
        a = rl.boltzmann(q, temp, rng)
        p = np.exp(q[0] / temp) / np.exp(q[0] / temp).sum()
        freq = np.bincount(a, minlength=3) / len(a)
        np.testing.assert_allclose(freq, p, atol=0.015)
    assert (rl.boltzmann(q[:5], 0.0, rng) == 2).all()
    with pytest.raises(EngineError, match="temperature -1"):
        rl.boltzmann(q, -1.0, rng)


def _reference_nstep(rewards, dones, n, gamma):
    """(start, return, discount, next index) for one env's reward stream, by brute force."""
    out = []
    T = len(rewards)
    for t in range(T):
        # episode of step t ends at the first done at or after t
        end = next(i for i in range(t, T) if dones[i]) if any(dones[t:]) else None
        stop = min(t + n, end + 1) if end is not None else t + n
        if stop > T:
            continue
        ret = sum(gamma ** (k - t) * rewards[k] for k in range(t, stop))
        disc = 0.0 if end is not None and stop == end + 1 else gamma ** (stop - t)
        out.append((t, round(ret, 6), round(disc, 6), stop - 1))
    return out


@pytest.mark.parametrize("n", [1, 3, 5])
def test_nstep_matches_bruteforce(n):
    gamma = 0.9
    rng = np.random.default_rng(n)
    T, N = 40, 3
    rewards = rng.normal(size=(T, N)).round(3)
    dones = rng.random((T, N)) < 0.15
    dones[-1] = True  # flush everything
    col = rl.NStepCollector(N, n, gamma)
    got = {e: [] for e in range(N)}
    for t in range(T):
        obs = np.stack([np.full(2, 100 * t + e, np.float32) for e in range(N)])
        nxt = obs + 1000
        o, a, r, no, d = col.push(obs, np.arange(N) + 10 * t, rewards[t], nxt, dones[t])
        for i in range(len(a)):
            e = int(o[i, 0]) % 100
            start = int(o[i, 0]) // 100
            assert a[i] == e + 10 * start
            last = int(no[i, 0] - 1000) // 100
            got[e].append((start, round(float(r[i]), 4), round(float(d[i]), 4), last))
    for e in range(N):
        ref = sorted(_reference_nstep(rewards[:, e], dones[:, e], n, gamma))
        mine = sorted(got[e])
        assert [(s, last) for s, _, _, last in mine] == [(s, last) for s, _, _, last in ref]
        np.testing.assert_allclose([r for _, r, _, _ in mine], [r for _, r, _, _ in ref], atol=1e-3)
        np.testing.assert_allclose([d for _, _, d, _ in mine], [d for _, _, d, _ in ref], atol=1e-5)


def test_nstep_truncation_bootstraps():
    col = rl.NStepCollector(1, 3, 0.5)
    obs = np.zeros((1, 1), np.float32)
    col.push(obs, np.array([0]), np.array([1.0]), obs, np.array([False]))
    o, a, r, no, d = col.push(obs, np.array([0]), np.array([1.0]), obs, np.array([False]), np.array([True]))
    np.testing.assert_allclose(sorted(r), [1.0, 1.5])
    np.testing.assert_allclose(d[np.argsort(r)], [0.5, 0.25])


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_replay_wraps_samples_and_roundtrips(dtype):
    buf = rl.ReplayBuffer(10, 3, obs_dtype=dtype, seed=0)
    for i in range(4):
        m = 4
        obs = np.full((m, 3), i, np.float32) + np.arange(m)[:, None] / 8
        buf.add(obs, np.arange(m) + 10 * i, np.ones(m, np.float32) * i, obs + 1, np.full(m, 0.5, np.float32))
    assert len(buf) == 10 and buf.pos == 6
    assert set(buf.actions.tolist()) == set(range(12, 14)) | set(range(20, 24)) | set(range(30, 34))
    b = buf.sample(64)
    assert b.obs.shape == (64, 3) and b.actions.shape == (64,)
    np.testing.assert_allclose(b.next_obs.astype(np.float32), b.obs.astype(np.float32) + 1)
    np.testing.assert_array_equal(b.returns, buf.returns[b.indices])
    state = buf.state_dict()
    other = rl.ReplayBuffer(10, 3, obs_dtype=dtype, seed=99)
    other.load_state_dict(state)
    b1, b2 = buf.sample(16), other.sample(16)
    np.testing.assert_array_equal(b1.indices, b2.indices)
    np.testing.assert_array_equal(b1.obs, b2.obs)
    with pytest.raises(EngineError, match="capacity"):
        rl.ReplayBuffer(5, 3).load_state_dict(state)
    with pytest.raises(EngineError, match="empty"):
        rl.ReplayBuffer(5, 3).sample(2)


def test_double_dqn_targets_and_updates():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)

    class Table(torch.nn.Module):
        def __init__(self, values):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(values, dtype=torch.float32))

        def forward(self, x):
            return x @ self.w

    online = Table([[1.0, 5.0, 0.0]])   # picks action 1
    target = Table([[7.0, 2.0, 9.0]])   # values action 1 at 2 (not its own max 9)
    obs = torch.ones(2, 1)
    t = rl.double_dqn_targets(online, target, obs, torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(t, torch.tensor([2.0, 1.0]))
    mask = torch.tensor([[True, False, True]] * 2)  # online's best allowed is action 0
    t = rl.double_q_targets(online(obs), lambda best: target(obs).gather(1, best).squeeze(1), torch.zeros(2),
                            torch.ones(2), next_mask=mask)
    torch.testing.assert_close(t, torch.tensor([7.0, 7.0]))
    q = online(obs)
    loss = rl.td_loss(q, torch.tensor([1, 1]), torch.tensor([5.0, 3.0]), kind="mse")
    assert loss.item() == pytest.approx(2.0)
    assert rl.td_loss(q, torch.tensor([1, 1]), torch.tensor([5.0, 3.0])).item() == pytest.approx(0.75)
    rl.soft_update(target, online, 0.25)
    torch.testing.assert_close(target.w.data, torch.tensor([[5.5, 2.75, 6.75]]))
    rl.hard_update(target, online)
    torch.testing.assert_close(target.w.data, online.w.data)
    with pytest.raises(EngineError, match="tau 0"):
        rl.soft_update(target, online, 0.0)
