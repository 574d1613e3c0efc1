"""Generic deep Q-learning pieces: nothing in here knows about music.

Used by the melody trainer (:mod:`engine.learn.train`) and by the recommender's DQN. The
numpy parts (replay, n-step returns, schedules, exploration) import no torch; the
torch parts import it when first called, so importing this module stays cheap.

API at a glance::

    from engine.base import rl

    eps = rl.Schedule(1.0, 0.05, 50_000)                   # annealed epsilon: eps(step)
    nstep = rl.NStepCollector(n_envs=16, n=3, gamma=0.9)    # vector env -> n-step transitions
    buf = rl.ReplayBuffer(100_000, obs_dim=D, seed=0)       # obs stored as float16 by default

    actions = rl.epsilon_greedy(q_values, eps(step), rng)   # or rl.boltzmann(q_values, T, rng)
    next_obs, reward, done, info = env.step(actions)
    buf.add(*nstep.push(obs, actions, reward, real_next_obs, done))
    batch = buf.sample(64)                                  # rl.ReplayBatch of numpy arrays
    t = batch.to_torch(device)
    target = rl.double_dqn_targets(q_net, target_net, t.next_obs, t.returns, t.discounts)
    loss = rl.td_loss(q_net(t.obs), t.actions, target)
    ...
    rl.soft_update(target_net, q_net, tau=0.01)             # or rl.hard_update(target_net, q_net)

Conventions: ``B`` is a batch size, ``N`` the number of parallel environments, ``D``
the observation width and ``A`` the number of actions. ``discounts`` already include
the termination: a transition that ended its episode has discount 0, so a target is
always ``returns + discounts * Q_target(next_obs, argmax_a Q(next_obs, a))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from engine.base.errors import EngineError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "NStepCollector", "ReplayBatch", "ReplayBuffer", "Schedule", "boltzmann", "double_dqn_targets", "double_q_targets",
    "epsilon_greedy", "hard_update", "soft_update", "td_loss",
]


#: The array type of a :class:`ReplayBatch`: numpy arrays, or torch tensors after ``to_torch``.
ArrayT = TypeVar("ArrayT")


class RLConfigError(EngineError, ValueError):
    """A replay, schedule or exploration parameter is out of range."""


# --------------------------------------------------------------------- schedules

@dataclass(frozen=True)
class Schedule:
    """A value annealed linearly from ``start`` to ``end`` over ``duration`` steps, then held
    at ``end`` (CleanRL's ``linear_schedule``). Call it with a step count (int >= 0).
    ``Schedule(1.0, 0.1, 500_000)`` is RL Tuner's epsilon; ``Schedule(2.0, 0.1, 10_000)``
    an annealed Boltzmann temperature.
    """

    start: float
    end: float
    duration: int

    def __post_init__(self) -> None:
        if self.duration < 0:
            raise RLConfigError(f"schedule duration {self.duration} is negative: give 0 (constant) or more steps")

    def __call__(self, step: int) -> float:
        if self.duration == 0:
            return float(self.end)
        frac = min(max(step, 0) / self.duration, 1.0)
        return float(self.start + frac * (self.end - self.start))


# -------------------------------------------------------------------- exploration

def epsilon_greedy(q_values: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """Epsilon-greedy actions ``int64 [B]`` for ``q_values [B, A]``: with probability
    ``epsilon`` (0..1) a row takes a uniformly random action."""
    if not 0.0 <= epsilon <= 1.0:
        raise RLConfigError(f"epsilon {epsilon} is out of range (allowed: 0 to 1)")
    b, a = q_values.shape
    greedy = np.asarray(q_values.argmax(axis=1), dtype=np.int64)
    explore = np.asarray(rng.random(b) < epsilon)
    if not explore.any():
        return greedy
    return np.where(explore, rng.integers(0, a, size=b), greedy).astype(np.int64)


def boltzmann(q_values: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Sample actions ``int64 [B]`` from softmax(q / temperature) row by row.

    ``temperature`` 0 is greedy. Uses the Gumbel-max trick, so one call draws the whole
    batch with no Python loop.
    """
    if not temperature >= 0.0:
        raise RLConfigError(f"temperature {temperature} is out of range (allowed: >= 0; 0 is greedy)")
    if temperature == 0.0:
        return np.asarray(q_values.argmax(axis=1), dtype=np.int64)
    logits = q_values.astype(np.float64) / temperature
    gumbel = -np.log(-np.log(rng.random(q_values.shape).clip(1e-300, 1.0)))
    return np.asarray((logits + gumbel).argmax(axis=1), dtype=np.int64)


# ----------------------------------------------------------------- n-step returns

class NStepCollector:
    """Turns per-step transitions of ``N`` parallel environments into n-step transitions.

    Every :meth:`push` takes one step of all environments and returns the transitions
    that became complete: those whose ``n`` following rewards are known, and every
    pending one of an environment whose episode just ended. The return is
    ``sum_k gamma^k r_{t+k}`` over the steps available and the discount is
    ``gamma^k`` (``k`` = steps summed), or 0 when the episode terminated inside the
    window. With ``n = 1`` it is plain one-step Q-learning.
    """

    def __init__(self, n_envs: int, n: int, gamma: float) -> None:
        if n_envs < 1:
            raise RLConfigError(f"n_envs {n_envs} is out of range (allowed: >= 1)")
        if n < 1:
            raise RLConfigError(f"n-step {n} is out of range (allowed: >= 1)")
        if not 0.0 <= gamma <= 1.0:
            raise RLConfigError(f"gamma {gamma} is out of range (allowed: 0 to 1)")
        self.n_envs, self.n, self.gamma = n_envs, n, float(gamma)
        self._obs: np.ndarray | None = None  # [n, N, D], slot t % n holds step t
        self._act = np.zeros((n, n_envs), np.int64)
        self._rew = np.zeros((n, n_envs), np.float64)
        self._len = np.zeros(n_envs, np.int64)  # pending steps per environment
        self._t = 0

    def reset(self) -> None:
        """Forget every pending step (call after resetting the environments by hand)."""
        self._len[:] = 0

    def push(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
             terminated: np.ndarray, truncated: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Record one step of every environment; return the finished n-step transitions.

        Args:
            obs: ``[N, D]`` observations the actions were chosen from.
            actions: int ``[N]``.
            rewards: float ``[N]``.
            next_obs: ``[N, D]`` observations after the step; for an environment whose
                episode ended, its real final observation (not the auto-reset one).
            terminated: bool ``[N]``: the episode ended in a terminal state (no bootstrap).
            truncated: bool ``[N]`` (optional): the episode was cut short; bootstrap from
                ``next_obs``.

        Returns:
            ``(obs [M, D], actions [M], returns [M], next_obs [M, D], discounts [M])``,
            ``M >= 0``, ready for :meth:`ReplayBuffer.add`.
        """
        n, t = self.n, self._t
        if self._obs is None:
            self._obs = np.zeros((n, self.n_envs, obs.shape[1]), obs.dtype)
        slot = t % n
        self._obs[slot] = obs
        self._act[slot] = actions
        self._rew[slot] = rewards
        self._len = np.minimum(self._len + 1, n)
        term = np.asarray(terminated, bool)
        ended = term | (np.asarray(truncated, bool) if truncated is not None else False)

        out_o, out_a, out_r, out_n, out_d = [], [], [], [], []
        for j in range(n):  # transition starting j steps ago
            emit = (self._len > j) & (ended | (j == n - 1))
            if not emit.any():
                continue
            envs = np.flatnonzero(emit)
            start = (t - j) % n
            ret = np.zeros(len(envs))
            for k in range(j + 1):
                ret += self.gamma ** k * self._rew[(t - j + k) % n, envs]
            disc = np.where(term[envs], 0.0, self.gamma ** (j + 1))
            out_o.append(self._obs[start, envs])
            out_a.append(self._act[start, envs])
            out_r.append(ret)
            out_n.append(next_obs[envs])
            out_d.append(disc)
        full = (self._len == n) & ~ended
        self._len[full] = n - 1
        self._len[ended] = 0
        self._t += 1
        if not out_o:
            d = obs.shape[1]
            return (np.zeros((0, d), obs.dtype), np.zeros(0, np.int64), np.zeros(0, np.float32),
                    np.zeros((0, d), obs.dtype), np.zeros(0, np.float32))
        return (np.concatenate(out_o), np.concatenate(out_a), np.concatenate(out_r).astype(np.float32),
                np.concatenate(out_n), np.concatenate(out_d).astype(np.float32))


# ------------------------------------------------------------------------- replay

@dataclass
class ReplayBatch(Generic[ArrayT]):
    """A sampled minibatch: ``obs``/``next_obs`` float ``[B, D]``, ``actions`` int64
    ``[B]``, ``returns`` and ``discounts`` float32 ``[B]``, ``indices`` int64 ``[B]`` (buffer slots).

    numpy arrays as sampled (``ReplayBatch[np.ndarray]``); :meth:`to_torch` gives
    ``ReplayBatch[torch.Tensor]``."""

    obs: ArrayT
    actions: ArrayT
    returns: ArrayT
    next_obs: ArrayT
    discounts: ArrayT
    indices: ArrayT

    def to_torch(self: ReplayBatch[np.ndarray], device: Any = "cpu") -> ReplayBatch[torch.Tensor]:
        """The same batch as torch tensors (observations as float32) on ``device``."""
        import torch

        def f32(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)

        return ReplayBatch(obs=f32(self.obs), actions=torch.from_numpy(self.actions).to(device),
                           returns=f32(self.returns), next_obs=f32(self.next_obs), discounts=f32(self.discounts),
                           indices=torch.from_numpy(self.indices))


class ReplayBuffer:
    """A fixed-size circular replay memory of (obs, action, return, next_obs, discount).

    Observations are stored as ``obs_dtype`` (float16 by default: half the memory of
    float32, exact for one-hot and k/16 features, ~3 significant digits otherwise;
    pass ``np.float32`` for full precision). Memory is ``2 * capacity * D`` elements.
    Sampling is uniform with replacement from a seeded generator, so a run is
    reproducible. :meth:`state_dict` / :meth:`load_state_dict` save and restore it.
    """

    def __init__(self, capacity: int, obs_dim: int, *, obs_dtype: Any = np.float16, seed: int | None = 0) -> None:
        if capacity < 1:
            raise RLConfigError(f"replay capacity {capacity} is out of range (allowed: >= 1)")
        if obs_dim < 1:
            raise RLConfigError(f"obs_dim {obs_dim} is out of range (allowed: >= 1)")
        self.capacity, self.obs_dim = int(capacity), int(obs_dim)
        self.obs = np.zeros((capacity, obs_dim), obs_dtype)
        self.next_obs = np.zeros((capacity, obs_dim), obs_dtype)
        self.actions = np.zeros(capacity, np.int64)
        self.returns = np.zeros(capacity, np.float32)
        self.discounts = np.zeros(capacity, np.float32)
        self.pos = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, actions: np.ndarray, returns: np.ndarray, next_obs: np.ndarray,
            discounts: np.ndarray) -> None:
        """Append ``M`` transitions (shapes as returned by :meth:`NStepCollector.push`)."""
        m = len(actions)
        if m == 0:
            return
        if obs.shape != (m, self.obs_dim) or next_obs.shape != (m, self.obs_dim):
            raise RLConfigError(f"replay add: obs {obs.shape} / next_obs {next_obs.shape} do not match "
                                f"({m}, {self.obs_dim})")
        if m > self.capacity:  # keep the newest
            obs, actions, returns, next_obs, discounts = (x[-self.capacity:] for x in
                                                          (obs, actions, returns, next_obs, discounts))
            m = self.capacity
        idx = (self.pos + np.arange(m)) % self.capacity
        self.obs[idx] = obs
        self.next_obs[idx] = next_obs
        self.actions[idx] = actions
        self.returns[idx] = returns
        self.discounts[idx] = discounts
        self.pos = int((self.pos + m) % self.capacity)
        self.size = int(min(self.size + m, self.capacity))

    def sample(self, batch_size: int) -> ReplayBatch[np.ndarray]:
        """A uniform minibatch of ``batch_size`` transitions (numpy)."""
        if self.size == 0:
            raise RLConfigError("replay buffer is empty: add transitions before sampling (raise learning_starts)")
        idx = self.rng.integers(0, self.size, size=batch_size)
        return ReplayBatch(obs=self.obs[idx], actions=self.actions[idx], returns=self.returns[idx],
                           next_obs=self.next_obs[idx], discounts=self.discounts[idx], indices=idx)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: the filled part of the arrays, position and RNG state."""
        n = self.size
        return {"capacity": self.capacity, "obs_dim": self.obs_dim, "pos": self.pos, "size": n,
                "obs": self.obs[:n].copy(), "next_obs": self.next_obs[:n].copy(), "actions": self.actions[:n].copy(),
                "returns": self.returns[:n].copy(), "discounts": self.discounts[:n].copy(),
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (capacity and obs_dim must match)."""
        if state["capacity"] != self.capacity or state["obs_dim"] != self.obs_dim:
            raise RLConfigError(f"replay state has capacity {state['capacity']} x {state['obs_dim']}, this buffer "
                                f"{self.capacity} x {self.obs_dim}: resume with the same config")
        n = int(state["size"])
        for name in ("obs", "next_obs", "actions", "returns", "discounts"):
            getattr(self, name)[:n] = state[name]
        self.size, self.pos = n, int(state["pos"])
        self.rng.bit_generator.state = state["rng"]


# ------------------------------------------------------------------- torch parts

def double_dqn_targets(q_net: torch.nn.Module, target_net: torch.nn.Module, next_obs: torch.Tensor,
                       returns: torch.Tensor, discounts: torch.Tensor) -> torch.Tensor:
    """Double-DQN targets ``returns + discounts * Q_target(s', argmax_a Q_online(s', a))``, float32 ``[B]``.

    The online network picks the action and the target network values it (van Hasselt
    et al. 2016), which removes most of DQN's overestimation. No gradient flows.
    """
    import torch

    with torch.no_grad():
        return double_q_targets(q_net(next_obs), lambda best: target_net(next_obs).gather(1, best).squeeze(1),
                                returns, discounts)


def double_q_targets(q_online_next: torch.Tensor, target_value: Any, returns: torch.Tensor,
                     discounts: torch.Tensor, next_mask: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`double_dqn_targets` from precomputed online Q-values ``[B, A]`` of the next states.

    ``target_value(best)`` maps the chosen actions (int64 ``[B, 1]``) to the target
    network's values of them (``[B]``), so a caller whose action set is large (items of
    a catalog) evaluates the target network only where needed. No gradient flows.
    """
    import torch

    with torch.no_grad():
        q_online = q_online_next
        if next_mask is not None:
            q_online = q_online.masked_fill(~next_mask, float("-inf"))
        best = q_online.argmax(dim=1, keepdim=True)
        return returns + discounts * target_value(best)


def td_loss(q_values: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor, kind: str = "huber",
            weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean TD loss between ``Q(s, a)`` (``q_values [B, A]`` gathered at ``actions [B]``) and ``targets [B]``.

    ``kind``: ``"huber"`` (smooth L1, delta 1; robust to reward scale) or ``"mse"``.
    ``weights`` ``[B]`` (optional) weights each sample, e.g. importance weights.
    """
    import torch.nn.functional as F

    q_sa = q_values.gather(1, actions.long().unsqueeze(1)).squeeze(1)
    if kind == "huber":
        per = F.smooth_l1_loss(q_sa, targets, reduction="none")
    elif kind == "mse":
        per = F.mse_loss(q_sa, targets, reduction="none")
    else:
        raise RLConfigError(f"loss kind {kind!r} is not known: allowed are huber, mse")
    if weights is not None:
        per = per * weights
    return per.mean()


def soft_update(target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
    """Polyak averaging ``target <- tau * source + (1 - tau) * target`` (tau in (0, 1]; 1 is a hard copy)."""
    import torch

    if not 0.0 < tau <= 1.0:
        raise RLConfigError(f"tau {tau} is out of range (allowed: 0 < tau <= 1)")
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.lerp_(s, tau)
        for tb, sb in zip(target.buffers(), source.buffers()):
            tb.copy_(sb)


def hard_update(target: torch.nn.Module, source: torch.nn.Module) -> None:
    """Copy every parameter and buffer of ``source`` into ``target``."""
    target.load_state_dict(source.state_dict())
