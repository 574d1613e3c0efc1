"""Tune a KL policy toward a musician's taste, with KL control against the policy itself.

The shipped policy ``pi_0(a|s) ∝ p(a|s) exp(G_0(s, a))`` (corpus prior ``p`` and G-network
``G_0``, :class:`~engine.learn.seqmodel.KLPolicyNet`) is the reference. The tuned policy is
the same network with a new G-network ``G``, started as a copy of ``G_0`` that also reads
one more style column, ``taste``; it acts by ``p(a|s) exp(G(s, a))``, so it costs exactly
what the shipped model costs at generation time. Training is the G-learning of
:mod:`engine.learn.kl_train` with ``pi_0`` as the reference: ``H = G - G_0`` is the soft
(KL-regularised) Q-function of ``pi ∝ pi_0 exp(H)``, which maximises
``E[sum r] - c KL(pi || pi_0)``. Its target here is the played clip's own soft return::

    H(s_t, a_t) <- r_t / c + sum_{k>t} gamma^(k-t) (r_k / c - log pi(a_k|s_k) / pi_0(a_k|s_k))

(soft policy iteration with Monte-Carlo targets) rather than training's one-step backup
through a target network: a clip's reward reaches every step at once, which is what lets
a few hundred clips do. With ``gamma = 1`` the optimum over whole clips is
``pi(clip) ∝ pi_0(clip) exp(w z(clip) / c)``: the shipped model's clips re-weighted by the
reward model's odds of a keep ``exp(z)`` to the power ``w / c``.

The reward: ``w * z(clip)``, where ``z`` is the reward model's log-odds of a keep and
``w`` the episode's taste weight, which is also the observation's ``taste`` column
(``w / 5``). It is paid bar by bar as the change of ``w * z(prefix)`` (potential-based
shaping: the sum over a clip is exactly ``w * z(clip)``, so the optimum is the same, and
each bar learns from what it did). Episodes draw ``w`` from :attr:`TuneConfig.taste_weights`
and a context (key, scale, chords, metre, bars, style) from the clips the musician
judged, so the model learns to follow the dial (``taste=0``: no taste reward, near the
shipped policy) in the settings the musician works in.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from engine.base.errors import EngineError
from engine.learn.kl_train import EpisodeReplay, masked_huber_step
from engine.learn.seqmodel import KLPolicyNet, SeqConfig, SeqNet
from engine.mdp import observation, styles
from engine.music import theory, tokens

log = logging.getLogger(__name__)

#: The KL coefficients ``qriff tune --kl`` accepts.
KL_RANGE = (0.05, 100.0)
#: The default KL coefficient, chosen on the development tastes of the simulated musician
#: (:data:`engine.evaluation.musician.DEV_TASTES`), never on the evaluation tastes: of 3, 2 and 1.5,
#: the strongest push whose tuned models' realism rose by at most 0.03 on average (docs/taste.md).
DEFAULT_KL = 1.5

#: ``(seqs, steps_per_bar) -> log-odds of a keep``: the reward model as the tuner calls it. One that
#: also takes a ``contexts`` keyword is handed each melody's :class:`TuneContext` (its scale, chords
#: and metre: what the ``embedding`` representation reads).
ScoreFn = Callable[..., np.ndarray]


def reads_contexts(score: ScoreFn) -> bool:
    """Whether ``score`` takes the melodies' contexts (a ``contexts`` parameter)."""
    try:
        return "contexts" in inspect.signature(score).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return False


class TuneError(EngineError, ValueError):
    """A tuning option or input is out of range."""


