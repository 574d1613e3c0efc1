"""The melody MDP: write a melody one 16th-note step at a time.

State: the melody so far plus its key-relative context and the requested style (the
observation of :func:`engine.mdp.observation.observe`). Action: one of 38 tokens (0 rest,
1 hold, 2..37 pitches). Reward: :class:`engine.mdp.rewards.RewardFunction` with the
episode's style weights; the last step's reward includes the end-of-melody parts of
the terms (cadence, unique extremes, pending leaps, arch). An episode is a melody of
1 to 16 bars whose chord progression loops over the bars; it ends after exactly
``bars x steps per bar`` steps (a true terminal: the observation shows the steps left).

:class:`VecMelodyEnv` steps N melodies at once in numpy and resets finished rows
itself (what DQN training uses); :class:`MelodyEnv` is the same MDP for one melody as
a ``gymnasium.Env``. Every row of a :class:`VecMelodyEnv` draws its episodes from its
own random stream, so row 0 of ``VecMelodyEnv(n, seed=s)`` plays exactly the episodes
of ``MelodyEnv`` reset with ``seed=s`` (given the same actions).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from engine.base.errors import EngineError
from engine.mdp import styles
from engine.mdp.observation import MelodyBatch, MelodyContext, obs_dim, observe, observe_rows
from engine.mdp.rewards import RewardFunction, available_terms
from engine.music import limits, theory, tokens

log = logging.getLogger(__name__)

#: Extra progressions drawn (besides the scale's default) when ``EnvConfig.progressions`` is empty.
EXTRA_PROGRESSIONS: dict[str, tuple[str, ...]] = {
    "major": ("I IV V I", "I vi IV V", "ii V I I", "I IV I V", "I V IV I"),
    "major_pentatonic": ("I IV V I", "I vi IV V"),
    "natural_minor": ("i iv v i", "i VII VI VII", "i iv VII III", "i VI iv v"),
    "minor_pentatonic": ("i iv v i", "i VII VI VII"),
    "harmonic_minor": ("i VI iv V", "i iv i V"),
    "dorian": ("i ii i IV", "i VII IV i"),
    "mixolydian": ("I VII I IV",),
}


@dataclass(frozen=True)
class EnvConfig:
    """Which melodies episodes ask for. Each field is sampled once per episode."""

    bars: tuple[int, int] = (1, 4)
    """Fewest and most bars of a melody (1..16); the count is drawn uniformly."""
    scales: tuple[str, ...] = theory.SCALE_NAMES
    """Scales/modes to draw from, uniformly (names or aliases, see :mod:`engine.music.theory`)."""
    time_signatures: tuple[tuple[int, int], ...] = ((4, 4), (3, 4))
    """Metres to draw from (any of :data:`engine.music.theory.TIME_SIGNATURES`)."""
    ts_probs: tuple[float, ...] | None = None
    """Probabilities of ``time_signatures`` (None: uniform)."""
    progressions: tuple[str, ...] = ()
    """Roman-numeral progressions, one chord per bar, e.g. ``"I V vi IV"``, drawn uniformly
    and read in the episode's scale. Empty: the scale's default progression
    (:data:`engine.music.theory.DEFAULT_PROGRESSIONS`) or one of :data:`EXTRA_PROGRESSIONS`."""
    roles: tuple[str, ...] = ("lead", "bass")
    """Roles to draw from (:data:`engine.music.tokens.ROLES`)."""
    role_probs: tuple[float, ...] | None = None
    """Probabilities of ``roles`` (None: uniform)."""
    style: str | None = None
    """None: a random style per episode (:func:`engine.mdp.styles.sample_style`, presets,
    blends and moods); else a fixed style spec such as ``"hook"`` or ``"folk,motif=2"``."""
    terms: tuple[str, ...] = styles.BUILTIN_TERMS
    """Reward terms, in style-weight order (built-in and registered custom terms)."""

    def validated(self) -> EnvConfig:
        """A copy with canonical names, or an :class:`EngineError` naming the bad field."""
        lo, hi = (self.bars if isinstance(self.bars, (tuple, list)) and len(self.bars) == 2 else (None, None))
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi <= limits.MAX_BARS):
            raise EngineError(f"EnvConfig.bars {self.bars!r} is not valid: expected (min, max) with "
                              f"1 <= min <= max <= {limits.MAX_BARS}")
        if not self.scales:
            raise EngineError("EnvConfig.scales is empty: give at least one scale, e.g. ('major',)")
        scales = tuple(theory.parse_scale(s) for s in self.scales)
        if not self.time_signatures:
            raise EngineError("EnvConfig.time_signatures is empty: give at least one, e.g. ((4, 4),)")
        tss = tuple(theory.parse_time_signature(ts) for ts in self.time_signatures)
        ts_probs = _probs("ts_probs", self.ts_probs, len(tss))
        if not self.roles:
            raise EngineError(f"EnvConfig.roles is empty: allowed are {', '.join(tokens.ROLES)}")
        roles = tuple(tokens.check_role(r) for r in self.roles)
        role_probs = _probs("role_probs", self.role_probs, len(roles))
        for prog in self.progressions:
            for scale in scales:
                theory.parse_progression(prog, 0, scale)
        terms = tuple(self.terms)
        known = available_terms()
        for t in terms:
            if t not in known:
                raise EngineError(f"EnvConfig.terms: reward term {t!r} is not known: available are {', '.join(known)}")
        if self.style is not None:
            styles.parse_style(self.style, terms)
        return dataclasses.replace(self, bars=(lo, hi), scales=scales, time_signatures=tss, ts_probs=ts_probs,
                                   roles=roles, role_probs=role_probs, progressions=tuple(self.progressions),
                                   terms=terms)

    @property
    def max_steps(self) -> int:
        """Steps of the longest melody this config can ask for."""
        return self.bars[1] * max(theory.steps_per_bar(ts) for ts in self.time_signatures)


def _probs(name: str, probs: Sequence[float] | None, n: int) -> tuple[float, ...] | None:
    if probs is None:
        return None
    p = np.asarray(probs, np.float64)
    if p.shape != (n,) or not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
        raise EngineError(f"EnvConfig.{name} {tuple(probs)!r} is not valid: expected {n} non-negative numbers "
                          "with a positive sum (one per choice)")
    return tuple(float(x) for x in p / p.sum())


def sample_episode(config: EnvConfig, rng: np.random.Generator,
                   cache: dict | None = None) -> tuple[MelodyContext, np.ndarray]:
    """Draw one episode's context and raw style weights (float32 ``[S]``) from ``config``
    (already :meth:`~EnvConfig.validated`). ``cache`` memoises parsed contexts."""
    bars = int(rng.integers(config.bars[0], config.bars[1] + 1))
    scale = config.scales[int(rng.integers(len(config.scales)))]
    ts = config.time_signatures[int(rng.choice(len(config.time_signatures), p=config.ts_probs))]
    choices = config.progressions or (theory.DEFAULT_PROGRESSIONS[scale], *EXTRA_PROGRESSIONS.get(scale, ()))
    prog = choices[int(rng.integers(len(choices)))]
    role = config.roles[int(rng.choice(len(config.roles), p=config.role_probs))]
    if config.style is None:
        weights = styles.sample_style(rng, config.terms)
    else:
        weights = styles.parse_style(config.style, config.terms)
    w = np.array([weights[t] for t in config.terms], np.float32)
    key = (bars, scale, ts, prog, role)
    ctx = cache.get(key) if cache is not None else None
    if ctx is None:
        ctx = MelodyContext.from_music(key=0, scale=scale, bars=bars, time_signature=ts, chords=prog, role=role,
                                       style=np.zeros(len(config.terms), np.float32))
        if cache is not None:
            cache[key] = ctx
    return dataclasses.replace(ctx, style=w / np.float32(styles.MAX_WEIGHT)), w


def _check_actions(actions: Any, n: int) -> np.ndarray:
    a = np.asarray(actions)
    if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
        if a.shape == (n,) and np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise EngineError(f"actions must be {n} integers (shape ({n},)), got shape {a.shape} of {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if n and (a.min() < 0 or a.max() >= tokens.N_ACTIONS):
        bad = int(a[(a < 0) | (a >= tokens.N_ACTIONS)][0])
        raise EngineError(f"action {bad} is out of range: allowed are 0-{tokens.N_ACTIONS - 1} "
                          "(0 rest, 1 hold, 2-37 pitches)")
    return a


class VecMelodyEnv:
    """N melody episodes stepped together in numpy; finished rows reset themselves.

    ``reset()`` returns observations float32 ``[N, D]``. ``step(actions)`` takes int
    ``[N]`` and returns ``(obs [N, D], reward float32 [N], done bool [N], info)``; ``obs``
    of a finished row is already the first observation of its next episode. ``info``:

    * ``terms``: float32 ``[N, S]`` raw per-term rewards of this step;
    * ``final_obs``: float32 ``[N, D]``, the observation after the last step (valid where done);
    * ``episode_return``: float32 ``[N]`` sum of rewards (valid where done);
    * ``episode_length``: int64 ``[N]`` steps (valid where done);
    * ``done_rows``: int64 indices of the rows that finished, and ``tokens``: their token
      sequences (a list of int64 arrays in the same order).
    """

    n_actions = tokens.N_ACTIONS

    def __init__(self, n_envs: int, config: EnvConfig = EnvConfig(), reward: RewardFunction | None = None,
                 seed: int = 0) -> None:
        if isinstance(n_envs, bool) or not isinstance(n_envs, (int, np.integer)) or not 1 <= n_envs <= 1 << 16:
            raise EngineError(f"n_envs {n_envs!r} is not valid: allowed are whole numbers 1-{1 << 16}")
        self.config = config.validated()
        self.terms: tuple[str, ...] = self.config.terms
        self.reward = reward if reward is not None else RewardFunction(self.terms)
        if tuple(self.reward.terms) != self.terms:
            raise EngineError(f"reward terms {self.reward.terms} differ from EnvConfig.terms {self.terms}: "
                              "build both from the same list")
        self.n_envs = int(n_envs)
        self.obs_dim: int = obs_dim(len(self.terms))
        self._cache: dict = {}
        self._seed(seed)
        self.batch: MelodyBatch | None = None
        self.contexts: list[MelodyContext] = []
        self.weights = np.zeros((self.n_envs, len(self.terms)), np.float32)
        self._returns = np.zeros(self.n_envs, np.float64)
        self._obs: np.ndarray | None = None

    def _seed(self, seed: int | None) -> None:
        children = np.random.SeedSequence(seed).spawn(self.n_envs)
        self._rngs = [np.random.default_rng(c) for c in children]

    def _sample(self, row: int) -> MelodyContext:
        ctx, w = sample_episode(self.config, self._rngs[row], self._cache)
        self.weights[row] = w
        return ctx

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start new episodes in every row; ``seed`` reseeds every row's stream. Returns ``[N, D]``."""
        if seed is not None:
            self._seed(seed)
        self.contexts = [self._sample(i) for i in range(self.n_envs)]
        self.batch = MelodyBatch.create(self.contexts, length=self.config.max_steps)
        self._returns[:] = 0.0
        self._obs = observe(self.batch)
        return self._obs

    def step(self, actions: Any, prior_log_probs: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Append one token per row; see the class docstring for what comes back.

        ``prior_log_probs`` (optional): the reward's prior on the current observations
        (float32 ``[N, 38]``), when the caller has computed it already.
        """
        if self.batch is None or self._obs is None:
            raise EngineError("VecMelodyEnv.step called before reset(): call reset() first")
        batch = self.batch
        a = _check_actions(actions, self.n_envs)
        total, raw = self.reward(batch, a, self.weights, obs=self._obs, prior_log_probs=prior_log_probs)
        batch.append(a)
        self._returns += total
        done = batch.step >= batch.n_steps
        obs = observe(batch)
        info: dict[str, Any] = {"terms": raw, "final_obs": obs}
        rows = np.flatnonzero(done)
        info["done_rows"] = rows
        info["episode_return"] = self._returns.astype(np.float32)
        info["episode_length"] = batch.step.copy()
        info["tokens"] = [batch.tokens[r, : batch.n_steps[r]].copy() for r in rows]
        if len(rows):
            contexts = [self._sample(int(r)) for r in rows]
            for r, c in zip(rows, contexts):
                self.contexts[r] = c
            batch.reset_rows(rows, contexts)
            self._returns[rows] = 0.0
            obs = obs.copy()
            obs[rows] = observe_rows(batch, rows)
        self._obs = obs
        return obs, total, done, info


class MelodyEnv(gymnasium.Env):
    """One melody episode as a ``gymnasium.Env``: ``Discrete(38)`` actions, ``Box`` observations.

    ``reset(seed=s)`` draws the episode like row 0 of ``VecMelodyEnv(n, seed=s)``.
    ``reset(options={"context": MelodyContext, "style": spec})`` plays a given context
    and/or style instead of drawing them. ``info["terms"]`` maps each term to its raw
    reward for the step; at the end ``info["tokens"]`` holds the melody.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 8}

    def __init__(self, config: EnvConfig = EnvConfig(), reward: RewardFunction | None = None,
                 render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise EngineError(f"render_mode {render_mode!r} is not supported: allowed are None, 'ansi'")
        self.render_mode = render_mode
        self.config = config.validated()
        self.terms = self.config.terms
        self.reward = reward if reward is not None else RewardFunction(self.terms)
        if tuple(self.reward.terms) != self.terms:
            raise EngineError(f"reward terms {self.reward.terms} differ from EnvConfig.terms {self.terms}")
        d = obs_dim(len(self.terms))
        self.action_space = spaces.Discrete(tokens.N_ACTIONS)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(d,), dtype=np.float32)
        self._rng: np.random.Generator | None = None
        self._cache: dict = {}
        self.batch: MelodyBatch | None = None
        self.context: MelodyContext | None = None
        self.weights = np.zeros((1, len(self.terms)), np.float32)
        self._obs: np.ndarray | None = None
        self._done = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        elif self._rng is None:
            self._rng = np.random.default_rng(self.np_random.integers(1 << 63))
        ctx, w = sample_episode(self.config, self._rng, self._cache)
        options = dict(options or {})
        if "style" in options:
            weights = styles.parse_style(options.pop("style"), self.terms)
            w = np.array([weights[t] for t in self.terms], np.float32)
            ctx = dataclasses.replace(ctx, style=w / np.float32(styles.MAX_WEIGHT))
        if "context" in options:
            given = options.pop("context")
            if not isinstance(given, MelodyContext) or len(given.style) != len(self.terms):
                raise EngineError(f"reset option 'context' must be a MelodyContext with {len(self.terms)} style terms")
            if given.n_steps > limits.MAX_BARS * theory.MAX_STEPS_PER_BAR:
                raise EngineError(f"context of {given.n_steps} steps is longer than {limits.MAX_BARS} bars")
            ctx = dataclasses.replace(given, style=w / np.float32(styles.MAX_WEIGHT))
        if options:
            raise EngineError(f"unknown reset options {sorted(options)}: allowed are 'context', 'style'")
        self.context = ctx
        self.weights[0] = w
        self.batch = MelodyBatch.create([ctx])
        self._obs = observe(self.batch)
        self._done = False
        return self._obs[0], {"context": ctx}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done or self.batch is None:
            raise EngineError("MelodyEnv.step called on a finished or unstarted episode: call reset() first")
        a = _check_actions(np.asarray(action).reshape(1), 1)
        total, raw = self.reward(self.batch, a, self.weights, obs=self._obs)
        self.batch.append(a)
        self._obs = observe(self.batch)
        terminated = bool(self.batch.step[0] >= self.batch.n_steps[0])
        info: dict[str, Any] = {"terms": dict(zip(self.terms, raw[0].tolist()))}
        if terminated:
            self._done = True
            info["tokens"] = self.batch.tokens[0, : self.batch.n_steps[0]].copy()
        return self._obs[0], float(total[0]), terminated, False, info

    def render(self) -> str | None:
        """``ansi``: the melody so far as text (``.`` rest, ``-`` hold, signed semitones from the tonic)."""
        if self.render_mode != "ansi" or self.batch is None:
            return None
        names = tokens.action_names()
        seq = self.batch.tokens[0, : self.batch.step[0]]
        return " ".join("." if t == tokens.REST else "-" if t == tokens.HOLD else names[t] for t in seq)
