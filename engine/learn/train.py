"""Train the melody Q-network: double DQN with n-step returns on the vectorised MDP.

Reads top to bottom like CleanRL's ``dqn.py``: :class:`TrainConfig` (one docstring per
field), presets, then :func:`train`, one flat loop. The pieces that are not about
music (replay, n-step returns, targets, schedules) live in :mod:`engine.learn.rl`.

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

import contextlib
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

from engine.errors import EngineError
from engine.learn import rl
from engine.learn.model import ModelConfig, QNetwork
from engine.mdp import styles
from engine.music import tokens
from engine.music.clip import atomic_write

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


# ----------------------------------------------------------------- environment

def make_env(cfg: TrainConfig, seed: int) -> Any:
    """The vectorised melody MDP of ``engine.mdp.env`` with the rewards of ``engine.mdp.rewards``."""
    try:
        from engine.mdp.env import EnvConfig, VecMelodyEnv
        from engine.mdp.rewards import RewardFunction
    except ImportError as exc:
        raise TrainError(f"training needs engine.mdp.env and engine.mdp.rewards, which are not available: {exc}") from None
    fields = {f.name for f in dataclasses.fields(EnvConfig)}
    unknown = sorted(set(cfg.env) - fields)
    if unknown:
        raise TrainError(f"train config env has unknown field(s) {', '.join(unknown)}: allowed are "
                         f"{', '.join(sorted(fields))}")
    env_cfg = EnvConfig(**{k: _tupled(v) for k, v in cfg.env.items()}).validated()
    reward = RewardFunction(env_cfg.terms, prior=_load_prior())
    return VecMelodyEnv(cfg.n_envs, env_cfg, reward=reward, seed=seed)


def _tupled(value: Any) -> Any:
    """JSON lists back to the tuples EnvConfig uses (recursively)."""
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


@functools.lru_cache(maxsize=1)
def _load_prior() -> Any:
    """The shipped corpus prior (wrapped in :class:`CachedPrior`), or None with a warning."""
    try:
        from engine.corpus.prior import PriorModel

        return CachedPrior(PriorModel.load())
    except (ImportError, EngineError) as exc:
        log.warning("training without the corpus prior: %s", exc)
        return None


class CachedPrior:
    """The corpus prior with a one-entry cache of ``log_probs``.

    Each step the environment's ``prior`` reward term and the replay's log-prob columns
    need the prior on the same observations; the training loop computes them once and
    :meth:`prime` s the cache, so the reward's call is a lookup. Everything else is
    passed through to the wrapped :class:`engine.corpus.prior.PriorModel`.
    """

    def __init__(self, prior: Any) -> None:
        self.prior = prior
        self._x: np.ndarray | None = None
        self._out: np.ndarray | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.prior, name)

    def prime(self, x: np.ndarray, out: np.ndarray) -> None:
        """Remember ``log_probs(x) == out`` (``x`` float32 ``[B, obs_dim(0)]``, ``out`` ``[B, 38]``)."""
        self._x, self._out = np.array(x, copy=True), out

    def log_probs(self, x: np.ndarray) -> np.ndarray:
        """``log p(a|s)`` float32 ``[B, 38]`` (do not modify the result: it may be cached)."""
        if self._x is not None and self._x.shape == x.shape and np.array_equal(self._x, x):
            return self._out  # type: ignore[return-value]
        out = self.prior.log_probs(x)
        self.prime(x, out)
        return out


def build_network(cfg: TrainConfig, obs_dim: int, n_style: int,
                  style_terms: tuple[str, ...] = styles.BUILTIN_TERMS) -> QNetwork:
    """The Q-network for ``cfg``, started from the corpus prior when asked and possible."""
    prior = _load_prior() if (cfg.prior_init or cfg.prior_branch) else None
    weights = _prior_weights(prior) if prior is not None else None
    if weights is not None and weights[0][0].shape[1] != obs_dim - n_style:
        log.warning("prior reads %d columns, the style-free observation has %d: not using it",
                    weights[0][0].shape[1], obs_dim - n_style)
        weights = None
    prior_dim, prior_hidden, weight_col = 0, (), -1
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
    from engine.mdp import observation
    from engine.runtime.policy import ObservationBuilder

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
    """Metrics per evaluated style (``engine.evaluation.evaluate`` when available, else token statistics)."""
    results: dict[str, dict] = {}
    for style in cfg.eval_styles:
        seqs = sample_tokens(net, cfg.eval_clips, style=style, style_terms=style_terms, seed=seed, bars=cfg.eval_bars)
        results[style] = sequence_metrics(seqs, corpus=cfg.eval_corpus)
    return results


def sequence_metrics(seqs: np.ndarray, corpus: bool = True) -> dict[str, float]:
    """Metrics of C-major 4/4 token sequences: ``engine.evaluation.evaluate``'s suite (RL Tuner's table, corpus
    overlap, prior log-likelihood, diversity) when present, else a few token statistics."""
    try:
        from engine.evaluation.evaluate import evaluate_sequences
    except ImportError:
        pitch = seqs >= 2
        in_key = np.isin((seqs - 14) % 12, [0, 2, 4, 5, 7, 9, 11]) | ~pitch
        return {"not_in_key": float(1 - in_key.mean()), "onset_share": float(pitch.mean()),
                "distinct_clips": float(len({s.tobytes() for s in seqs}) / max(len(seqs), 1))}
    metrics = evaluate_sequences(list(seqs), reference=_corpus_reference() if corpus else None, prior=_load_prior())
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.floating))}


@functools.lru_cache(maxsize=1)
def _corpus_reference() -> Any:
    """Histograms of the held-out 4/4 major corpus tunes (None when the corpus is not available)."""
    try:
        from engine.evaluation.evaluate import corpus_reference

        return corpus_reference((4, 4), "major", progress=False)[0]
    except (ImportError, EngineError) as exc:
        log.warning("evaluating without corpus overlap: %s", exc)
        return None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# -------------------------------------------------------------------- logging

class RunLog:
    """CSV rows (training and evaluation), optional TensorBoard, and the curves PNG."""

    TRAIN_FIELDS = ("env_steps", "grad_steps", "wall_s", "explore", "lr", "loss", "q_mean", "episode_return",
                    "episodes", "env_steps_per_s", "grad_steps_per_s")

    def __init__(self, out_dir: Path, resume: bool) -> None:
        self.dir = out_dir
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


# ------------------------------------------------------------------ checkpoints

def save_checkpoint(out_dir: Path, cfg: TrainConfig, q_net: QNetwork, target_net: QNetwork, optimizer: Any,
                    counters: dict[str, Any], replay: rl.ReplayBuffer | None, style_terms: tuple[str, ...],
                    rng: np.random.Generator) -> Path:
    """Write ``checkpoint.pt`` (and ``replay.npz``) atomically."""
    state = {"format": 1, "config": cfg.to_dict(), "model_config": q_net.config.to_dict(),
             "q_net": q_net.state_dict(), "target_net": target_net.state_dict(), "optimizer": optimizer.state_dict(),
             "counters": counters, "style_terms": list(style_terms), "rng": rng.bit_generator.state,
             "torch_rng": torch.get_rng_state()}
    path = out_dir / "checkpoint.pt"
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    if replay is not None:
        rs = replay.state_dict()
        rng_state = json.dumps(rs.pop("rng"))

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, rng_state=np.array(rng_state), **{k: np.asarray(v) for k, v in rs.items()})

        atomic_write(out_dir / "replay.npz", write)
    return path


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
    """Context limiting numpy's BLAS to one thread (threadpoolctl, when installed).

    The reward's prior term and the cached prior log-probs are small numpy matmuls; on a
    busy 2-core machine OpenBLAS's second thread makes them ~20x slower (spin-waiting).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) a training run; returns where everything was written."""
    with one_blas_thread():
        return _train(cfg)


