"""The corpus prior: a supervised next-token model over the engine's own observation.

The prior answers "how likely is this step in a real melody?" It reads the style-free
part of the observation (``obs[:, :obs_dim(0)]``, built by
:func:`engine.observation.observe`), so the inputs it was trained on are exactly those
the environment and the reward see. Its ``log p(a|s)`` is the ``prior`` reward term and
a starting point for the Q-network (Sequence Tutor style).

Training (:func:`train_prior`) needs torch; inference (:class:`PriorModel`) is numpy
only. The shipped model lives in ``engine/models/prior.npz`` with its config and
metrics in ``engine/models/prior.json``; ``qriff corpus prior`` retrains it.

Network layout (also what :meth:`PriorModel.state_dict_numpy` returns, in the key
names of ``torch.nn.Sequential``)::

    net.0: Linear(obs_dim(0) -> hidden[0]), net.1: ReLU
    net.2: Linear(hidden[0] -> hidden[1]),  net.3: ReLU
    ...
    net.{2k}: Linear(hidden[-1] -> 38)       (logits over the 38 actions)

Weights follow torch's convention: ``net.{2i}.weight`` is ``[out, in]``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine import observation, theory, tokens
from engine.clip import atomic_write
from engine.errors import EngineError, ModelError

log = logging.getLogger(__name__)

#: Format of ``prior.npz``; bump when the file layout changes.
PRIOR_FORMAT = 1
#: Where the shipped prior lives.
DEFAULT_PATH = Path(__file__).resolve().parent / "models" / "prior.npz"
#: Longest training episode in bars: generated clips have at most 16 bars.
MAX_EPISODE_BARS = 16


@dataclass
class PriorConfig:
    """How the prior is trained (saved with the model)."""

    hidden: tuple[int, ...] = (256, 256)
    """Widths of the hidden layers (ReLU)."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 1e-5
    """Adam (L2) weight decay."""
    batch_size: int = 512
    """Training steps (observation, next token) per minibatch."""
    epochs: int = 8
    """Most passes over the training rows (each pass samples ``rows_per_epoch`` of them)."""
    rows_per_epoch: int = 400_000
    """Rows drawn (without replacement) per epoch; 0 uses every training row."""
    patience: int = 2
    """Stop after this many epochs without a better validation NLL."""
    max_bars: int = MAX_EPISODE_BARS
    """Tunes longer than this are cut into episodes of at most this many bars."""
    seed: int = 0
    """Seeds weight init and row sampling."""
    sources: tuple[str, ...] | None = None
    """Corpus sources (None: all)."""
    limit: int | None = None
    """Tunes per source (None: all); for quick runs and tests."""


# --------------------------------------------------------------------- inference

