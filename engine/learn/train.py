"""Train the melody Q-network: double DQN with n-step returns on the vectorised MDP.

Reads top to bottom like CleanRL's ``dqn.py``: :class:`TrainConfig` (one docstring per
field) and presets; the environment (whose reward, :class:`engine.mdp.rewards.RewardFunction`
with ``theory_scale``, is the one learned) and :class:`PriorColumns`, the prior's log-probs
computed once a step; the network; evaluation; logging (:class:`RunLog`); progress,
checkpoints and resuming; then :func:`train`, one flat loop: act, step, store, learn,
keep the books. The pieces that are not about music (replay, n-step returns, targets,
schedules) live in :mod:`engine.base.rl`.

Every episode samples its own style, key, scale, progression, metre, role and
length (``engine.mdp.env.EnvConfig``), and the style weights are part of the
observation, so one network learns to follow any style.

Outputs, all in ``TrainConfig.out_dir``:

* ``config.json``: the resolved config; ``checkpoint.pt``: networks, optimizer,
  counters, RNG states; ``replay.npz``: the replay memory (for an exact resume);
* ``train_log.csv`` (one row per log interval), ``eval_log.csv`` (one row per
  evaluation and style), ``curves.png`` (return, loss, evaluation metrics);
* TensorBoard event files under ``tb/`` when ``tensorboard`` is installed;
* ``model.onnx`` at the end (unless ``export=False``), via :mod:`engine.learn.export`.

Ctrl-C writes a checkpoint first; ``resume=True`` continues from it.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import logging
import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.base import rl
from engine.base.errors import EngineError
from engine.base.files import atomic_write
from engine.corpus.prior import PriorModel
from engine.evaluation.evaluate import corpus_reference, evaluate_sequences
from engine.learn.model import ModelConfig, QNetwork
from engine.mdp import observation, styles
from engine.mdp.builder import ObservationBuilder
from engine.mdp.env import EnvConfig, VecMelodyEnv
from engine.mdp.rewards import RewardFunction
from engine.music import tokens

log = logging.getLogger(__name__)


class TrainError(EngineError):
    """A training option is invalid or a checkpoint cannot be resumed."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``config.json`` and in the ONNX metadata)."""

    # --- run
    seed: int = 0
    """Seeds torch, numpy, the environments and the replay sampling: same seed, same run."""
    total_steps: int = 1_200_000
    """Environment steps (tokens written) over all parallel environments."""
    n_envs: int = 32
    """Parallel melodies stepped together (one batched forward pass per step)."""
    out_dir: str = "runs/default"
    """Directory for checkpoints, logs, curves and the exported model."""
    # --- environment
    env: dict[str, Any] = field(default_factory=lambda: {"bars": [1, 8]})
    """Overrides of ``engine.mdp.env.EnvConfig`` fields (bars, scales, roles... sampled per episode).
    The recipe draws 1-8 bars, so the structure terms (bars 5-6 answering bars 1-2) are met."""
    # --- network
    hidden: tuple[int, ...] = (128, 128)
    """Hidden layer widths of the Q-network's MLP (with ``prior_branch``, the learned residual)."""
    dueling: bool = True
    """Dueling head (value + advantage streams)."""
    prior_branch: bool = True
    """Keep the frozen corpus prior inside the network: Q = w * log p + MLP, with w the style's
    ``prior`` weight read from the observation (the reward holds the same term). The MLP
    learns only what the rest of the style adds, and the prior cannot be forgotten."""
    prior_init: bool = False
    """Without ``prior_branch``: copy the prior's weights into the Q-network instead
    (Sequence Tutor's initialisation; needs ``hidden`` equal to the prior's widths)."""
    # --- DQN
    gamma: float = 0.9
    """Discount per 16th-note step (RL Tuner used 0.5; motifs and cadences span more steps)."""
    n_step: int = 3
    """Steps summed in each return before bootstrapping (n-step Q-learning)."""
    learning_rate: float = 5e-4
    """Adam learning rate."""
    lr_final_fraction: float = 0.2
    """The learning rate decays linearly to this fraction of its start over the run."""
    batch_size: int = 128
    """Transitions per gradient step."""
    buffer_size: int = 100_000
    """Replay capacity in transitions (observations stored as float16)."""
    learning_starts: int = 5_000
    """Environment steps collected before the first gradient step."""
    train_every: int = 1
    """Vector steps between gradient phases."""
    gradient_steps: int = 1
    """Gradient steps per gradient phase."""
    tau: float = 0.01
    """Soft target-network update rate per gradient step (RL Tuner: 0.01)."""
    max_grad_norm: float = 5.0
    """Gradient clipping by global norm (RL Tuner: 5)."""
    loss: str = "huber"
    """TD loss: ``huber`` or ``mse``."""
    theory_scale: float = 2.0
    """Multiplier of every reward term except ``prior`` (RL Tuner's 1/c with c = 0.5): the
    prior keeps its natural scale, so softmax(Q) at temperature 1 stays close to the corpus
    where the style asks for it, while the rules get gaps wide enough to be obeyed."""
    # --- exploration
    exploration: str = "boltzmann"
    """``boltzmann`` (sample softmax(Q/T)) or ``epsilon`` (epsilon-greedy)."""
    explore_start: float = 1.0
    """Initial temperature (boltzmann) or epsilon."""
    explore_end: float = 0.3
    """Final temperature (boltzmann) or epsilon."""
    explore_fraction: float = 0.5
    """Fraction of ``total_steps`` over which exploration is annealed (linearly)."""
    # --- bookkeeping
    log_every: int = 10_000
    """Environment steps between log rows (CSV, TensorBoard, progress bar)."""
    eval_every: int = 300_000
    """Environment steps between evaluations (0 = only at the end)."""
    eval_clips: int = 200
    """Clips per style in each evaluation (C major, ``eval_bars`` bars, temperature 1)."""
    eval_bars: int = 8
    """Bars of each evaluation clip (8: the structure measures need bars 5-6)."""
    eval_styles: tuple[str, ...] = ("folk", "hook")
    """Styles evaluated (preset names)."""
    eval_corpus: bool = True
    """Compare evaluations with the held-out corpus (histogram overlaps; the first use extracts
    and caches the corpus, which takes minutes)."""
    checkpoint_every: int = 300_000
    """Environment steps between checkpoints (one is also written at the end and on Ctrl-C)."""
    save_replay: bool = True
    """Save the replay memory with checkpoints (needed for an exact resume; ~2 x buffer x D x 2 bytes)."""
    export: bool = True
    """Export ``model.onnx`` (with the parity check) at the end."""
    resume: bool = False
    """Continue from ``out_dir/checkpoint.pt`` if it exists."""
    quiet: bool = False
    """No progress bar."""
    command: str = ""
    """The command line that started the run (recorded, not used)."""

    def validate(self) -> None:
        """TrainError naming the first field out of range."""
        checks = [
            ("total_steps", self.total_steps >= 1, ">= 1"), ("n_envs", 1 <= self.n_envs <= 4096, "1-4096"),
            ("gamma", 0.0 <= self.gamma <= 1.0, "0-1"), ("n_step", 1 <= self.n_step <= 64, "1-64"),
            ("learning_rate", 0 < self.learning_rate < 1, "0-1 exclusive"),
            ("lr_final_fraction", 0 <= self.lr_final_fraction <= 1, "0-1"),
            ("batch_size", 1 <= self.batch_size <= 65536, "1-65536"), ("buffer_size", self.buffer_size >= 1, ">= 1"),
            ("learning_starts", self.learning_starts >= 0, ">= 0"), ("train_every", self.train_every >= 1, ">= 1"),
            ("gradient_steps", self.gradient_steps >= 1, ">= 1"), ("tau", 0 < self.tau <= 1, "0 < tau <= 1"),
            ("max_grad_norm", self.max_grad_norm > 0, "> 0"), ("loss", self.loss in ("huber", "mse"), "huber, mse"),
            ("theory_scale", 0 < self.theory_scale <= 100, "0 < scale <= 100"),
            ("exploration", self.exploration in ("boltzmann", "epsilon"), "boltzmann, epsilon"),
            ("explore_start", self.explore_start >= 0, ">= 0"), ("explore_end", self.explore_end >= 0, ">= 0"),
            ("explore_fraction", 0 <= self.explore_fraction <= 1, "0-1"),
            ("log_every", self.log_every >= 1, ">= 1"), ("eval_every", self.eval_every >= 0, ">= 0"),
            ("eval_clips", self.eval_clips >= 0, ">= 0"), ("checkpoint_every", self.checkpoint_every >= 1, ">= 1"),
            ("hidden", len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "one or more widths >= 1"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise TrainError(f"train config {name}={getattr(self, name)!r} is out of range (allowed: {allowed})")
        if self.exploration == "epsilon" and max(self.explore_start, self.explore_end) > 1:
            raise TrainError(f"epsilon {self.explore_start} -> {self.explore_end} is out of range (allowed: 0-1)")
        for s in self.eval_styles:
            styles.parse_style(s)
        fields = {f.name for f in dataclasses.fields(EnvConfig)}
        unknown = sorted(set(self.env) - fields)
        if unknown:
            raise TrainError(f"train config env has unknown field(s) {', '.join(unknown)}: allowed are "
                             f"{', '.join(sorted(fields))}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        d["eval_styles"] = list(self.eval_styles)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise TrainError(f"unknown train config field(s) {', '.join(unknown)}: allowed are {', '.join(sorted(names))}")
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        if "eval_styles" in d:
            d["eval_styles"] = tuple(d["eval_styles"])
        return cls(**d)


#: Named configurations. ``default`` trains the shipped model; ``tiny`` is for tests and smoke runs.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "tiny": {"total_steps": 400, "n_envs": 2, "hidden": (32,), "prior_branch": False, "batch_size": 16,
             "buffer_size": 1_000,
             "learning_starts": 64, "log_every": 100, "eval_every": 200, "eval_clips": 8, "eval_bars": 2,
             "checkpoint_every": 200,
             "out_dir": "runs/tiny"},
}


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """The config of a named preset with field overrides."""
    if name not in PRESETS:
        raise TrainError(f"train preset {name!r} is not known: allowed are {', '.join(PRESETS)}")
    return TrainConfig.from_dict({**PRESETS[name], **overrides})


# ------------------------------------------------------- environment and prior

@functools.lru_cache(maxsize=1)
def load_prior() -> PriorModel | None:
    """The shipped corpus prior, or None with a warning when its file is missing or corrupt."""
    try:
        return PriorModel.load()
    except EngineError as exc:
        log.warning("training without the corpus prior: %s", exc)
        return None


def make_env(cfg: TrainConfig, seed: int) -> VecMelodyEnv:
    """The vectorised melody MDP of ``engine.mdp.env``; its reward is the one training learns."""
    env_cfg = EnvConfig(**{k: _tupled(v) for k, v in cfg.env.items()}).validated()
    reward = RewardFunction(env_cfg.terms, prior=load_prior(), theory_scale=cfg.theory_scale)
    return VecMelodyEnv(cfg.n_envs, env_cfg, reward=reward, seed=seed)


def _tupled(value: Any) -> Any:
    """JSON lists back to the tuples EnvConfig uses (recursively)."""
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


class PriorColumns:
    """The corpus prior's ``log p(a|s)`` beside each observation, for a network with a prior branch.

    The network reads them with the observation, the replay stores them as 38 extra
    columns (so learning never re-runs the prior) and the environment's ``prior`` reward
    term uses them. :meth:`after_step` makes the one full prior pass of a step: over the
    real next observations, which are also the next step's observations except in rows
    where an episode restarted; only those rows are computed again.
    """

    def __init__(self, prior: PriorModel, dim: int) -> None:
        self.prior = prior
        self.dim = dim
        """Observation columns the prior reads (the observation without its style weights)."""

    def of(self, obs: np.ndarray) -> np.ndarray:
        """``log p(a|s)`` float32 ``[B, 38]`` of observations ``[B, >= dim]``."""
        return self.prior.log_probs(obs[:, :self.dim])

    def after_step(self, real_next: np.ndarray, next_obs: np.ndarray,
                   dones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log-probs of the real next observations (for the replay) and of the observations
        the next step acts on (``next_obs``: restarted rows hold a new episode's first)."""
        real = self.of(real_next)
        following = real.copy()
        if dones.any():
            following[dones] = self.of(next_obs[dones])
        return real, following


def build_network(cfg: TrainConfig, obs_dim: int, n_style: int,
                  style_terms: tuple[str, ...] = styles.BUILTIN_TERMS) -> QNetwork:
    """The Q-network for ``cfg``, started from the corpus prior when asked and possible."""
    prior = load_prior() if (cfg.prior_init or cfg.prior_branch) else None
    weights = _prior_weights(prior) if prior is not None else None
    if weights is not None and weights[0][0].shape[1] != obs_dim - n_style:
        log.warning("prior reads %d columns, the style-free observation has %d: not using it",
                    weights[0][0].shape[1], obs_dim - n_style)
        weights = None
    prior_dim, weight_col = 0, -1
    prior_hidden: tuple[int, ...] = ()
    if cfg.prior_branch and weights is not None:
        prior_dim = int(weights[0][0].shape[1])
        prior_hidden = tuple(int(w.shape[0]) for w, _ in weights[:-1])
        if "prior" in style_terms:
            weight_col = obs_dim - n_style + list(style_terms).index("prior")
    net = QNetwork(ModelConfig(obs_dim=obs_dim, hidden=tuple(cfg.hidden), dueling=cfg.dueling,
                               prior_dim=prior_dim, prior_hidden=prior_hidden, prior_weight_col=weight_col,
                               weight_scale=float(styles.MAX_WEIGHT)))
    if weights is not None and net.prior is not None:
        net.prior.load_numpy(weights)
    elif weights is not None and cfg.prior_init:
        init_from_prior(net, weights)
    return net


def init_from_prior(net: QNetwork, weights: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    """Copy the prior's MLP into the Q-network (style columns and the value stream start at 0).

    Afterwards ``Q(s, .) = logits_prior(s) - mean(logits_prior(s))``, so softmax(Q) is the
    prior. Returns False (and leaves the network alone) when the shapes do not match.
    """
    linears = [m for m in net.torso if isinstance(m, torch.nn.Linear)] + [net.advantage]
    if len(linears) != len(weights) or any(lin.weight.shape[0] != w.shape[0] for lin, (w, _) in zip(linears, weights)):
        log.warning("Q-network hidden widths %s differ from the prior's %s: not initialising from the prior",
                    net.config.hidden, tuple(w.shape[0] for w, _ in weights[:-1]))
        return False
    with torch.no_grad():
        for i, (lin, (w, b)) in enumerate(zip(linears, weights)):
            if i == 0:
                lin.weight.zero_()
                lin.weight[:, : w.shape[1]] = torch.from_numpy(w)
            else:
                lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        if net.value is not None:
            net.value.weight.zero_()
            net.value.bias.zero_()
    return True


def _prior_weights(prior: Any) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """``[(W [out, in], b [out]), ...]`` of the prior's MLP (``PriorModel.weights`` holds ``W [in, out]``)."""
    weights = getattr(prior, "weights", None)
    if not isinstance(weights, (list, tuple)) or not weights:
        log.warning("the prior exposes no MLP weights: not using it in the Q-network")
        return None
    return [(np.ascontiguousarray(np.asarray(w, np.float32).T), np.asarray(b, np.float32)) for w, b in weights]


# ------------------------------------------------------------------ evaluation

def sample_tokens(net: QNetwork, n_clips: int, *, style: str, style_terms: tuple[str, ...], seed: int,
                  key: str = "C", scale: str = "major", bars: int = 2, chords: str | None = None,
                  temperature: float = 1.0, role: str = "lead") -> np.ndarray:
    """``n_clips`` melodies ``int64 [n_clips, T]`` sampled from softmax(Q/T) of the torch network."""
    svec = styles.style_vector(styles.parse_style(style, style_terms), style_terms)
    ctx = observation.MelodyContext.from_music(key=key, scale=scale, bars=bars, chords=chords, role=role, style=svec)
    builder = ObservationBuilder([ctx] * n_clips)
    rng = np.random.default_rng(seed)
    out = np.zeros((n_clips, ctx.n_steps), np.int64)
    obs = builder.obs
    with torch.no_grad():
        for t in range(ctx.n_steps):
            q = net(torch.from_numpy(obs)).numpy()
            out[:, t] = rl.boltzmann(q, temperature, rng)
            if t + 1 < ctx.n_steps:
                obs = builder.append(out[:, t])
    return out


def evaluate_network(net: QNetwork, cfg: TrainConfig, style_terms: tuple[str, ...], seed: int) -> dict[str, dict]:
    """Metrics per evaluated style (``engine.evaluation.evaluate``'s suite)."""
    results: dict[str, dict] = {}
    for style in cfg.eval_styles:
        seqs = sample_tokens(net, cfg.eval_clips, style=style, style_terms=style_terms, seed=seed, bars=cfg.eval_bars)
        results[style] = sequence_metrics(seqs, corpus=cfg.eval_corpus)
    return results


def sequence_metrics(seqs: np.ndarray, corpus: bool = True) -> dict[str, float]:
    """Metrics of C-major 4/4 token sequences: ``engine.evaluation.evaluate``'s suite (RL Tuner's table, corpus
    overlap, prior log-likelihood, diversity)."""
    metrics = evaluate_sequences(list(seqs), reference=_corpus_reference() if corpus else None, prior=load_prior())
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.floating))}


@functools.lru_cache(maxsize=1)
def _corpus_reference() -> Any:
    """Histograms of the held-out 4/4 major corpus tunes (None when the corpus is not available)."""
    try:
        return corpus_reference((4, 4), "major", progress=False)[0]
    except EngineError as exc:
        log.warning("evaluating without corpus overlap: %s", exc)
        return None


# -------------------------------------------------------------------- logging

class RunLog:
    """CSV rows (training and evaluation), optional TensorBoard, and the curves PNG."""

    TRAIN_FIELDS = ("env_steps", "grad_steps", "wall_s", "explore", "lr", "loss", "q_mean", "episode_return",
                    "episodes", "env_steps_per_s", "grad_steps_per_s")

    def __init__(self, out_dir: Path, resume: bool, progress: Progress) -> None:
        self.dir = out_dir
        self.returns: deque[float] = deque(maxlen=200)
        """Returns of the last 200 finished episodes."""
        self.losses: deque[float] = deque(maxlen=200)
        self.q_means: deque[float] = deque(maxlen=200)
        self._mark = (time.perf_counter(), progress.env_steps, progress.grad_steps)
        self.train_csv = out_dir / "train_log.csv"
        self.eval_csv = out_dir / "eval_log.csv"
        if not resume:
            for p in (self.train_csv, self.eval_csv):
                p.unlink(missing_ok=True)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tb"))
        except ImportError:
            log.debug("tensorboard not installed: no event files")

    def row(self, progress: Progress, explore: float, lr: float) -> dict[str, float]:
        """The training log row now: means over the recent episodes and gradient steps, and
        the speed since the previous row."""
        now = time.perf_counter()
        t0, env0, grad0 = self._mark
        dt = max(now - t0, 1e-9)
        self._mark = (now, progress.env_steps, progress.grad_steps)
        return {"env_steps": progress.env_steps, "grad_steps": progress.grad_steps,
                "wall_s": round(progress.wall_s, 2), "explore": round(explore, 4), "lr": lr,
                "loss": float(np.mean(self.losses)) if self.losses else math.nan,
                "q_mean": float(np.mean(self.q_means)) if self.q_means else math.nan,
                "episode_return": self.mean_return(),
                "episodes": progress.episodes,
                "env_steps_per_s": round((progress.env_steps - env0) / dt, 1),
                "grad_steps_per_s": round((progress.grad_steps - grad0) / dt, 1)}

    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan

    def train_row(self, row: dict[str, float]) -> None:
        new = not self.train_csv.exists()
        with open(self.train_csv, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.TRAIN_FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in self.TRAIN_FIELDS})
        if self.tb is not None:
            for k, v in row.items():
                if k != "env_steps" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"train/{k}", v, int(row["env_steps"]))

    def eval_rows(self, env_steps: int, results: dict[str, dict[str, float]]) -> None:
        new = not self.eval_csv.exists()
        with open(self.eval_csv, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["env_steps", "style", "metric", "value"])
            for style, metrics in results.items():
                for k, v in sorted(metrics.items()):
                    w.writerow([env_steps, style, k, f"{v:.6g}"])
                    if self.tb is not None:
                        self.tb.add_scalar(f"eval/{style}/{k}", v, env_steps)

    def plot(self) -> Path | None:
        """Write ``curves.png``: return, loss, and up to six evaluation metrics over env steps."""
        if not self.train_csv.exists():
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = list(csv.DictReader(open(self.train_csv)))
        x = [float(r["env_steps"]) for r in rows]

        def col(name: str) -> list[float]:
            return [float(r[name]) if r[name] not in ("", "nan") else math.nan for r in rows]

        evals: dict[tuple[str, str], list[tuple[float, float]]] = {}
        if self.eval_csv.exists():
            for r in csv.DictReader(open(self.eval_csv)):
                evals.setdefault((r["style"], r["metric"]), []).append((float(r["env_steps"]), float(r["value"])))
        wanted = ["notes_not_in_key", "notes_in_motif", "starts_with_tonic", "leaps_resolved", "distinct_clips",
                  "prior_log_likelihood", "overlap.pitch_class", "onset_share"]
        metric_names = [m for m in wanted if any(k[1].endswith(m) for k in evals)][:6]
        n = 2 + len(metric_names)
        fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n), sharex=True)
        axes[0].plot(x, col("episode_return"))
        axes[0].set_ylabel("episode return")
        axes[1].plot(x, col("loss"))
        axes[1].set_ylabel("TD loss")
        for ax, m in zip(axes[2:], metric_names):
            for (style, name), pts in sorted(evals.items()):
                if name.endswith(m):
                    ax.plot(*zip(*pts), marker="o", label=style)
            ax.set_ylabel(m.replace("_", " "), fontsize=8)
            ax.legend(fontsize=7)
        axes[-1].set_xlabel("environment steps")
        fig.tight_layout()
        out = self.dir / "curves.png"
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
        plt.close(fig)
        return out

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ------------------------------------------------------- progress, checkpoints, resume