def _train(cfg: TrainConfig) -> TrainResult:
    cfg.validate()
    torch.set_num_threads(1)  # small networks: more threads make it 5-10x slower here
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    resuming = cfg.resume and ckpt_path.exists()
    if resuming:
        saved = TrainConfig.from_dict(torch.load(ckpt_path, map_location="cpu", weights_only=False)["config"])
        keep = {"total_steps", "resume", "quiet", "command", "out_dir", "export", "eval_every", "checkpoint_every",
                "log_every"}
        diff = {f.name for f in dataclasses.fields(cfg) if f.name not in keep
                and getattr(cfg, f.name) != getattr(saved, f.name)}
        if diff:
            raise TrainError(f"cannot resume {ckpt_path}: config field(s) {', '.join(sorted(diff))} differ from the "
                             "checkpoint's; resume with the same options (or a new --out)")
    atomic_write(out_dir / "config.json", lambda tmp: Path(tmp).write_text(json.dumps(cfg.to_dict(), indent=1)))

    # Seeding: everything random derives from cfg.seed.
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    env = make_env(cfg, seed=cfg.seed)
    obs = env.reset()
    style_terms = tuple(env.terms)
    obs_dim = obs.shape[1]
    term_scale = np.array([1.0 if t == "prior" else cfg.theory_scale for t in style_terms], np.float32)

    q_net = build_network(cfg, obs_dim, len(style_terms), style_terms)
    target_net = build_network(cfg, obs_dim, len(style_terms), style_terms)
    rl.hard_update(target_net, q_net)
    # fused Adam: one kernel for all parameters, ~5x faster than the per-tensor loop on CPU
    optimizer = torch.optim.Adam([p for p in q_net.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                 fused=True)
    # With a prior branch, the prior's log-probs ride along in the replay as 38 extra columns
    # (computed once per step in numpy), so learning never re-runs the prior network.
    prior_np = _load_prior() if q_net.prior is not None else None
    n_extra = tokens.N_ACTIONS if prior_np is not None else 0
    d0 = q_net.config.prior_dim

    def with_prior(x: np.ndarray) -> np.ndarray:
        if not n_extra:
            return x
        return np.concatenate([x, prior_np.log_probs(x[:, :d0])], axis=1)

    def q_of(net: QNetwork) -> Any:
        """``net`` as a function of replay rows (observation, then cached log-probs)."""
        if not n_extra:
            return net
        return lambda x: net(x[:, :obs_dim], x[:, obs_dim:])

    replay = rl.ReplayBuffer(cfg.buffer_size, obs_dim + n_extra, seed=cfg.seed)
    nstep = rl.NStepCollector(cfg.n_envs, cfg.n_step, cfg.gamma)
    explore = rl.Schedule(cfg.explore_start, cfg.explore_end, int(cfg.explore_fraction * cfg.total_steps))
    counters: dict[str, Any] = {"env_steps": 0, "grad_steps": 0, "episodes": 0, "wall_s": 0.0,
                                "next_log": cfg.log_every, "next_eval": cfg.eval_every or math.inf,
                                "next_ckpt": cfg.checkpoint_every}
    if resuming:
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        q_net.load_state_dict(ck["q_net"])
        target_net.load_state_dict(ck["target_net"])
        optimizer.load_state_dict(ck["optimizer"])
        counters.update(ck["counters"])
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        if not _load_replay(out_dir / "replay.npz", replay):
            log.warning("no replay.npz beside the checkpoint: resuming with an empty replay memory")
        # Fresh episodes, seeded from the step count: reproducible, not bit-identical to an unbroken run.
        env = make_env(cfg, seed=cfg.seed + 1_000_003 * (1 + int(counters["env_steps"])))
        obs = env.reset()
        log.info("resumed %s at %d env steps", ckpt_path, counters["env_steps"])
    runlog = RunLog(out_dir, resume=resuming)

    recent_returns: deque[float] = deque(maxlen=200)
    recent_loss: deque[float] = deque(maxlen=200)
    recent_q: deque[float] = deque(maxlen=200)
    metrics: dict[str, Any] = {}
    bar = None
    if not cfg.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=cfg.total_steps, initial=int(counters["env_steps"]), unit="step", unit_scale=True,
                   desc="train", dynamic_ncols=True)
    start_wall = time.perf_counter() - float(counters["wall_s"])
    interval_t0, interval_env, interval_grad = time.perf_counter(), counters["env_steps"], counters["grad_steps"]
    interrupted = False
    vec_step = 0

    def checkpoint() -> Path:
        counters["wall_s"] = time.perf_counter() - start_wall
        return save_checkpoint(out_dir, cfg, q_net, target_net, optimizer, counters,
                               replay if cfg.save_replay else None, style_terms, rng)

    try:
        while counters["env_steps"] < cfg.total_steps:
            # 1. act: Boltzmann over Q (or epsilon-greedy), annealed
            temp_or_eps = explore(counters["env_steps"])
            obs_x = with_prior(obs)
            with torch.no_grad():
                q = q_of(q_net)(torch.from_numpy(obs_x)).numpy()
            if cfg.exploration == "boltzmann":
                actions = rl.boltzmann(q, temp_or_eps, rng)
            else:
                actions = rl.epsilon_greedy(q, temp_or_eps, rng)

            # 2. step all environments; finished ones auto-reset, their real last obs is in info
            weights = env.weights.copy()  # this step's style weights (reset rows get new ones)
            next_obs, _, dones, info = env.step(actions)
            rewards = (info["terms"] * weights * term_scale).sum(axis=1, dtype=np.float32)
            real_next = next_obs.copy()
            if dones.any():
                real_next[dones] = info["final_obs"][dones]
                recent_returns.extend(info["episode_return"][dones].tolist())
                counters["episodes"] += int(dones.sum())
            next_x = with_prior(real_next)
            if n_extra and hasattr(prior_np, "prime"):
                # the next step's observations: real_next except where an episode restarted
                next_lp = next_x[:, obs_dim:].copy()
                if dones.any():
                    next_lp[dones] = prior_np.prior.log_probs(next_obs[dones][:, :d0])
                prior_np.prime(next_obs[:, :d0], next_lp)
            replay.add(*nstep.push(obs_x, actions, rewards, next_x, dones))
            obs = next_obs
            counters["env_steps"] += cfg.n_envs
            vec_step += 1

            # 3. learn: double-DQN targets from the target network, Huber loss, clipped gradients
            if counters["env_steps"] >= cfg.learning_starts and len(replay) and vec_step % cfg.train_every == 0:
                frac = min(counters["env_steps"] / cfg.total_steps, 1.0)
                lr = cfg.learning_rate * (1 - (1 - cfg.lr_final_fraction) * frac)
                for group in optimizer.param_groups:
                    group["lr"] = lr
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
                    counters["grad_steps"] += 1
                recent_loss.append(float(loss.item()))
                recent_q.append(float(q_all.detach().mean().item()))

            if bar is not None:
                bar.update(cfg.n_envs)

            # 4. bookkeeping: log rows, evaluations, checkpoints
            if counters["env_steps"] >= counters["next_log"]:
                now = time.perf_counter()
                dt = max(now - interval_t0, 1e-9)
                row = {"env_steps": counters["env_steps"], "grad_steps": counters["grad_steps"],
                       "wall_s": round(now - start_wall, 2), "explore": round(temp_or_eps, 4),
                       "lr": optimizer.param_groups[0]["lr"],
                       "loss": float(np.mean(recent_loss)) if recent_loss else math.nan,
                       "q_mean": float(np.mean(recent_q)) if recent_q else math.nan,
                       "episode_return": float(np.mean(recent_returns)) if recent_returns else math.nan,
                       "episodes": counters["episodes"],
                       "env_steps_per_s": round((counters["env_steps"] - interval_env) / dt, 1),
                       "grad_steps_per_s": round((counters["grad_steps"] - interval_grad) / dt, 1)}
                runlog.train_row(row)
                if bar is not None:
                    bar.set_postfix(ret=f"{row['episode_return']:.2f}", loss=f"{row['loss']:.3f}", refresh=False)
                log.info("step %d: %s", counters["env_steps"], row)
                counters["next_log"] += cfg.log_every
                interval_t0, interval_env, interval_grad = time.perf_counter(), counters["env_steps"], counters["grad_steps"]
            if counters["env_steps"] >= counters["next_eval"] and cfg.eval_clips:
                metrics = evaluate_network(q_net.eval(), cfg, style_terms, seed=cfg.seed + 17)
                q_net.train()
                runlog.eval_rows(counters["env_steps"], metrics)
                counters["last_eval"] = counters["env_steps"]
                counters["next_eval"] += cfg.eval_every
            if counters["env_steps"] >= counters["next_ckpt"]:
                checkpoint()
                runlog.plot()
                counters["next_ckpt"] += cfg.checkpoint_every
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted at %d env steps: writing a checkpoint", counters["env_steps"])
    finally:
        if bar is not None:
            bar.close()

    if not interrupted and cfg.eval_clips and counters.get("last_eval") != counters["env_steps"]:
        metrics = evaluate_network(q_net.eval(), cfg, style_terms, seed=cfg.seed + 17)
        runlog.eval_rows(counters["env_steps"], metrics)
    path = checkpoint()
    runlog.plot()
    runlog.close()
    summary = {"env_steps": int(counters["env_steps"]), "grad_steps": int(counters["grad_steps"]),
               "wall_s": round(float(counters["wall_s"]), 1), "episodes": int(counters["episodes"]),
               "episode_return": float(np.mean(recent_returns)) if recent_returns else None,
               "eval": metrics}
    atomic_write(out_dir / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    model_path = None
    if cfg.export and not interrupted:
        from engine.learn.export import export_model

        model_path = out_dir / "model.onnx"
        export_model(q_net.eval(), model_path, style_terms, train_config=cfg.to_dict(), train_metrics=summary,
                     model_id=f"qriff-{Path(cfg.out_dir).name}-s{cfg.seed}", train_command=cfg.command)
    return TrainResult(out_dir=out_dir, checkpoint=path, model=model_path, metrics=summary,
                       env_steps=int(counters["env_steps"]), grad_steps=int(counters["grad_steps"]),
                       wall_s=float(counters["wall_s"]), interrupted=interrupted)