class PriorModel:
    """The trained prior, evaluated with numpy only.

    ``weights`` is a list of ``(W [in, out], b [out])`` float32 pairs, ReLU between
    layers, logits over :data:`engine.tokens.N_ACTIONS` last.
    """

    def __init__(self, weights: list[tuple[np.ndarray, np.ndarray]], meta: dict[str, Any]):
        self.weights = [(np.ascontiguousarray(w, np.float32), np.ascontiguousarray(b, np.float32)) for w, b in weights]
        self.meta = meta
        self.obs_dim = int(self.weights[0][0].shape[0])

    # ------------------------------------------------------------------ I/O
    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> PriorModel:
        """Load ``path`` (default: the shipped ``engine/models/prior.npz``).

        Raises :class:`~engine.errors.ModelError` when the file is missing, corrupt, or
        was trained on another observation version or layout.
        """
        p = Path(path) if path is not None else DEFAULT_PATH
        hint = "retrain it with: qriff corpus prior --out " + str(p)
        if not p.is_file():
            raise ModelError(f"prior model {str(p)!r} does not exist: {hint}")
        try:
            with np.load(io.BytesIO(p.read_bytes())) as data:
                meta = json.loads(data["meta"].tobytes().decode())
                n = int(meta["layers"])
                weights = [(data[f"w{i}"], data[f"b{i}"]) for i in range(n)]
        except Exception as exc:  # zip, key, json and decode errors all mean "corrupt"
            raise ModelError(f"prior model {str(p)!r} is corrupt or not a qriff prior ({type(exc).__name__}: {exc}): "
                             f"{hint}") from None
        if meta.get("format") != PRIOR_FORMAT:
            raise ModelError(f"prior model {str(p)!r} has format {meta.get('format')!r}, this qriff reads "
                             f"{PRIOR_FORMAT}: {hint}")
        if meta.get("obs_version") != observation.OBS_VERSION or meta.get("obs_layout") != observation.layout_string(0):
            raise ModelError(f"prior model {str(p)!r} was trained on observation version {meta.get('obs_version')!r} "
                             f"(layout {meta.get('obs_layout')!r}); this qriff builds version "
                             f"{observation.OBS_VERSION} ({observation.layout_string(0)}): {hint}")
        model = cls(weights, meta)
        if model.obs_dim != observation.obs_dim(0) or model.weights[-1][0].shape[1] != tokens.N_ACTIONS:
            raise ModelError(f"prior model {str(p)!r} has shape {model.obs_dim}->{model.weights[-1][0].shape[1]}, "
                             f"expected {observation.obs_dim(0)}->{tokens.N_ACTIONS}: {hint}")
        return model

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model atomically as ``.npz`` (plus ``.json`` with config and metrics beside it)."""
        p = Path(path)
        meta = dict(self.meta, format=PRIOR_FORMAT, layers=len(self.weights), obs_version=observation.OBS_VERSION,
                    obs_layout=observation.layout_string(0))
        arrays = {}
        for i, (w, b) in enumerate(self.weights):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        blob = json.dumps(meta).encode()

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, meta=np.frombuffer(blob, np.uint8), **arrays)

        atomic_write(p, write)
        side = {k: meta[k] for k in meta if k not in ("layers",)}
        atomic_write(p.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(side, indent=1) + "\n"))
        self.meta = meta
        return p

    # ------------------------------------------------------------ inference
    def logits(self, obs_no_style: np.ndarray) -> np.ndarray:
        """Unnormalised scores ``float32 [B, 38]`` for ``obs_no_style`` float32 ``[B, obs_dim(0)]``."""
        x = np.asarray(obs_no_style, np.float32)
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise EngineError(f"prior input has shape {x.shape}, expected [batch, {self.obs_dim}] "
                              "(the style-free observation: obs[:, :engine.observation.obs_dim(0)])")
        for i, (w, b) in enumerate(self.weights):
            x = x @ w + b
            if i < len(self.weights) - 1:
                np.maximum(x, 0.0, out=x)
        return x

    def log_probs(self, obs_no_style: np.ndarray) -> np.ndarray:
        """``log p(a|s)`` for every action: float32 ``[B, 38]`` (natural log, rows sum to 1 in prob)."""
        z = self.logits(obs_no_style)
        z = z - z.max(axis=1, keepdims=True)
        return (z - np.log(np.exp(z).sum(axis=1, keepdims=True))).astype(np.float32)

    def log_prob(self, obs_no_style: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``log p(a|s)`` of the given ``actions`` (int ``[B]``): float32 ``[B]``."""
        lp = self.log_probs(obs_no_style)
        return lp[np.arange(lp.shape[0]), np.asarray(actions, np.int64)]

    # --------------------------------------------------------------- torch
    def state_dict_numpy(self) -> dict[str, np.ndarray]:
        """Weights under ``torch.nn.Sequential`` names: ``net.{2i}.weight`` ``[out, in]``, ``net.{2i}.bias``.

        ``torch_net().load_state_dict({k[4:]: torch.from_numpy(v) ...})`` or
        :meth:`to_torch` builds the matching module.
        """
        out = {}
        for i, (w, b) in enumerate(self.weights):
            out[f"net.{2 * i}.weight"] = w.T.copy()
            out[f"net.{2 * i}.bias"] = b.copy()
        return out

    @property
    def hidden(self) -> tuple[int, ...]:
        """Hidden layer widths."""
        return tuple(int(w.shape[1]) for w, _ in self.weights[:-1])

    def to_torch(self) -> Any:
        """A ``torch.nn.Sequential`` holding these weights (needs torch, i.e. the ``train`` extra)."""
        import torch

        net = torch_net(self.obs_dim, self.hidden)
        net.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in self.state_dict_numpy().items()})
        return net

    @property
    def metrics(self) -> dict[str, Any]:
        """Held-out metrics recorded at training time (``test_nll``, ``test_accuracy``...)."""
        return dict(self.meta.get("metrics", {}))


