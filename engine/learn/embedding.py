"""The sequence network's own embedding of a clip: a taste representation (``embedding``).

:class:`ClipEmbedder` reads a melody the way the corpus prior reads it while it plays
(:func:`engine.mdp.observation.observe` before every token and once after the last, in the
clip's scale, chords and metre) and returns, per clip, the prior's GRU state

* **mean-pooled** over the states after each token (what the whole line is like), then
* the **final** state, after the last token (how it ends),

float64 ``[N, 2 * hidden]`` (256 columns for the shipped model). Why both, measured by
``bench/bench_taste_embedding.py`` (docs/taste.md, "What it does"): on fresh clips' verdicts
after 200 verdicts, the mean alone read a taste for ending on the tonic worse (AUC 0.73
against 0.88 with both) and the final state alone a taste for stepwise long notes and one
for repeated notes (0.65 and 0.61 against 0.76 and 0.74); both stay within 0.03 of the
better half on every taste. The prior rather than the base G-network: in a first trial G's
states did no better within the spread, and they depend on the style settings while the
prior's are style-free. The prior is frozen (tuning copies it unchanged), so the reward
that reads it does not move while G is tuned.

A reward model reading ``embedding`` records :attr:`ClipEmbedder.source` (base model id,
weights file, a digest of the prior's weights); :meth:`ClipEmbedder.from_source` finds that
network again and refuses when it cannot.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from engine.evaluation.taste import TasteError
from engine.learn.seqmodel import SeqNet, load_policy
from engine.mdp import observation
from engine.music import limits, theory

#: How the GRU states are pooled (recorded with a reward model; a change of it is refused on load).
POOLING = "mean+final"
#: Sequences embedded together (bounds the observation buffer: 128 x 257 steps x 907 float32, ~120 MB).
CHUNK = 128


class Setting(Protocol):
    """Where a melody is played: what its observation needs besides the tokens. A
    :class:`~engine.music.clip.Clip` and a :class:`~engine.learn.tune.TuneContext` both are one."""

    key: str
    scale: str
    time_signature: tuple[int, int]

    @property
    def chords(self) -> Sequence[str]: ...


def prior_digest(prior: SeqNet) -> str:
    """sha256 of the prior's weights (names, shapes and float32 values): what identifies the network
    a reward model reads, whichever policy file holds it (tuning copies the prior unchanged)."""
    h = hashlib.sha256()
    for name, t in sorted(prior.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}".encode())
        h.update(t.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def default_time_signature(steps_per_bar: int) -> tuple[int, int]:
    """The first supported metre with ``steps_per_bar`` steps (16: 4/4, 12: 3/4, 8: 2/4)."""
    for ts, spb in theory.TIME_SIGNATURES.items():
        if spb == steps_per_bar:
            return ts
    allowed = sorted(set(theory.TIME_SIGNATURES.values()))
    raise TasteError(f"steps_per_bar {steps_per_bar} has no supported metre: allowed are {allowed}")


class ClipEmbedder:
    """Melodies -> the prior's pooled GRU states (see the module doc); the ``embedding`` representation."""

    def __init__(self, prior: SeqNet, base_model: str = "", weights: str = "") -> None:
        self.prior = prior.eval()
        self.source: dict[str, Any] = {
            "network": "prior", "pooling": POOLING, "obs_version": observation.OBS_VERSION,
            "base_model": base_model, "weights": weights, "digest": prior_digest(prior)}
        """What a reward model records to find this network again (see :meth:`from_source`)."""

    @property
    def width(self) -> int:
        return 2 * self.prior.config.hidden

    @classmethod
    def from_weights(cls, path: Path | str, base_model: str = "") -> ClipEmbedder:
        """The embedder of the prior held by a policy file written by :func:`~engine.learn.seqmodel.save_policy`."""
        return cls(load_policy(path).prior, base_model, str(Path(path).resolve()))

    @classmethod
    def from_source(cls, source: dict[str, Any], candidates: Sequence[Path] = ()) -> ClipEmbedder:
        """The embedder ``source`` (a reward model's record) names: its weights file, else the first
        of ``candidates`` (other policy files) holding a prior with the recorded digest; TasteError
        when none does or the record asks for another pooling or observation."""
        for key, want in (("network", "prior"), ("pooling", POOLING), ("obs_version", observation.OBS_VERSION)):
            if source.get(key) != want:
                raise TasteError(f"the reward model reads an embedding with {key}={source.get(key)!r}, this qriff "
                                 f"computes {key}={want!r}: refit it (qriff tune) with this version")
        tried = []
        for p in dict.fromkeys([Path(source.get("weights", "")), *map(Path, candidates)]):
            if not str(p) or not p.is_file():
                continue
            tried.append(str(p))
            emb = cls(load_policy(p).prior, str(source.get("base_model", "")), str(p.resolve()))
            if emb.source["digest"] == source.get("digest"):
                return emb
        where = f"; {', '.join(tried)} hold{'s' if len(tried) == 1 else ''} another network" if tried else ""
        raise TasteError(f"the reward model reads the embedding of base model {source.get('base_model')!r}, whose "
                         f"weights {source.get('weights')!r} are missing{where}: put that file back, or refit the "
                         "taste model (qriff tune) from the models you have")

    def __call__(self, seqs: Sequence[Sequence[int] | np.ndarray], steps_per_bar: int | Sequence[int],
                 contexts: Sequence[Setting] | None = None) -> np.ndarray:
        """float64 ``[len(seqs), 2 * hidden]`` of melodies (tokens relative to the tonic).

        ``contexts``: each melody's setting (scale, chords, metre; the key only places the
        chords); None plays every melody in C major over the scale's default progression in
        the first metre with its steps per bar (what ``qriff generate`` plays by default).
        A melody's bars are ``ceil(len / steps_per_bar)``, at most 16."""
        n = len(seqs)
        spbs = ([int(steps_per_bar)] * n if isinstance(steps_per_bar, (int, np.integer))
                else [int(x) for x in steps_per_bar])
        if len(spbs) != n or (contexts is not None and len(contexts) != n):
            raise TasteError(f"{n} melodies with {len(spbs)} steps_per_bar and "
                             f"{'no' if contexts is None else len(contexts)} contexts: give one of each per melody")
        torch.set_num_threads(1)
        out = np.zeros((n, self.width))
        order = sorted(range(n), key=lambda i: len(seqs[i]))  # similar lengths together: less padding
        for start in range(0, n, CHUNK):
            rows = [i for i in order[start:start + CHUNK] if len(seqs[i])]
            if rows:
                out[rows] = self._embed([np.asarray(seqs[i], np.int64) for i in rows], [spbs[i] for i in rows],
                                        None if contexts is None else [contexts[i] for i in rows])
        return out

    def _embed(self, seqs: list[np.ndarray], spbs: list[int], contexts: list[Setting] | None) -> np.ndarray:
        ctxs = []
        for i, (s, spb) in enumerate(zip(seqs, spbs)):
            bars = math.ceil(len(s) / spb)
            if bars > limits.MAX_BARS:
                raise TasteError(f"melody {i} has {len(s)} steps ({bars} bars of {spb}): the embedding reads at "
                                 f"most {limits.MAX_BARS} bars; cut it")
            key, scale, chords = limits.DEFAULT_KEY, "major", None
            ts = default_time_signature(spb)
            if contexts is not None:
                c = contexts[i]
                key, scale, chords, ts = c.key, c.scale, list(c.chords) or None, theory.parse_time_signature(
                    tuple(c.time_signature))
                if theory.steps_per_bar(ts) != spb:
                    raise TasteError(f"melody {i}: steps_per_bar {spb} does not match its metre {ts[0]}/{ts[1]}")
            ctxs.append(observation.MelodyContext.from_music(key=key, scale=scale, bars=bars, time_signature=ts,
                                                             chords=chords, style=np.zeros(0, np.float32)))
        lengths = np.array([len(s) for s in seqs])
        t_max = int(lengths.max())
        batch = observation.MelodyBatch.create(ctxs)
        toks = np.zeros((len(seqs), t_max), np.int64)
        for i, s in enumerate(seqs):
            toks[i, : len(s)] = s
        obs = np.zeros((len(seqs), t_max + 1, self.prior.config.obs_dim), np.float32)
        for t in range(t_max + 1):  # the observation before every token and once after the last
            obs[:, t] = observation.observe(batch)
            if t < t_max:
                batch.append(toks[:, t], t < lengths)
        with torch.no_grad():
            h, _ = self.prior.gru(torch.relu(self.prior.inp(torch.from_numpy(obs))))
        states = h[:, 1:].numpy().astype(np.float64)  # state t+1 has read token t
        mask = np.arange(t_max)[None, :] < lengths[:, None]
        mean = (states * mask[..., None]).sum(axis=1) / lengths[:, None]
        final = states[np.arange(len(seqs)), lengths - 1]
        return np.concatenate([mean, final], axis=1)


__all__ = ["CHUNK", "ClipEmbedder", "POOLING", "Setting", "default_time_signature", "prior_digest"]