@dataclass
class Progress:
    """How far a run has come."""

    env_steps: int = 0
    grad_steps: int = 0
    episodes: int = 0
    wall_s: float = 0.0


@dataclass
class Timetable:
    """When, in environment steps, the next log row, evaluation and checkpoint are due."""

    next_log: float
    next_eval: float
    next_ckpt: float
    last_eval: int | None = None

    @classmethod
    def first(cls, cfg: TrainConfig) -> Timetable:
        return cls(next_log=cfg.log_every, next_eval=cfg.eval_every or math.inf, next_ckpt=cfg.checkpoint_every)


def save_checkpoint(out_dir: Path, cfg: TrainConfig, q_net: QNetwork, target_net: QNetwork, optimizer: Any,
                    progress: Progress, timetable: Timetable, replay: rl.ReplayBuffer | None,
                    style_terms: tuple[str, ...], rng: np.random.Generator) -> Path:
    """Write ``checkpoint.pt`` (and ``replay.npz``) atomically."""
    counters = {**dataclasses.asdict(progress),
                **{k: v for k, v in dataclasses.asdict(timetable).items() if v is not None}}
    state = {"format": 1, "config": cfg.to_dict(), "model_config": q_net.config.to_dict(),
             "q_net": q_net.state_dict(), "target_net": target_net.state_dict(), "optimizer": optimizer.state_dict(),
             "counters": counters, "style_terms": list(style_terms), "rng": rng.bit_generator.state,
             "torch_rng": torch.get_rng_state()}
    path = out_dir / "checkpoint.pt"
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    if replay is not None:
        rs = replay.state_dict()
        rng_state = json.dumps(rs.pop("rng"))

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                arrays: dict[str, Any] = {k: np.asarray(v) for k, v in rs.items()}
                np.savez(f, rng_state=np.array(rng_state), **arrays)

        atomic_write(out_dir / "replay.npz", write)
    return path