def torch_net(obs_dim: int, hidden: Sequence[int]) -> Any:
    """The prior's torch architecture: ``Sequential(Linear, ReLU, ..., Linear(-> 38))``."""
    from torch import nn

    layers: list[Any] = []
    width = obs_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, tokens.N_ACTIONS))
    return nn.Sequential(*layers)


# ------------------------------------------------------------------- data

@dataclass
class StepData:
    """Every step of a set of melodies, ready for :func:`engine.observation.observe`.

    ``batch`` holds the episodes (tokens filled in); ``rows`` int64 ``[N, 2]`` lists
    (episode, step) pairs; ``targets`` int64 ``[N]`` the token played at that step.
    """

    batch: observation.MelodyBatch
    rows: np.ndarray
    targets: np.ndarray
    episodes: int = 0
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def observe(self, idx: np.ndarray) -> np.ndarray:
        """Style-free observations ``float32 [len(idx), obs_dim(0)]`` of rows ``idx``."""
        ep = self.rows[idx, 0]
        b = self.batch
        sub = observation.MelodyBatch(
            tokens=b.tokens[ep], step=self.rows[idx, 1].copy(), n_steps=b.n_steps[ep], steps_per_bar=b.steps_per_bar[ep],
            ts_index=b.ts_index[ep], scale_mask=b.scale_mask[ep], chord_mask=b.chord_mask[ep],
            chord_root=b.chord_root[ep], role=b.role[ep], style=b.style[ep])
        return observation.observe(sub)


def episodes_of(melodies: Sequence[Any], max_bars: int = MAX_EPISODE_BARS) -> list[Any]:
    """Cut corpus melodies into episodes of at most ``max_bars`` bars (equal-sized pieces)."""
    out = []
    for m in melodies:
        pieces = max(1, math.ceil(m.bars / max_bars))
        size = math.ceil(m.bars / pieces)
        for k in range(pieces):
            seg = m.segment(k * size, size) if pieces > 1 else m
            if seg.bars >= 1:
                out.append(seg)
    return out


def step_data(melodies: Sequence[Any], max_bars: int = MAX_EPISODE_BARS) -> StepData:
    """:class:`StepData` for corpus melodies (:class:`engine.corpus.CorpusMelody`), lead role, no style."""
    eps = episodes_of(melodies, max_bars)
    if not eps:
        raise EngineError("no melodies to build prior training data from: the corpus selection is empty")
    contexts = [observation.MelodyContext.from_music(key=0, scale=m.scale, bars=m.bars, time_signature=m.time_signature,
                                                     chords=list(m.chords), role="lead", style=np.zeros((0,), np.float32))
                for m in eps]
    batch = observation.MelodyBatch.create(contexts)
    rows = []
    for i, m in enumerate(eps):
        n = len(m.tokens)
        batch.tokens[i, :n] = m.tokens
        rows.append(np.stack([np.full(n, i), np.arange(n)], axis=1))
    all_rows = np.concatenate(rows).astype(np.int64)
    targets = batch.tokens[all_rows[:, 0], all_rows[:, 1]]
    return StepData(batch=batch, rows=all_rows, targets=targets, episodes=len(eps), names=[m.name for m in eps])


# ---------------------------------------------------------------- training

