"""The corpus prior: a supervised next-token model over the engine's own observation.

The prior answers "how likely is this step in a real melody?" It reads the style-free
part of the observation (``obs[:, :obs_dim(0)]``, built by
:func:`engine.mdp.observation.observe`), so the inputs it was trained on are exactly those
the environment and the reward see. Its ``log p(a|s)`` is the ``prior`` reward term and
a starting point for the Q-network (Sequence Tutor style).

Inference (:class:`PriorModel`) is numpy only; training needs torch and lives in
:mod:`engine.learn.prior_training`. The shipped model lives in ``engine/models/prior.npz`` with its config and
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.base.errors import EngineError, ModelError
from engine.base.files import atomic_write
from engine.mdp import observation
from engine.music import tokens

log = logging.getLogger(__name__)

#: Format of ``prior.npz``; bump when the file layout changes.
PRIOR_FORMAT = 1
#: Where the shipped prior lives.
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "models" / "prior.npz"
#: Longest training episode in bars: generated clips have at most 16 bars.
MAX_EPISODE_BARS = 16


# --------------------------------------------------------------------- inference

class PriorModel:
    """The trained prior, evaluated with numpy only.

    ``weights`` is a list of ``(W [in, out], b [out])`` float32 pairs, ReLU between
    layers, logits over :data:`engine.music.tokens.N_ACTIONS` last.
    """

    def __init__(self, weights: list[tuple[np.ndarray, np.ndarray]], meta: dict[str, Any]):
        self.weights = [(np.ascontiguousarray(w, np.float32), np.ascontiguousarray(b, np.float32)) for w, b in weights]
        self.meta = meta
        self.obs_dim = int(self.weights[0][0].shape[0])

    # ------------------------------------------------------------------ I/O
    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> PriorModel:
        """Load ``path`` (default: the shipped ``engine/models/prior.npz``).

        Raises :class:`~engine.base.errors.ModelError` when the file is missing, corrupt, or
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
        if meta.get("obs_fingerprint") and meta["obs_fingerprint"] != observation_fingerprint():
            log.warning("prior model %s was trained on an observation that has since changed meaning (same version "
                        "%s): its log p(a|s) may be off; %s", p, observation.OBS_VERSION, hint)
        if model.obs_dim != observation.obs_dim(0) or model.weights[-1][0].shape[1] != tokens.N_ACTIONS:
            raise ModelError(f"prior model {str(p)!r} has shape {model.obs_dim}->{model.weights[-1][0].shape[1]}, "
                             f"expected {observation.obs_dim(0)}->{tokens.N_ACTIONS}: {hint}")
        return model

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model atomically as ``.npz`` (plus ``.json`` with config and metrics beside it)."""
        p = Path(path)
        meta = dict(self.meta, format=PRIOR_FORMAT, layers=len(self.weights), obs_version=observation.OBS_VERSION,
                    obs_layout=observation.layout_string(0), obs_fingerprint=observation_fingerprint())
        arrays: dict[str, Any] = {}
        for i, (w, b) in enumerate(self.weights):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        blob = json.dumps(meta).encode()

        def write(tmp: Path) -> None:
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
                              "(the style-free observation: obs[:, :engine.mdp.observation.obs_dim(0)])")
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

    # ---------------------------------------------------------- torch layout
    def state_dict_numpy(self) -> dict[str, np.ndarray]:
        """Weights under ``torch.nn.Sequential`` names: ``net.{2i}.weight`` ``[out, in]``, ``net.{2i}.bias``.

        :func:`engine.learn.prior_training.to_torch` builds the matching module.
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

    @property
    def metrics(self) -> dict[str, Any]:
        """Held-out metrics recorded at training time (``test_nll``, ``test_accuracy``...)."""
        return dict(self.meta.get("metrics", {}))