@dataclass
class TuneConfig:
    """One tuning run (saved in the personal model's metadata)."""

    seed: int = 0
    """Seeds torch, numpy, the contexts, taste weights and replay sampling."""
    kl_coef: float = DEFAULT_KL
    """c: the reward is divided by it (objective ``E[sum r] - c KL(pi || pi_shipped)``); larger stays nearer."""
    episodes: int = 512
    """Training episodes (clips) generated."""
    n_envs: int = 32
    """Episodes generated together."""
    batch_episodes: int = 16
    """Whole episodes per gradient step."""
    updates_per_episode: float = 1.0
    """Gradient steps per generated episode."""
    replay_episodes: int = 384
    """Replay capacity in episodes (the oldest go first)."""
    lr: float = 1e-3
    """Adam learning rate for G."""
    gamma: float = 1.0
    """Discount per step: 1, so the optimum is the clip-level re-weighting of the module doc."""
    lam: float = 1.0
    """lambda of the soft lambda-return targets: 1 is the played clip's Monte-Carlo soft return, lower
    mixes in the network's own soft value of the next state (less variance, some bias)."""
    max_grad_norm: float = 5.0
    """Global gradient norm clip."""
    taste_weights: tuple[float, float] = (-2.0, 4.0)
    """Range the episodes' taste weights are drawn from (uniformly), for the episodes not at the default."""
    default_share: float = 0.25
    """Share of the episodes played at the default taste weight (1)."""
    reward_every: int = 0
    """Pay the reward every this many steps (the change of the reward model's score of the clip so far);
    0: at each bar's end."""
    max_bars: int = 8
    """Contexts of longer clips are cut to this many bars (training cost grows with length)."""
    quiet: bool = False
    """No progress bar."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes recorded with the run."""

    def validate(self) -> None:
        lo, hi = self.taste_weights
        checks = [
            ("kl_coef", KL_RANGE[0] <= self.kl_coef <= KL_RANGE[1], f"{KL_RANGE[0]:g} to {KL_RANGE[1]:g}"),
            ("episodes", self.episodes >= 1, ">= 1"),
            ("n_envs", 1 <= self.n_envs <= 1024, "1 to 1024"),
            ("batch_episodes", 1 <= self.batch_episodes <= self.replay_episodes, "1 to replay_episodes"),
            ("updates_per_episode", 0.0 <= self.updates_per_episode <= 16.0, "0 to 16"),
            ("lr", 0.0 < self.lr < 1.0, "0 < lr < 1"),
            ("gamma", 0.0 <= self.gamma <= 1.0, "0 to 1"),
            ("lam", 0.0 <= self.lam <= 1.0, "0 to 1"),
            ("taste_weights", -styles.MAX_WEIGHT <= lo <= hi <= styles.MAX_WEIGHT,
             f"(lo, hi) within -{styles.MAX_WEIGHT:g}..{styles.MAX_WEIGHT:g}"),
            ("max_bars", 1 <= self.max_bars <= 16, "1 to 16"),
            ("default_share", 0.0 <= self.default_share <= 1.0, "0 to 1"),
            ("reward_every", 0 <= self.reward_every <= 64, "0 (each bar) to 64 steps"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise TuneError(f"TuneConfig.{name} {getattr(self, name)!r} is out of range (allowed: {allowed})")


def check_kl(value: float) -> float:
    """``value`` as a KL coefficient, or TuneError naming the allowed range."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and KL_RANGE[0] <= value <= KL_RANGE[1]):
        raise TuneError(f"--kl {value!r} is out of range (allowed: {KL_RANGE[0]:g} to {KL_RANGE[1]:g}; "
                        "larger stays nearer the shipped model)")
    return float(value)


def taste_network(g0: SeqNet) -> SeqNet:
    """A copy of ``g0`` reading one more column (``taste``, weight 0), so it starts equal to ``g0``."""
    c = g0.config
    g = SeqNet(SeqConfig(obs_dim=c.obs_dim + 1, embed=c.embed, hidden=c.hidden, head=c.head))
    with torch.no_grad():
        state = {k: v.clone() for k, v in g0.state_dict().items()}
        w = torch.zeros(c.embed, c.obs_dim + 1)
        w[:, : c.obs_dim] = state.pop("inp.weight")
        state["inp.weight"] = w
        g.load_state_dict(state)
    return g


@dataclass(frozen=True)
class TuneContext:
    """Where an episode is played: the setting of one judged clip."""

    key: str
    scale: str
    bars: int
    time_signature: tuple[int, int]
    chords: tuple[str, ...]
    style: dict[str, float]


def soft_returns(rew: torch.Tensor, logratio: torch.Tensor, mask: torch.Tensor, kl_coef: float,
                 gamma: float, value: torch.Tensor | None = None, lam: float = 1.0) -> torch.Tensor:
    """Soft Q targets ``[B, T]``: ``y_t = r_t / c + gamma U_{t+1}``, where the soft value of the next
    state is ``U_{t+1} = lam (y_{t+1} - log pi/pi_0 (a_{t+1}|s_{t+1})) + (1 - lam) V(s_{t+1})``
    (0 past the end). With ``lam = 1`` (or no ``value``) this is the Monte-Carlo soft return
    ``r_t / c + sum_{k>t} gamma^(k-t) (r_k / c - log pi/pi_0 (a_k|s_k))``; ``value`` ``[B, T]`` is
    ``V(s_t) = log sum_a pi_0(a|s_t) exp(H(s_t, a))``, the soft value of the network being trained.
    (``logratio``: ``log pi(a_k|s_k) - log pi_0(a_k|s_k)`` of the policy that played; steps past an
    episode's end are masked out.)"""
    if value is None:
        lam = 1.0
        value = torch.zeros_like(rew)
    m = mask.float() if mask.dtype == torch.bool else mask
    out = torch.zeros_like(rew)
    nxt_y = torch.zeros(rew.shape[0])
    nxt_ratio = torch.zeros(rew.shape[0])
    nxt_v = torch.zeros(rew.shape[0])
    nxt_m = torch.zeros(rew.shape[0])
    for t in range(rew.shape[1] - 1, -1, -1):
        u = (lam * (nxt_y - nxt_ratio) + (1.0 - lam) * nxt_v) * nxt_m
        out[:, t] = (rew[:, t] / kl_coef + gamma * u) * m[:, t]
        nxt_y, nxt_ratio, nxt_v, nxt_m = out[:, t], logratio[:, t], value[:, t], m[:, t]
    return out


def shaped_rewards(score: ScoreFn, seqs: list[np.ndarray], spbs: list[int], weights: np.ndarray,
                   every: int | None = None, contexts: Sequence[TuneContext] | None = None) -> list[np.ndarray]:
    """Per-step rewards of each melody, paid every ``every`` steps (None: at each bar's end): at step
    ``k`` (the last of a payment), ``w * (z(prefix to k) - z(previous payment's prefix))`` (``z`` of
    nothing: 0), so each melody's rewards sum to ``w * z(melody)``. A prefix that ends inside a bar
    is scored with the bar filled by holds (the last note held to the bar line), as the reward
    model reads whole bars. With ``contexts`` (one per melody), ``score`` is called with
    ``contexts=`` (each prefix's melody's context)."""
    prefixes, owner = [], []
    for i, (s, spb) in enumerate(zip(seqs, spbs)):
        step = spb if every is None else max(1, min(int(every), spb))
        ends = list(range(step, len(s), step)) + [len(s)]
        for k in ends:
            pre = s[:k]
            pad = (-k) % spb
            if pad:
                pre = np.concatenate([pre, np.full(pad, tokens.HOLD, pre.dtype)])
            prefixes.append(pre)
            owner.append((i, k))
    prefix_spbs = [spbs[i] for i, _ in owner]
    z = np.asarray(score(prefixes, prefix_spbs) if contexts is None
                   else score(prefixes, prefix_spbs, contexts=[contexts[i] for i, _ in owner]), np.float64)
    out = [np.zeros(len(s), np.float32) for s in seqs]
    prev = np.zeros(len(seqs))
    for (i, k), v in zip(owner, z):
        out[i][k - 1] = weights[i] * (v - prev[i])
        prev[i] = v
    return out


def tune_policy(base: KLPolicyNet, base_terms: Sequence[str], contexts: Sequence[TuneContext], score: ScoreFn,
                config: TuneConfig, progress_cb: Callable[[dict[str, float]], None] | None = None
                ) -> tuple[KLPolicyNet, dict[str, Any]]:
    """Tune ``base`` (its style columns: ``base_terms``) toward ``score``; returns the tuned
    policy (reading ``base_terms + ("taste",)``) and a log."""
    config.validate()
    if base.g is None or type(base) is not KLPolicyNet:
        raise TuneError(f"the base model is a {type(base).__name__} without a KL G-network: tune a KL model "
                        "(the shipped default or a personal model)")
    if base.obs_dim != observation.obs_dim(len(base_terms)):
        raise TuneError(f"the base network reads {base.obs_dim} columns, but {len(base_terms)} style terms give "
                        f"{observation.obs_dim(len(base_terms))}")
    if styles.TASTE_TERM in base_terms:
        raise TuneError("the base model already reads a taste column: tune the shipped model (or one without taste)")
    if not contexts:
        raise TuneError("no contexts to play in: tuning needs the judged clips' settings")
    torch.set_num_threads(1)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    prior = copy.deepcopy(base.prior).eval()
    g0 = copy.deepcopy(base.g).eval()
    for p in g0.parameters():
        p.requires_grad_(False)
    g = taste_network(g0)
    opt = torch.optim.Adam(g.parameters(), lr=config.lr)
    d = g.config.obs_dim
    spb_max = max(theory.steps_per_bar(c.time_signature) for c in contexts)
    replay = EpisodeReplay(config.replay_episodes, config.max_bars * spb_max, config.seed,
                           steps={"obs": ((d,), np.float16), "act": ((), np.int64), "rew": ((), np.float32),
                                  "g0": ((tokens.N_ACTIONS,), np.float32), "lref": ((tokens.N_ACTIONS,), np.float32),
                                  "logratio": ((), np.float32)})
    lo, hi = config.taste_weights
    episodes = updates = 0
    debt = 0.0
    history: list[dict[str, float]] = []
    returns: list[float] = []
    losses: list[float] = []
    show = not config.quiet and sys.stderr.isatty()
    bar = tqdm(total=config.episodes, desc=f"tune c={config.kl_coef:g}", unit="clip", disable=not show)
    cache: dict[tuple[Any, ...], np.ndarray] = {}
    with_contexts = reads_contexts(score)
    while episodes < config.episodes:
        n = min(config.n_envs, config.episodes - episodes)
        picks = rng.integers(len(contexts), size=n)
        w = rng.uniform(lo, hi, n)
        w[rng.random(n) < config.default_share] = styles.TERM_DEFAULTS[styles.TASTE_TERM]
        ctxs = []
        for i, k in enumerate(picks):
            c = contexts[k]
            key = (k,)
            if key not in cache:
                cache[key] = styles.style_vector(styles.parse_style(c.style, base_terms), base_terms)
            vec = np.concatenate([cache[key], [w[i] / styles.MAX_WEIGHT]]).astype(np.float32)
            ctxs.append(observation.MelodyContext.from_music(
                key=c.key, scale=c.scale, bars=min(c.bars, config.max_bars), time_signature=c.time_signature,
                chords=list(c.chords) or None, style=vec))
        batch = observation.MelodyBatch.create(ctxs)
        t_max = int(batch.n_steps.max())
        obs_buf = np.zeros((n, t_max, d), np.float16)
        act_buf = np.zeros((n, t_max), np.int64)
        g0_buf = np.zeros((n, t_max, tokens.N_ACTIONS), np.float32)
        lref_buf = np.zeros((n, t_max, tokens.N_ACTIONS), np.float32)
        ratio_buf = np.zeros((n, t_max), np.float32)
        hp, hg = prior.state_size, g0.state_size
        state = torch.zeros(n, hp + hg + g.state_size)
        with torch.no_grad():
            for t in range(t_max):
                o = observation.observe(batch)
                ot = torch.from_numpy(o)
                lp, sp = prior.step(ot, state[:, :hp])
                lp = torch.log_softmax(lp, -1)
                q0, s0 = g0.step(ot, state[:, hp:hp + hg])
                q, sg = g.step(ot, state[:, hp + hg:])
                state = torch.cat([sp, s0, sg], dim=-1)
                logits = (lp + q).numpy()
                a = (logits + rng.gumbel(size=logits.shape)).argmax(axis=1)
                obs_buf[:, t], act_buf[:, t] = o, a
                lref = torch.log_softmax(lp + q0, -1).numpy()
                lpi = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
                ratio_buf[:, t] = (lpi - lref)[np.arange(n), a]
                g0_buf[:, t] = q0.numpy()
                lref_buf[:, t] = lref
                active = batch.step < batch.n_steps
                batch.append(a, active)
        lengths = [int(x) for x in batch.n_steps]
        seqs = [act_buf[i, : lengths[i]].copy() for i in range(n)]
        spbs = [ctx.steps_per_bar for ctx in ctxs]
        rews = shaped_rewards(score, seqs, spbs, w, config.reward_every or None,
                              [contexts[k] for k in picks] if with_contexts else None)
        for i in range(n):
            k = lengths[i]
            replay.add(obs=obs_buf[i, :k], act=act_buf[i, :k], rew=rews[i], g0=g0_buf[i, :k], lref=lref_buf[i, :k],
                       logratio=ratio_buf[i, :k])
            returns.append(float(rews[i].sum()))
        episodes += n
        bar.update(n)
        debt += config.updates_per_episode * n
        while debt >= 1.0 and replay.size >= config.batch_episodes:
            debt -= 1.0
            b = replay.sample(config.batch_episodes)
            gq = g(b["obs"])[0]
            hall = gq - b["g0"]
            with torch.no_grad():
                v = torch.logsumexp(b["lref"] + hall, dim=-1) if config.lam < 1.0 else None
                y = soft_returns(b["rew"], b["logratio"], b["mask"].float(), config.kl_coef, config.gamma, v,
                                 config.lam)
            h = hall.gather(-1, b["act"].unsqueeze(-1)).squeeze(-1)
            loss = masked_huber_step(opt, g, h, y, b["mask"], config.max_grad_norm)
            updates += 1
            losses.append(float(loss.detach()))
        row = {"episodes": episodes, "updates": updates, "seconds": round(time.perf_counter() - t0, 1),
               "mean_return": float(np.mean(returns[-256:])),
               "loss": float(np.mean(losses[-64:])) if losses else math.nan}
        history.append(row)
        bar.set_postfix(ret=f"{row['mean_return']:.2f}", loss=f"{row['loss']:.4f}")
        if progress_cb is not None:
            progress_cb(row)
    bar.close()
    tuned = KLPolicyNet(prior, g.eval())
    log_out = {"config": asdict(config), "history": history, "episodes": episodes, "updates": updates,
               "seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1)}
    return tuned, log_out


def tuned_terms(base_terms: Sequence[str]) -> tuple[str, ...]:
    """The style terms a tuned model reads: the base's, then ``taste``."""
    return (*base_terms, styles.TASTE_TERM)


__all__ = ["DEFAULT_KL", "KL_RANGE", "ScoreFn", "TuneConfig", "TuneContext", "TuneError", "check_kl", "reads_contexts",
           "shaped_rewards", "soft_returns",
           "taste_network", "tune_policy", "tuned_terms"]