def unigram_log_probs(targets: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Add-``alpha`` smoothed token frequencies as log probabilities ``float64 [38]``."""
    counts = np.bincount(np.asarray(targets, np.int64), minlength=tokens.N_ACTIONS).astype(np.float64) + alpha
    return np.log(counts / counts.sum())


def evaluate_prior(model: PriorModel, data: StepData, batch_size: int = 4096) -> dict[str, float]:
    """Mean NLL per step (nats), top-1 accuracy and the number of steps over ``data``."""
    nll = 0.0
    correct = 0
    for start in range(0, len(data), batch_size):
        idx = np.arange(start, min(start + batch_size, len(data)))
        lp = model.log_probs(data.observe(idx))
        y = data.targets[idx]
        nll -= float(lp[np.arange(len(idx)), y].sum())
        correct += int((lp.argmax(axis=1) == y).sum())
    n = max(len(data), 1)
    return {"nll": nll / n, "accuracy": correct / n, "steps": len(data)}


def train_prior(config: PriorConfig, progress: bool = True) -> tuple[PriorModel, dict[str, Any]]:
    """Train the prior on the corpus train split, early-stopped on valid; metrics on test.

    Returns the model (its ``meta`` holds config and metrics) and the metrics dict:
    ``train/valid/test_steps``, ``valid_nll``, ``test_nll`` and ``test_accuracy`` (nats
    per step), the unigram baseline on test, epochs run and seconds.
    """
    import torch
    from tqdm import tqdm

    from engine import corpus

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    melodies = corpus.load_corpus("all", sources=config.sources, limit=config.limit, progress=progress)
    splits = {s: [m for m in melodies if m.split == s] for s in corpus.SPLITS}
    for s, mels in splits.items():
        if not mels:
            raise EngineError(f"corpus split {s!r} is empty for sources {config.sources or 'all'} and limit "
                              f"{config.limit}: use more tunes (a larger --limit)")
    data = {s: step_data(mels, config.max_bars) for s, mels in splits.items()}
    d0 = observation.obs_dim(0)
    net = torch_net(d0, config.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    train = data["train"]
    n_rows = len(train) if not config.rows_per_epoch else min(config.rows_per_epoch, len(train))
    best: tuple[float, dict[str, np.ndarray]] | None = None
    history = []
    bad = 0
    show = progress and sys.stderr.isatty()
    for epoch in range(config.epochs):
        net.train()
        order = rng.permutation(len(train))[:n_rows]
        total = 0.0
        bar = tqdm(range(0, n_rows, config.batch_size), desc=f"prior epoch {epoch + 1}", disable=not show, leave=False)
        for start in bar:
            idx = order[start:start + config.batch_size]
            x = torch.from_numpy(train.observe(idx))
            y = torch.from_numpy(train.targets[idx])
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model = _from_torch(net, config)
        valid = evaluate_prior(model, data["valid"])
        history.append({"epoch": epoch + 1, "train_nll": total / n_rows, "valid_nll": valid["nll"],
                        "valid_accuracy": valid["accuracy"]})
        log.info("prior epoch %d: train NLL %.4f, valid NLL %.4f, acc %.3f", epoch + 1, total / n_rows,
                 valid["nll"], valid["accuracy"])
        if best is None or valid["nll"] < best[0] - 1e-4:
            best = (valid["nll"], {k: v.detach().clone() for k, v in net.state_dict().items()})
            bad = 0
        else:
            bad += 1
            if bad >= config.patience:
                break
    assert best is not None
    net.load_state_dict(best[1])
    model = _from_torch(net, config)
    test = evaluate_prior(model, data["test"])
    uni = unigram_log_probs(train.targets)
    uni_nll = float(-uni[data["test"].targets].mean())
    uni_acc = float((data["test"].targets == int(np.argmax(uni))).mean())
    metrics = {
        "train_steps": len(train), "valid_steps": len(data["valid"]), "test_steps": len(data["test"]),
        "train_episodes": train.episodes, "valid_nll": best[0], "test_nll": test["nll"],
        "test_accuracy": test["accuracy"], "unigram_test_nll": uni_nll, "unigram_test_accuracy": uni_acc,
        "epochs": len(history), "seconds": round(time.perf_counter() - t0, 1), "history": history,
    }
    model.meta["metrics"] = metrics
    return model, metrics


def _from_torch(net: Any, config: PriorConfig) -> PriorModel:
    linears = [m for m in net if hasattr(m, "weight")]
    weights = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in linears]
    cfg = asdict(config)
    return PriorModel(weights, {"config": cfg, "time_signatures": [list(t) for t in theory.TIME_SIGNATURES],
                                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
