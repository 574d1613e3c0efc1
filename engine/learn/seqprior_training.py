"""Training the recurrent corpus prior: a :class:`~engine.learn.seqmodel.SeqNet` over whole tunes.

The data are the corpus episodes of :func:`engine.corpus.prior.step_data` (tunes cut to
at most 16 bars, lead role, no style), observed step by step exactly as the environment
observes them. Each episode's observations are kept once, in float16, without the
``history`` segment (the last 16 tokens one-hot, 608 of the ~900 columns), which
:func:`history_onehot` rebuilds from the tokens for each minibatch. The network is
trained on the train split with teacher forcing, early-stopped on valid, and measured on
test, overall, per corpus source and per scale family.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from engine.base.errors import EngineError
from engine.corpus import load_corpus
from engine.corpus.melodies import SPLITS
from engine.corpus.prior import MAX_EPISODE_BARS, StepData, step_data, unigram_log_probs
from engine.learn.seqmodel import SeqConfig, SeqNet
from engine.mdp import observation
from engine.music import tokens

log = logging.getLogger(__name__)

_HIST = observation.HISTORY * tokens.N_ACTIONS
#: Scale families the prior is measured on (the corpus's ``scale`` names grouped).
SCALE_FAMILIES = {"major": "major", "major_pentatonic": "major", "mixolydian": "modal", "lydian": "modal",
                  "dorian": "modal", "phrygian": "modal", "natural_minor": "minor", "harmonic_minor": "minor",
                  "melodic_minor": "minor", "minor_pentatonic": "minor", "locrian": "modal"}


@dataclass
class SeqPriorConfig:
    """How the recurrent prior is trained (saved with the model)."""

    embed: int = 256
    """Input projection width."""
    hidden: int = 128
    """GRU units."""
    head: int = 256
    """Output head's hidden width."""
    lr: float = 2e-3
    """Adam learning rate (decayed by ``lr_decay`` after every epoch)."""
    lr_decay: float = 0.8
    """Multiplier of the learning rate after each epoch."""
    weight_decay: float = 1e-6
    """Adam (L2) weight decay."""
    batch_episodes: int = 32
    """Episodes (whole tunes, similar lengths) per minibatch."""
    epochs: int = 8
    """Most epochs."""
    episodes_per_epoch: int = 0
    """Training episodes drawn per epoch; 0 uses all."""
    patience: int = 2
    """Stop after this many epochs without a better validation NLL."""
    max_bars: int = MAX_EPISODE_BARS
    """Tunes longer than this are cut into episodes of at most this many bars."""
    seed: int = 0
    """Seeds weight init and episode order."""
    sources: tuple[str, ...] | None = None
    """Corpus sources (None: all)."""
    limit: int | None = None
    """Tunes per source (None: all); for quick runs and tests."""
    init: str | None = None
    """A prior ``.pt`` to start from (fine-tuning, e.g. on one source); None: random weights."""