def observation_fingerprint() -> str:
    """A short hash of :func:`engine.mdp.observation.observe` on fixed probe melodies.

    It changes when the observation's meaning changes even if its version and layout
    do not; the prior stores it and :meth:`PriorModel.load` warns on a mismatch.
    """
    import hashlib

    rng = np.random.default_rng(12345)
    frames = (("major", (4, 4)), ("natural_minor", (3, 4)), ("dorian", (6, 8)), ("major", (2, 4)))
    contexts = [observation.MelodyContext.from_music(key=0, scale=sc, bars=3, time_signature=ts, role="lead",
                                                     style=np.zeros((0,), np.float32)) for sc, ts in frames]
    seqs = [rng.integers(0, tokens.N_ACTIONS, c.n_steps) for c in contexts]
    digest = hashlib.sha1()
    for obs, _ in StepData(contexts=contexts, sequences=seqs).chunks():
        digest.update(np.round(obs.astype(np.float64), 5).tobytes())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------- data

@dataclass
class StepData:
    """Every step of a set of melodies (teacher forcing), observed chunk by chunk.

    ``contexts`` and ``sequences`` hold one episode each (a corpus melody cut to at most
    :data:`MAX_EPISODE_BARS` bars): its :class:`~engine.mdp.observation.MelodyContext` and
    its int64 tokens. :meth:`chunks` writes the true tokens one step at a time into a
    :class:`~engine.mdp.observation.MelodyBatch`, exactly as the environment does, and
    yields the observation before each step with the token that followed.
    """

    contexts: list[observation.MelodyContext]
    sequences: list[np.ndarray]
    names: list[str] = field(default_factory=list)

    @property
    def episodes(self) -> int:
        """Number of episodes."""
        return len(self.sequences)

    def __len__(self) -> int:
        """Number of steps (rows) over all episodes."""
        return int(sum(len(s) for s in self.sequences))

    @property
    def targets(self) -> np.ndarray:
        """int64 ``[len(self)]``: every token, episode after episode."""
        return np.concatenate(self.sequences) if self.sequences else np.zeros(0, np.int64)

    def chunks(self, order: np.ndarray | None = None, size: int = 128) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(obs float32 [n, obs_dim(0)], targets int64 [n])`` for ``size`` episodes at a time.

        ``order`` is a permutation of the episodes (default: their order); rows come out
        grouped by step within a chunk, so shuffle them before training on them.
        """
        order = np.arange(self.episodes) if order is None else np.asarray(order)
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            batch = observation.MelodyBatch.create([self.contexts[i] for i in idx])
            seqs = np.zeros(batch.tokens.shape, np.int64)
            for j, i in enumerate(idx):
                seqs[j, :len(self.sequences[i])] = self.sequences[i]
            obs, ys = [], []
            for t in range(batch.tokens.shape[1]):
                live = np.flatnonzero(batch.n_steps > t)
                o = observation.observe(batch)
                obs.append(o[live])
                ys.append(seqs[live, t])
                batch.append(seqs[:, t])
            yield np.concatenate(obs), np.concatenate(ys)


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
    """:class:`StepData` for corpus melodies (:class:`engine.corpus.melodies.CorpusMelody`), lead role, no style."""
    eps = episodes_of(melodies, max_bars)
    if not eps:
        raise EngineError("no melodies to build prior training data from: the corpus selection is empty")
    contexts = [observation.MelodyContext.from_music(key=0, scale=m.scale, bars=m.bars, time_signature=m.time_signature,
                                                     chords=list(m.chords), role="lead", style=np.zeros((0,), np.float32))
                for m in eps]
    return StepData(contexts=contexts, sequences=[np.asarray(m.tokens, np.int64) for m in eps],
                    names=[m.name for m in eps])


# -------------------------------------------------------------- measuring

def unigram_log_probs(targets: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Add-``alpha`` smoothed token frequencies as log probabilities ``float64 [38]``."""
    counts = np.bincount(np.asarray(targets, np.int64), minlength=tokens.N_ACTIONS).astype(np.float64) + alpha
    return np.log(counts / counts.sum())


def evaluate_prior(model: PriorModel, data: StepData) -> dict[str, float]:
    """Mean NLL per step (nats), top-1 accuracy and the number of steps over ``data``."""
    nll = 0.0
    correct = n = 0
    for obs, y in data.chunks(size=256):
        lp = model.log_probs(obs)
        nll -= float(lp[np.arange(len(y)), y].sum())
        correct += int((lp.argmax(axis=1) == y).sum())
        n += len(y)
    return {"nll": nll / max(n, 1), "accuracy": correct / max(n, 1), "steps": n}
