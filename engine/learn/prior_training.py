"""Training the corpus prior (torch): the supervised next-token model of :mod:`engine.corpus.prior`.

The prior is trained on the corpus train split, early-stopped on the valid split and
measured on the test split; the result is a numpy :class:`~engine.corpus.prior.PriorModel`
(``qriff corpus prior`` saves it). Network layout: ``Linear, ReLU, ..., Linear(-> 38)``,
the key names :meth:`~engine.corpus.prior.PriorModel.state_dict_numpy` uses.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from engine.base.errors import EngineError
from engine.corpus import load_corpus
from engine.corpus.melodies import SPLITS
from engine.corpus.prior import MAX_EPISODE_BARS, PriorModel, evaluate_prior, step_data, unigram_log_probs
from engine.mdp import observation
from engine.music import theory, tokens

log = logging.getLogger(__name__)


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
    epochs: int = 15
    """Most epochs (each samples about ``rows_per_epoch`` training steps)."""
    rows_per_epoch: int = 400_000
    """Steps per epoch, drawn as random whole episodes; 0 uses every training step."""
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


def to_torch(model: PriorModel) -> Any:
    """A ``torch.nn.Sequential`` holding ``model``'s weights."""
    net = torch_net(model.obs_dim, model.hidden)
    net.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in model.state_dict_numpy().items()})
    return net


def train_prior(config: PriorConfig, progress: bool = True) -> tuple[PriorModel, dict[str, Any]]:
    """Train the prior on the corpus train split, early-stopped on valid; metrics on test.

    Returns the model (its ``meta`` holds config and metrics) and the metrics dict:
    ``train/valid/test_steps``, ``valid_nll``, ``test_nll`` and ``test_accuracy`` (nats
    per step), the unigram baseline on test, epochs run and seconds.
    """
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
        total, seen = 0.0, 0
        # an epoch: random whole episodes until about rows_per_epoch steps (observing only what is used)
        order = rng.permutation(train.episodes)
        cum = np.cumsum([len(train.sequences[i]) for i in order])
        order = order[: int(np.searchsorted(cum, n_rows)) + 1]
        bar = tqdm(total=int(min(cum[-1], n_rows)), desc=f"prior epoch {epoch + 1}", unit="step", disable=not show,
                   leave=False)
        for obs, ys in train.chunks(order, size=256):
            pick = rng.permutation(len(ys))
            for start in range(0, len(pick), config.batch_size):
                idx = pick[start:start + config.batch_size]
                x = torch.from_numpy(obs[idx])
                y = torch.from_numpy(ys[idx])
                loss = torch.nn.functional.cross_entropy(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                seen += len(idx)
                bar.update(len(idx))
        bar.close()
        total /= max(seen, 1)
        model = _from_torch(net, config)
        valid = evaluate_prior(model, data["valid"])
        history.append({"epoch": epoch + 1, "train_nll": total, "valid_nll": valid["nll"],
                        "valid_accuracy": valid["accuracy"]})
        log.info("prior epoch %d: train NLL %.4f, valid NLL %.4f, acc %.3f", epoch + 1, total,
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
        "train_steps": len(train), "valid_steps": len(data["valid"]), "test_steps": test["steps"],
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
