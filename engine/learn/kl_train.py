"""Q-learning with KL control against the recurrent corpus prior (RL Tuner's G-learning).

The policy is ``pi(a|s) ∝ p(a|s) exp(G(s, a))``: the frozen corpus prior ``p`` (a
:class:`~engine.learn.seqmodel.SeqNet`) times what the G-network adds. G starts as a copy
of the prior with a zero output layer, so training starts *at* the prior. It learns the
soft Bellman backup of the theory reward divided by the KL coefficient ``c``::

    G(s_t, a_t) <- r_t / c + gamma * log sum_a' p(a'|s_{t+1}) exp(G'(s_{t+1}, a'))

(``G'``: the slowly updated target network; 0 after the last step). This maximises
``E[sum r] - c * KL(pi || p)``: a large ``c`` keeps the melodies close to the corpus, a
small one lets the theory terms win. With the theory reward at zero, ``G = 0`` is the
fixed point (the targets are exactly 0), so the trained policy *is* the prior.

``mode="dqn"`` is the ablation without KL: the same network and initialisation, a hard
``max`` backup of ``r / c`` and no prior in the policy (``pi ∝ exp(Q)``).

Episodes (1-8 bars by default, at most 16) are replayed whole: the networks are
unrolled over the stored observation sequence from a zero state, so no recurrent state
is ever stored. The reward is the environment's (:class:`engine.mdp.rewards.RewardFunction`)
with the ``prior`` term's weight set to 0: the prior enters through the KL only.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from engine.base.errors import EngineError
from engine.learn.seqmodel import KLPolicyNet, QOnlyPolicyNet, SeqNet, g_network_from_prior
from engine.mdp import observation, styles
from engine.mdp.env import EnvConfig, VecMelodyEnv
from engine.mdp.rewards import RewardFunction, available_terms
from engine.music import tokens

log = logging.getLogger(__name__)

MODES = ("kl", "dqn")
#: The smallest style weight of ``prior`` that scales the KL coefficient (0 would remove the KL).
MIN_PRIOR_WEIGHT = 0.1


class KLTrainError(EngineError):
    """A KL-training option is out of range."""


@dataclass
class KLConfig:
    """One KL-control training run (saved in the model's metadata)."""

    seed: int = 0
    """Seeds torch, numpy, the environments and replay sampling."""
    mode: str = "kl"
    """``kl`` (G-learning against the prior) or ``dqn`` (no KL: hard max backup, the ablation)."""
    kl_coef: float = 1.0
    """c: the reward is divided by it (objective ``E[sum r] - c KL(pi || prior)``); larger stays nearer the prior."""
    kl_by_style: bool = True
    """Scale c by each episode's style weight of the ``prior`` term (at least ``MIN_PRIOR_WEIGHT``):
    folk (1.0) stays nearer the corpus than hook (0.3), and ``prior=2`` in a style asks for more realism."""
    theory_weight: float = 1.0
    """Multiplier of every theory term; 0 leaves only the KL (the policy must stay the prior)."""
    gamma: float = 0.99
    """Discount per 16th-note step."""
    episodes: int = 12_000
    """Training episodes collected."""
    n_envs: int = 64
    """Episodes stepped together."""
    bars: tuple[int, int] = (1, 8)
    """Fewest and most bars of a training episode."""
    lr: float = 3e-4
    """Adam learning rate for G."""
    batch_episodes: int = 16
    """Whole episodes per gradient step."""
    replay_episodes: int = 1500
    """Replay capacity in episodes (observations in float16)."""
    learning_starts: int = 300
    """Episodes collected before the first gradient step."""
    updates_per_episode: float = 0.08
    """Gradient steps per collected episode."""
    tau: float = 0.01
    """Soft target update per gradient step."""
    max_grad_norm: float = 5.0
    """Global gradient norm clip."""
    explore_epsilon: float = 0.03
    """Probability of a uniform random action while collecting (on top of sampling pi)."""
    style: str | None = None
    """None: a random style per episode (presets, blends, moods); else a fixed style spec."""
    log_every: int = 500
    """Episodes between log rows."""
    eval_every: int = 3000
    """Episodes between evaluations of every preset style (and one at the end); 0: only at the end."""
    eval_clips: int = 64
    """Clips per style in each evaluation (8 bars, C major, temperature 1)."""
    quiet: bool = False
    """No progress bar."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes recorded with the run (e.g. the command)."""

    def validate(self) -> None:
        checks = [
            ("mode", self.mode in MODES, f"one of {', '.join(MODES)}"),
            ("kl_coef", 0.0 < self.kl_coef <= 1000.0, "0 < c <= 1000"),
            ("theory_weight", 0.0 <= self.theory_weight <= 100.0, "0 to 100"),
            ("gamma", 0.0 <= self.gamma <= 1.0, "0 to 1"),
            ("episodes", self.episodes >= 1, ">= 1"),
            ("n_envs", 1 <= self.n_envs <= 4096, "1 to 4096"),
            ("bars", 1 <= self.bars[0] <= self.bars[1] <= 16, "(min, max) with 1 <= min <= max <= 16"),
            ("lr", 0.0 < self.lr < 1.0, "0 < lr < 1"),
            ("batch_episodes", self.batch_episodes >= 1, ">= 1"),
            ("replay_episodes", self.replay_episodes >= self.batch_episodes, ">= batch_episodes"),
            ("updates_per_episode", 0.0 <= self.updates_per_episode <= 16.0, "0 to 16"),
            ("tau", 0.0 < self.tau <= 1.0, "0 < tau <= 1"),
            ("explore_epsilon", 0.0 <= self.explore_epsilon < 1.0, "0 <= eps < 1"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise KLTrainError(f"KLConfig.{name} {getattr(self, name)!r} is out of range (allowed: {allowed})")


class EpisodeReplay:
    """Whole episodes in a ring (the oldest goes first), each field padded to ``t_max`` steps.

    ``steps`` names the per-step fields: ``{name: (shape of one step, dtype)}`` (observations
    are stored as float16 and sampled as float32); ``episode`` names per-episode values:
    ``{name: (default, dtype)}``. :meth:`sample` returns torch tensors of every field cut to
    the longest sampled episode, and ``mask`` (bool ``[n, T]``, True on real steps).
    KL training keeps observations, actions, rewards and the prior's log-probabilities
    (``KL_STEPS``) with a KL coefficient per episode; ``qriff tune`` its own fields.
    """

    def __init__(self, capacity: int, t_max: int, seed: int, steps: Mapping[str, tuple[tuple[int, ...], Any]],
                 episode: Mapping[str, tuple[float, Any]] | None = None) -> None:
        self.steps = {name: np.zeros((capacity, t_max, *shape), dtype) for name, (shape, dtype) in steps.items()}
        self.episode = {name: np.full(capacity, default, dtype) for name, (default, dtype) in (episode or {}).items()}
        self._defaults = {name: default for name, (default, _) in (episode or {}).items()}
        self.length = np.zeros(capacity, np.int64)
        self.capacity, self.size, self.next = capacity, 0, 0
        self.rng = np.random.default_rng(seed)

    def add(self, **values: Any) -> None:
        """One episode: every per-step field (arrays of its length), per-episode values optional."""
        i = self.next
        n = len(values[next(iter(self.steps))])
        for name, store in self.steps.items():
            store[i, :n] = values[name]
        for name, store in self.episode.items():
            store[i] = values.get(name, self._defaults[name])
        self.length[i] = n
        self.next = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        idx = self.rng.choice(self.size, size=min(n, self.size), replace=False)
        t = int(self.length[idx].max())
        out = {name: torch.from_numpy(store[idx, :t].astype(np.float32) if store.dtype == np.float16
                                      else store[idx, :t]) for name, store in self.steps.items()}
        out.update({name: torch.from_numpy(store[idx]) for name, store in self.episode.items()})
        out["mask"] = torch.from_numpy(np.arange(t)[None, :] < self.length[idx][:, None])
        return out


def soft_targets(mode: str, g_target: torch.Tensor, lp: torch.Tensor, rew: torch.Tensor, mask: torch.Tensor,
                 kl_coef: float | torch.Tensor, gamma: float) -> torch.Tensor:
    """Backup targets ``[B, T]``: ``r/c + gamma * V(s_{t+1})``, V = 0 after an episode's last step.

    ``kl_coef``: a number, or one per episode (``[B, 1]``).

    ``kl``: ``V(s) = logsumexp_a(log p(a|s) + G'(s, a))``; ``dqn``: ``V(s) = max_a Q'(s, a)``.
    """
    if mode == "kl":
        # minus logsumexp(lp), which is 0 up to rounding: with G' = 0 the value is then exactly
        # 0, so a zero reward gives zero targets and zero gradients (Adam would amplify 1e-7s)
        v = torch.logsumexp(lp + g_target, dim=-1) - torch.logsumexp(lp, dim=-1)
    else:
        v = g_target.max(dim=-1).values
    nxt = torch.zeros_like(v)
    nxt[:, :-1] = v[:, 1:] * mask[:, 1:]
    return rew / kl_coef + gamma * nxt


def act_logits(mode: str, g: torch.Tensor, lp: torch.Tensor) -> torch.Tensor:
    """What the policy samples from: ``log p + G`` (kl) or ``Q`` (dqn)."""
    return lp + g if mode == "kl" else g


def masked_huber_step(opt: torch.optim.Optimizer, net: torch.nn.Module, pred: torch.Tensor, target: torch.Tensor,
                      mask: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    """One optimiser step on the smooth-L1 loss of ``pred`` against ``target`` over the real
    steps (``mask`` True) of padded episodes, gradients clipped to ``max_grad_norm``; the loss."""
    m = mask.float()
    loss = (torch.nn.functional.smooth_l1_loss(pred, target, reduction="none") * m).sum() / m.sum()
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), max_grad_norm)
    opt.step()
    return loss


def train_kl(config: KLConfig, prior: SeqNet, out_dir: str | Path | None = None,
             progress_cb: Any = None) -> tuple[KLPolicyNet, dict[str, Any]]:
    """Train G against ``prior``; returns the policy network (prior + G, or Q alone for dqn) and a log."""
    config.validate()
    torch.set_num_threads(1)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    t0 = time.perf_counter()
    terms = available_terms()
    env = VecMelodyEnv(config.n_envs, EnvConfig(bars=(config.bars[0], config.bars[1]), style=config.style, terms=terms),
                       reward=RewardFunction(terms, prior_by_kl=True), seed=config.seed)
    prior_col = terms.index("prior")
    d = observation.obs_dim(len(terms))
    prior = copy.deepcopy(prior).eval()
    g = g_network_from_prior(prior, d)
    g_target = copy.deepcopy(g).eval()
    for p in g_target.parameters():
        p.requires_grad_(False)
    policy = KLPolicyNet(prior, g)
    opt = torch.optim.Adam(g.parameters(), lr=config.lr)
    t_max = config.bars[1] * 16
    replay = EpisodeReplay(config.replay_episodes, t_max, config.seed,
                           steps={"obs": ((d,), np.float16), "act": ((), np.int64), "rew": ((), np.float32),
                                  "lp": ((tokens.N_ACTIONS,), np.float32)},
                           episode={"coef": (1.0, np.float32)})
    n = config.n_envs
    buf_obs = np.zeros((n, t_max, d), np.float16)
    buf_act = np.zeros((n, t_max), np.int64)
    buf_rew = np.zeros((n, t_max), np.float32)
    buf_lp = np.zeros((n, t_max, tokens.N_ACTIONS), np.float32)
    pos = np.zeros(n, np.int64)
    rows = np.arange(n)

    def take_kl_weights(rows: np.ndarray) -> None:
        # the style's prior weight becomes the episode's KL multiplier, and leaves the reward
        kl_w[rows] = np.maximum(env.weights[rows, prior_col], MIN_PRIOR_WEIGHT) if config.kl_by_style else 1.0
        env.weights[rows, prior_col] = 0.0

    kl_w = np.ones(n, np.float32)
    obs = env.reset()
    take_kl_weights(rows)
    state = policy.zero_state(n)
    episodes = updates = env_steps = 0
    returns: list[float] = []
    losses: list[float] = []
    history: list[dict[str, float]] = []
    debt = 0.0
    next_log = config.log_every
    next_eval = config.eval_every
    evaluations: list[dict[str, Any]] = []
    show = not config.quiet and sys.stderr.isatty()
    bar = tqdm(total=config.episodes, desc=f"{config.mode} c={config.kl_coef:g}", unit="ep", disable=not show)
    while episodes < config.episodes:
        with torch.no_grad():
            o = torch.from_numpy(obs)
            hp = prior.state_size
            lp_t, sp = prior.step(o, state[:, :hp])
            lp_t = torch.log_softmax(lp_t, -1)
            g_t, sg = g.step(o, state[:, hp:])
            logits = act_logits(config.mode, g_t, lp_t).numpy()
            state = torch.cat([sp, sg], dim=-1)
        a = (logits + rng.gumbel(size=logits.shape)).argmax(axis=1)
        explore = rng.random(n) < config.explore_epsilon
        a = np.where(explore, rng.integers(0, tokens.N_ACTIONS, n), a)
        buf_obs[rows, pos] = obs
        buf_act[rows, pos] = a
        buf_lp[rows, pos] = lp_t.numpy()
        obs, r, done, info = env.step(a)
        env_steps += n
        buf_rew[rows, pos] = r * config.theory_weight
        pos += 1
        for row in info["done_rows"]:
            k = int(pos[row])
            replay.add(obs=buf_obs[row, :k], act=buf_act[row, :k], rew=buf_rew[row, :k], lp=buf_lp[row, :k],
                       coef=float(kl_w[row]))
            returns.append(float(buf_rew[row, :k].sum()))
            pos[row] = 0
            state[row] = 0.0
            episodes += 1
            debt += config.updates_per_episode
            bar.update(1)
        if len(info["done_rows"]):
            take_kl_weights(info["done_rows"])
        while episodes >= config.learning_starts and debt >= 1.0:
            debt -= 1.0
            b = replay.sample(config.batch_episodes)
            q_all = g(b["obs"])[0]
            with torch.no_grad():
                y = soft_targets(config.mode, g_target(b["obs"])[0], b["lp"], b["rew"], b["mask"].float(),
                                 config.kl_coef * b["coef"][:, None], config.gamma)
            loss = masked_huber_step(opt, g, q_all.gather(-1, b["act"].unsqueeze(-1)).squeeze(-1), y, b["mask"],
                                     config.max_grad_norm)
            with torch.no_grad():
                for pt, po in zip(g_target.parameters(), g.parameters()):
                    pt.mul_(1 - config.tau).add_(po, alpha=config.tau)
            updates += 1
            losses.append(float(loss.detach()))
        if config.eval_every and episodes >= next_eval:
            next_eval += config.eval_every
            evaluations.append({"episodes": episodes, **evaluate_styles(policy, config.eval_clips, config.seed)})
            log.info("evaluation at %d episodes: %s", episodes, json.dumps(evaluations[-1]))
        if episodes >= next_log:
            next_log += config.log_every
            row = {"episodes": episodes, "updates": updates, "seconds": round(time.perf_counter() - t0, 1),
                   "mean_return": float(np.mean(returns[-500:])) if returns else math.nan,
                   "loss": float(np.mean(losses[-200:])) if losses else math.nan}
            history.append(row)
            bar.set_postfix(ret=f"{row['mean_return']:.2f}", loss=f"{row['loss']:.3f}")
            log.info("%s", json.dumps(row))
            if progress_cb is not None:
                progress_cb(row)
    bar.close()
    result = KLPolicyNet(prior, g) if config.mode == "kl" else QOnlyPolicyNet(prior, g)
    evaluations.append({"episodes": episodes, **evaluate_styles(result, config.eval_clips, config.seed)})
    log.info("evaluation at the end: %s", json.dumps(evaluations[-1]))
    log_out = {"config": asdict(config), "history": history, "evaluations": evaluations, "updates": updates,
               "episodes": episodes, "env_steps": env_steps,
               "seconds": round(time.perf_counter() - t0, 1),
               "final_mean_return": float(np.mean(returns[-500:])) if returns else math.nan}
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "train_log.json").write_text(json.dumps(log_out, indent=1))
    return result, log_out


#: What each preset is checked on while training (the style's own targets).
STYLE_ROWS = ("notes_per_bar", "pitch_range", "silent_share", "sixteenth_share", "long_note_share", "near_repeat",
              "chord_tones_strong", "not_in_key")


def sample_tokens(net: KLPolicyNet, contexts: list[observation.MelodyContext], seed: int,
                  temperature: float = 1.0) -> np.ndarray:
    """Melodies ``int64 [B, T]`` sampled from ``net`` in torch (``softmax(logits / T)``), step by step."""
    rng = np.random.default_rng(seed)
    batch = observation.MelodyBatch.create(contexts)
    t_max = int(batch.n_steps.max())
    out = np.zeros((batch.size, t_max), np.int64)
    state = net.zero_state(batch.size)
    with torch.no_grad():
        for t in range(t_max):
            logits, _, state = net.step(torch.from_numpy(observation.observe(batch)), state)
            z = logits.numpy() / max(temperature, 1e-6) + rng.gumbel(size=logits.shape)
            act = z.argmax(axis=1)
            active = batch.step < batch.n_steps
            out[active, t] = act[active]
            batch.append(act, active)
    return out


def evaluate_styles(net: KLPolicyNet, n: int, seed: int, bars: int = 8) -> dict[str, dict[str, float]]:
    """Shape and key rows of ``n`` clips per preset style (C major, 4/4, default chords)."""
    from engine.evaluation import metrics as ev_metrics
    from engine.evaluation import shape

    terms = style_terms()
    out: dict[str, dict[str, float]] = {}
    frame = shape.Frame.of((4, 4), None, 0, "major")
    for name in styles.PRESETS:
        vec = styles.style_vector(styles.parse_style(name, terms), terms)
        ctx = observation.MelodyContext.from_music(key=0, scale="major", bars=bars, time_signature=(4, 4), role="lead",
                                                   style=vec)
        seqs = list(sample_tokens(net, [ctx] * n, seed))
        row = shape.shape_stats(seqs, frame)
        row["not_in_key"] = ev_metrics.rl_tuner_stats(seqs, "major")["not_in_key"]
        out[name] = {k: round(float(row[k]), 4) for k in STYLE_ROWS}
    return out


def style_terms() -> tuple[str, ...]:
    """The style terms a KL model reads (all available terms, in order)."""
    return tuple(available_terms())


__all__ = ["KLConfig", "KLTrainError", "EpisodeReplay", "soft_targets", "train_kl", "style_terms"]