class EpisodeSet:
    """Observed corpus episodes: per episode float16 observations without ``history`` and tokens."""

    def __init__(self, data: StepData, sources: list[str], scales: list[str], progress: bool = False) -> None:
        self.tokens = [np.asarray(s, np.int64) for s in data.sequences]
        self.sources = sources
        self.scales = scales
        self.rest: list[np.ndarray] = []
        order = np.arange(data.episodes)
        bar = tqdm(total=len(data), desc="observing", unit="step", disable=not progress, leave=False)
        for start in range(0, len(order), 256):
            idx = order[start:start + 256]
            batch = observation.MelodyBatch.create([data.contexts[i] for i in idx])
            t_max = batch.tokens.shape[1]
            out = np.zeros((len(idx), t_max, observation.obs_dim(0) - _HIST), np.float16)
            seqs = np.zeros((len(idx), t_max), np.int64)
            for j, i in enumerate(idx):
                seqs[j, :len(self.tokens[i])] = self.tokens[i]
            for t in range(t_max):
                out[:, t] = observation.observe(batch)[:, _HIST:]
                batch.append(seqs[:, t])
                bar.update(int((batch.n_steps > t).sum()))
            for j, i in enumerate(idx):
                self.rest.append(out[j, : len(self.tokens[i])].copy())
        bar.close()

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def steps(self) -> int:
        return int(sum(len(t) for t in self.tokens))

    def batches(self, order: np.ndarray, size: int) -> list[np.ndarray]:
        """Index arrays of ``size`` episodes of similar length, in shuffled batch order."""
        order = np.asarray(order)
        by_len = order[np.argsort([len(self.tokens[i]) for i in order], kind="stable")]
        return [by_len[s:s + size] for s in range(0, len(by_len), size)]

    def tensors(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(obs float32 ``[B, T, obs_dim(0)]``, targets int64 ``[B, T]``, mask bool ``[B, T]``)."""
        lens = [len(self.tokens[i]) for i in idx]
        t_max = max(lens)
        seqs = np.zeros((len(idx), t_max), np.int64)
        rest = np.zeros((len(idx), t_max, self.rest[0].shape[1]), np.float32)
        mask = np.zeros((len(idx), t_max), bool)
        for j, i in enumerate(idx):
            n = lens[j]
            seqs[j, :n] = self.tokens[i]
            rest[j, :n] = self.rest[i]
            mask[j, :n] = True
        y = torch.from_numpy(seqs)
        obs = torch.cat([history_onehot(y), torch.from_numpy(rest)], dim=-1)
        return obs, y, torch.from_numpy(mask)


def history_onehot(seqs: torch.Tensor) -> torch.Tensor:
    """The observation's ``history`` segment for every step of ``seqs`` (int64 ``[B, T]``):
    float32 ``[B, T, 16 * 38]``, slot ``k`` holding the token ``16 - k`` steps back, zeros
    before the start (as :func:`engine.mdp.observation.observe` writes it)."""
    b, t = seqs.shape
    h = observation.HISTORY
    padded = torch.cat([torch.full((b, h), tokens.N_ACTIONS, dtype=torch.int64), seqs], dim=1)
    win = padded.unfold(1, h, 1)[:, :t]  # [B, T, 16]: tokens t-16 .. t-1
    onehot = torch.nn.functional.one_hot(win, tokens.N_ACTIONS + 1)[..., : tokens.N_ACTIONS]
    return onehot.reshape(b, t, h * tokens.N_ACTIONS).to(torch.float32)


def _nll(net: SeqNet, data: EpisodeSet, idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-episode summed NLL and correct top-1 counts."""
    idx = np.arange(len(data)) if idx is None else idx
    nll = np.zeros(len(data))
    correct = np.zeros(len(data))
    net.eval()
    with torch.no_grad():
        for b in data.batches(idx, 64):
            obs, y, mask = data.tensors(b)
            logits = net(obs)[0]
            lp = torch.log_softmax(logits, -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
            hit = (logits.argmax(-1) == y) & mask
            nll[b] = -(lp * mask).sum(1).numpy()
            correct[b] = hit.sum(1).numpy()
    return nll, correct


def evaluate(net: SeqNet, data: EpisodeSet) -> dict[str, Any]:
    """NLL (nats/step) and accuracy overall, per source and per scale family."""
    nll, correct = _nll(net, data)
    lens = np.array([len(t) for t in data.tokens], np.float64)
    out: dict[str, Any] = {"nll": float(nll.sum() / lens.sum()), "accuracy": float(correct.sum() / lens.sum()),
                           "steps": int(lens.sum())}
    for key, labels in (("per_source", data.sources), ("per_scale_family", [SCALE_FAMILIES.get(s, "modal")
                                                                          for s in data.scales])):
        groups: dict[str, list[int]] = defaultdict(list)
        for i, g in enumerate(labels):
            groups[g].append(i)
        out[key] = {g: {"nll": round(float(nll[ix].sum() / lens[ix].sum()), 4), "steps": int(lens[ix].sum()),
                        "episodes": len(ix)} for g, ix in sorted(groups.items())}
    return out


def _episode_set(mels: list[Any], max_bars: int, progress: bool) -> EpisodeSet:
    data = step_data(mels, max_bars)
    from engine.corpus.prior import episodes_of

    eps = episodes_of(mels, max_bars)
    return EpisodeSet(data, [m.source for m in eps], [m.scale for m in eps], progress)


def train_seq_prior(config: SeqPriorConfig, progress: bool = True) -> tuple[SeqNet, dict[str, Any]]:
    """Train the recurrent prior; returns the network (best validation epoch) and its metrics."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    melodies = load_corpus("all", sources=config.sources, limit=config.limit, progress=progress)
    splits = {s: [m for m in melodies if m.split == s] for s in SPLITS}
    for s, mels in splits.items():
        if not mels:
            raise EngineError(f"corpus split {s!r} is empty for sources {config.sources or 'all'} and limit "
                              f"{config.limit}: use more tunes (a larger --limit)")
    show = progress and sys.stderr.isatty()
    data = {s: _episode_set(mels, config.max_bars, show) for s, mels in splits.items()}
    log.info("observed %s steps in %.0f s", {s: d.steps for s, d in data.items()}, time.perf_counter() - t0)
    if config.init:
        net, _ = load_seq_prior(config.init)
        net.train()
    else:
        net = SeqNet(SeqConfig(obs_dim=observation.obs_dim(0), embed=config.embed, hidden=config.hidden,
                               head=config.head))
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, config.lr_decay)
    train = data["train"]
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    history = []
    bad = 0
    if config.init:  # fine-tuning keeps the starting weights unless an epoch beats them on valid
        best = (evaluate(net, data["valid"])["nll"], {k: v.detach().clone() for k, v in net.state_dict().items()})
        history.append({"epoch": 0, "valid_nll": best[0], "init": config.init})
    for epoch in range(config.epochs):
        net.train()
        order = rng.permutation(len(train))
        if config.episodes_per_epoch:
            order = order[: config.episodes_per_epoch]
        batches = train.batches(order, config.batch_episodes)
        rng.shuffle(batches)
        total = seen = 0.0
        bar = tqdm(total=len(batches), desc=f"prior epoch {epoch + 1}", unit="batch", disable=not show, leave=False)
        for b in batches:
            obs, y, mask = train.tensors(b)
            logits = net(obs)[0]
            loss_all = torch.nn.functional.cross_entropy(logits.reshape(-1, tokens.N_ACTIONS), y.reshape(-1),
                                                         reduction="none")
            m = mask.reshape(-1).to(torch.float32)
            loss = (loss_all * m).sum() / m.sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            total += float(loss.detach()) * float(m.sum())
            seen += float(m.sum())
            bar.update(1)
        bar.close()
        sched.step()
        valid = evaluate(net, data["valid"])
        history.append({"epoch": epoch + 1, "train_nll": total / max(seen, 1), "valid_nll": valid["nll"],
                        "valid_accuracy": valid["accuracy"], "seconds": round(time.perf_counter() - t0, 1)})
        log.info("prior epoch %d: train NLL %.4f, valid NLL %.4f, acc %.3f (%.0f s)", epoch + 1, total / max(seen, 1),
                 valid["nll"], valid["accuracy"], time.perf_counter() - t0)
        if best is None or valid["nll"] < best[0] - 1e-4:
            best = (valid["nll"], {k: v.detach().clone() for k, v in net.state_dict().items()})
            bad = 0
        else:
            bad += 1
            if bad >= config.patience:
                break
    assert best is not None
    net.load_state_dict(best[1])
    test = evaluate(net, data["test"])
    uni = unigram_log_probs(np.concatenate(train.tokens))
    test_tokens = np.concatenate(data["test"].tokens)
    metrics = {
        "train_steps": train.steps, "valid_steps": data["valid"].steps, "test_steps": test["steps"],
        "train_episodes": len(train), "valid_nll": best[0], "test_nll": test["nll"],
        "test_accuracy": test["accuracy"], "test_per_source": test["per_source"],
        "test_per_scale_family": test["per_scale_family"],
        "unigram_test_nll": float(-uni[test_tokens].mean()), "epochs": len(history),
        "seconds": round(time.perf_counter() - t0, 1), "history": history, "config": asdict(config),
    }
    return net, metrics


# ----------------------------------------------------------------- the prior file

#: Format of the recurrent prior's file (``prior-seq.pt``); bump when its layout changes.
SEQ_PRIOR_FORMAT = 1
#: Where the shipped recurrent prior (all corpus sources) lives.
SEQ_PRIOR_PATH = Path(__file__).resolve().parent.parent / "models" / "prior-seq.pt"
#: The KL reference of the shipped model: that prior fine-tuned on the Essen folk songs
#: (``qriff corpus prior --sources essen --init engine/models/prior-seq.pt``), the corpus the
#: default style is measured against.
KL_PRIOR_PATH = SEQ_PRIOR_PATH.with_name("prior-essen.pt")


def save_seq_prior(net: SeqNet, metrics: dict[str, Any], path: str | Path) -> Path:
    """Write the prior (weights, sizes, metrics, the observation contract) atomically, plus a
    ``.json`` beside it with everything but the weights."""
    from engine.base.files import atomic_write
    from engine.corpus.prior import observation_fingerprint

    path = Path(path)
    meta = {"format": SEQ_PRIOR_FORMAT, "seq_config": net.config.to_dict(), "metrics": metrics,
            "obs_version": observation.OBS_VERSION, "obs_layout": observation.layout_string(0),
            "obs_fingerprint": observation_fingerprint(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(path, lambda tmp: torch.save({"meta": meta, "state_dict": net.state_dict()}, tmp))
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1) + "\n"))
    return path


def load_seq_prior(path: str | Path | None = None) -> tuple[SeqNet, dict[str, Any]]:
    """The recurrent prior and its metadata; ModelError naming what to retrain when the file is
    missing, corrupt, or was trained on another observation contract."""
    from engine.base.errors import ModelError
    from engine.corpus.prior import observation_fingerprint

    p = Path(path) if path is not None else SEQ_PRIOR_PATH
    hint = f"retrain it with: qriff corpus prior --out {p}"
    if not p.is_file():
        raise ModelError(f"recurrent prior {str(p)!r} does not exist: {hint}")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
        meta = blob["meta"]
        net = SeqNet(SeqConfig.from_dict(meta["seq_config"]))
        net.load_state_dict(blob["state_dict"])
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(f"recurrent prior {str(p)!r} cannot be read ({type(exc).__name__}): {hint}") from None
    if meta.get("format") != SEQ_PRIOR_FORMAT:
        raise ModelError(f"recurrent prior {str(p)!r} has format {meta.get('format')!r}, this qriff reads "
                         f"{SEQ_PRIOR_FORMAT}: {hint}")
    if meta.get("obs_version") != observation.OBS_VERSION or meta.get("obs_layout") != observation.layout_string(0) \
            or meta.get("obs_fingerprint") != observation_fingerprint():
        raise ModelError(f"recurrent prior {str(p)!r} was trained on observation version {meta.get('obs_version')} "
                         f"(layout {meta.get('obs_layout')!r}), which differs from this qriff's "
                         f"{observation.OBS_VERSION}: {hint}")
    return net.eval(), meta