#: Config fields a resumed run may change: they do not change what is learned.
RESUMABLE_FIELDS = ("total_steps", "resume", "quiet", "command", "out_dir", "export", "eval_every",
                    "checkpoint_every", "log_every")


def resume_point(cfg: TrainConfig, ckpt_path: Path) -> dict[str, Any] | None:
    """The checkpoint to continue from (``cfg.resume`` and one exists), else None.

    TrainError when it was written with other options than :data:`RESUMABLE_FIELDS`.
    """
    if not (cfg.resume and ckpt_path.exists()):
        return None
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    saved = TrainConfig.from_dict(ck["config"])
    diff = {f.name for f in dataclasses.fields(cfg) if f.name not in RESUMABLE_FIELDS
            and getattr(cfg, f.name) != getattr(saved, f.name)}
    if diff:
        raise TrainError(f"cannot resume {ckpt_path}: config field(s) {', '.join(sorted(diff))} differ from the "
                         "checkpoint's; resume with the same options (or a new --out)")
    return ck


def restore(ck: dict[str, Any], out_dir: Path, cfg: TrainConfig, q_net: QNetwork, target_net: QNetwork,
            optimizer: Any, rng: np.random.Generator, replay: rl.ReplayBuffer) -> tuple[Progress, Timetable]:
    """Load a checkpoint's networks, optimizer, random states and replay memory; its progress."""
    q_net.load_state_dict(ck["q_net"])
    target_net.load_state_dict(ck["target_net"])
    optimizer.load_state_dict(ck["optimizer"])
    rng.bit_generator.state = ck["rng"]
    torch.set_rng_state(ck["torch_rng"])
    if not _load_replay(out_dir / "replay.npz", replay):
        log.warning("no replay.npz beside the checkpoint: resuming with an empty replay memory")
    counters = {**dataclasses.asdict(Progress()), **dataclasses.asdict(Timetable.first(cfg)), **ck["counters"]}
    progress = Progress(**{f.name: counters[f.name] for f in dataclasses.fields(Progress)})
    timetable = Timetable(**{f.name: counters[f.name] for f in dataclasses.fields(Timetable)})
    return progress, timetable


def _load_replay(path: Path, replay: rl.ReplayBuffer) -> bool:
    if not path.exists():
        return False
    with np.load(path) as z:
        state = {k: z[k] for k in z.files if k != "rng_state"}
        state = {k: (v.item() if v.ndim == 0 else v) for k, v in state.items()}
        state["rng"] = json.loads(str(z["rng_state"]))
    replay.load_state_dict(state)
    return True


# ------------------------------------------------------------------------ train

@dataclass
class TrainResult:
    """What :func:`train` returns."""

    out_dir: Path
    checkpoint: Path
    model: Path | None
    metrics: dict[str, Any]
    env_steps: int
    grad_steps: int
    wall_s: float
    interrupted: bool = False


def one_blas_thread() -> Any:
    """Context limiting numpy's BLAS to one thread.

    The reward's prior term and the prior's log-probs are small numpy matmuls; on a
    busy 2-core machine OpenBLAS's second thread makes them ~20x slower (spin-waiting).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) a training run; returns where everything was written."""
    cfg.validate()
    with one_blas_thread():
        return _train(cfg)


def _train(cfg: TrainConfig) -> TrainResult:
    torch.set_num_threads(1)  # small networks: more threads make it 5-10x slower here
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_from = resume_point(cfg, out_dir / "checkpoint.pt")
    atomic_write(out_dir / "config.json", json.dumps(cfg.to_dict(), indent=1))

    # Seeding: everything random derives from cfg.seed.
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    env = make_env(cfg, seed=cfg.seed)
    obs = env.reset()
    style_terms, obs_dim = tuple(env.terms), obs.shape[1]

    q_net = build_network(cfg, obs_dim, len(style_terms), style_terms)
    target_net = build_network(cfg, obs_dim, len(style_terms), style_terms)
    rl.hard_update(target_net, q_net)
    # fused Adam: one kernel for all parameters, ~5x faster than the per-tensor loop on CPU
    optimizer = torch.optim.Adam([p for p in q_net.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                 fused=True)
    prior_model = load_prior() if q_net.prior is not None else None
    if q_net.prior is not None and prior_model is None:  # the branch was built from it a moment ago
        raise EngineError("the network has a prior branch but the corpus prior could not be loaded (see the warning)")
    prior = PriorColumns(prior_model, q_net.config.prior_dim) if prior_model is not None else None
    replay = rl.ReplayBuffer(cfg.buffer_size, obs_dim + (tokens.N_ACTIONS if prior else 0), seed=cfg.seed)
    nstep = rl.NStepCollector(cfg.n_envs, cfg.n_step, cfg.gamma)
    explore = rl.Schedule(cfg.explore_start, cfg.explore_end, int(cfg.explore_fraction * cfg.total_steps))
    progress, timetable = Progress(), Timetable.first(cfg)
    if checkpoint_from is not None:
        progress, timetable = restore(checkpoint_from, out_dir, cfg, q_net, target_net, optimizer, rng, replay)
        # Fresh episodes, seeded from the step count: reproducible, not bit-identical to an unbroken run.
        env = make_env(cfg, seed=cfg.seed + 1_000_003 * (1 + int(progress.env_steps)))
        obs = env.reset()
        log.info("resumed %s at %d env steps", out_dir / "checkpoint.pt", progress.env_steps)
    runlog = RunLog(out_dir, resume=checkpoint_from is not None, progress=progress)

    def q_of(net: QNetwork) -> Any:
        """``net`` as a function of replay rows (the observation, then the prior's log-probs)."""
        return net if prior is None else (lambda x: net(x[:, :obs_dim], x[:, obs_dim:]))

    def with_prior(x: np.ndarray, log_probs: np.ndarray | None) -> np.ndarray:
        return x if log_probs is None else np.concatenate([x, log_probs], axis=1)

    def checkpoint() -> Path:
        progress.wall_s = time.perf_counter() - start_wall
        return save_checkpoint(out_dir, cfg, q_net, target_net, optimizer, progress, timetable,
                               replay if cfg.save_replay else None, style_terms, rng)

    bar = None
    if not cfg.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=cfg.total_steps, initial=int(progress.env_steps), unit="step", unit_scale=True,
                   desc="train", dynamic_ncols=True)
    start_wall = time.perf_counter() - float(progress.wall_s)
    metrics: dict[str, Any] = {}
    interrupted = False
    vec_step = 0
    obs_lp = prior.of(obs) if prior is not None else None
    try:
        while progress.env_steps < cfg.total_steps:
            # 1. act: Boltzmann over Q (or epsilon-greedy), annealed
            explore_value = explore(progress.env_steps)
            obs_x = with_prior(obs, obs_lp)
            with torch.no_grad():
                q = q_of(q_net)(torch.from_numpy(obs_x)).numpy()
            if cfg.exploration == "boltzmann":
                actions = rl.boltzmann(q, explore_value, rng)
            else:
                actions = rl.epsilon_greedy(q, explore_value, rng)

            # 2. step all environments (their reward is the one learned); finished rows
            # restart by themselves, and their real last observation is in info
            next_obs, rewards, dones, info = env.step(actions, prior_log_probs=obs_lp)
            real_next = next_obs.copy()
            if dones.any():
                real_next[dones] = info["final_obs"][dones]
                runlog.returns.extend(info["episode_return"][dones].tolist())
                progress.episodes += int(dones.sum())
            real_lp, next_lp = prior.after_step(real_next, next_obs, dones) if prior is not None else (None, None)
            replay.add(*nstep.push(obs_x, actions, rewards, with_prior(real_next, real_lp), dones))
            obs, obs_lp = next_obs, next_lp
            progress.env_steps += cfg.n_envs
            vec_step += 1

            # 3. learn: double-DQN targets from the target network, Huber loss, clipped gradients
            if progress.env_steps >= cfg.learning_starts and len(replay) and vec_step % cfg.train_every == 0:
                frac = min(progress.env_steps / cfg.total_steps, 1.0)
                for group in optimizer.param_groups:
                    group["lr"] = cfg.learning_rate * (1 - (1 - cfg.lr_final_fraction) * frac)
                for _ in range(cfg.gradient_steps):
                    batch = replay.sample(cfg.batch_size).to_torch()
                    target = rl.double_dqn_targets(q_of(q_net), q_of(target_net), batch.next_obs, batch.returns,
                                                   batch.discounts)
                    q_all = q_of(q_net)(batch.obs)
                    loss = rl.td_loss(q_all, batch.actions, target, kind=cfg.loss)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(q_net.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    rl.soft_update(target_net, q_net, cfg.tau)
                    progress.grad_steps += 1
                runlog.losses.append(float(loss.item()))
                runlog.q_means.append(float(q_all.detach().mean().item()))
            if bar is not None:
                bar.update(cfg.n_envs)

            # 4. bookkeeping: log rows, evaluations, checkpoints
            if progress.env_steps >= timetable.next_log:
                progress.wall_s = time.perf_counter() - start_wall
                row = runlog.row(progress, explore_value, optimizer.param_groups[0]["lr"])
                runlog.train_row(row)
                if bar is not None:
                    bar.set_postfix(ret=f"{row['episode_return']:.2f}", loss=f"{row['loss']:.3f}", refresh=False)
                log.info("step %d: %s", progress.env_steps, row)
                timetable.next_log += cfg.log_every
            if progress.env_steps >= timetable.next_eval and cfg.eval_clips:
                metrics = evaluate_network(q_net.eval(), cfg, style_terms, seed=cfg.seed + 17)
                q_net.train()
                runlog.eval_rows(progress.env_steps, metrics)
                timetable.last_eval = progress.env_steps
                timetable.next_eval += cfg.eval_every
            if progress.env_steps >= timetable.next_ckpt:
                checkpoint()
                runlog.plot()
                timetable.next_ckpt += cfg.checkpoint_every
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted at %d env steps: writing a checkpoint", progress.env_steps)
    finally:
        if bar is not None:
            bar.close()

    if not interrupted and cfg.eval_clips and timetable.last_eval != progress.env_steps:
        metrics = evaluate_network(q_net.eval(), cfg, style_terms, seed=cfg.seed + 17)
        runlog.eval_rows(progress.env_steps, metrics)
    path = checkpoint()
    runlog.plot()
    runlog.close()
    summary = {"env_steps": int(progress.env_steps), "grad_steps": int(progress.grad_steps),
               "wall_s": round(float(progress.wall_s), 1), "episodes": int(progress.episodes),
               "episode_return": runlog.mean_return() if runlog.returns else None, "eval": metrics}
    atomic_write(out_dir / "metrics.json", json.dumps(summary, indent=1))
    model_path = None
    if cfg.export and not interrupted:
        from engine.learn.export import export_model

        model_path = out_dir / "model.onnx"
        export_model(q_net.eval(), model_path, style_terms, train_config=cfg.to_dict(), train_metrics=summary,
                     model_id=f"qriff-{Path(cfg.out_dir).name}-s{cfg.seed}", train_command=cfg.command)
    return TrainResult(out_dir=out_dir, checkpoint=path, model=model_path, metrics=summary,
                       env_steps=int(progress.env_steps), grad_steps=int(progress.grad_steps),
                       wall_s=float(progress.wall_s), interrupted=interrupted)
