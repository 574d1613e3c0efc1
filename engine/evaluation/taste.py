"""A reward model of the musician's taste, learned from keep/discard verdicts.

The musician's verdicts (:mod:`engine.feedback`) label clips 1 (kept) or 0 (discarded).
:func:`fit_reward_model` fits a standardised, L2-regularised logistic regression on one
row of features per clip and reports how well it ranks verdicts it never saw:

* the verdicts are split once (stratified, ``seed``) into a fitting part and a
  held-out quarter; the representation (:data:`REPRESENTATIONS`: five clip descriptors,
  or those and the two-sample test's features; and, given an :class:`Embedder`, the
  sequence network's own ``embedding`` of the clip) and the regularisation strength are
  picked by cross-validated log-loss on the fitting part only (a proper score: the
  tuner is paid the log-odds, so they must be calibrated, not just well ranked);
* the chosen model's ROC AUC on the held-out quarter is the number reported
  (:attr:`RewardModel.heldout_auc`), with a calibration table (predicted keep
  probability against the observed keep rate, in bins) on the same held-out clips;
* the model used afterwards is refit on every verdict with the chosen settings.

With fewer than :data:`MIN_VERDICTS` verdicts, or fewer than :data:`MIN_PER_CLASS` of
either verdict, nothing is fitted: :class:`TasteError` says how many more are needed.

The score a tuned model is rewarded with is the model's log-odds of a keep
(:meth:`RewardModel.log_odds`): 0 for a clip the model thinks is a coin toss.

The ``embedding`` needs a network (torch, :mod:`engine.learn.embedding`), which this
module does not import: a model reading it records where its network lives
(:attr:`RewardModel.embedding`) and scores through the :class:`Embedder` attached to it
(:meth:`RewardModel.with_embedder`; ``engine.learn.personal.load_reward_model`` attaches it
to a saved one).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from engine.base.errors import EngineError
from engine.evaluation import metrics, twosample

#: Fewest verdicts a reward model is fitted on.
MIN_VERDICTS = 20
#: Fewest verdicts of each kind (keep, discard) a reward model is fitted on.
MIN_PER_CLASS = 5
#: Share of the verdicts held out for the reported AUC and calibration.
HOLDOUT_SHARE = 0.25
#: Inverse L2 strengths tried (picked by cross-validated AUC on the fitting part).
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)

#: Clip descriptors added to the two-sample features (which see intervals, lengths and
#: metric positions but not where the melody sits): (name, meaning).
DESCRIPTORS: tuple[tuple[str, str], ...] = (
    ("register", "mean pitch of the notes, in tokens above the role's lowest (0-35), divided by 35"),
    ("step_share", "share of intervals of one or two semitones"),
    ("mean_length", "mean note length in 16ths, divided by 16"),
    ("offbeat_share", "share of onsets off the beat (not on a multiple of 4 sixteenths)"),
    ("notes_per_bar", "note onsets per bar, divided by 16"),
)


class TasteError(EngineError, ValueError):
    """Too few verdicts, or verdicts a reward model cannot be fitted on."""


#: The name of the sequence network's own representation of a clip (computed by an :class:`Embedder`).
EMBEDDING = "embedding"


class Embedder(Protocol):
    """Computes the ``embedding`` representation (:class:`engine.learn.embedding.ClipEmbedder`)."""

    source: dict[str, Any]
    """What finds the network again (JSON-able; recorded with a reward model that reads it)."""

    def __call__(self, seqs: Sequence[Sequence[int] | np.ndarray], steps_per_bar: int | Sequence[int],
                 contexts: Sequence[Any] | None = None) -> np.ndarray:
        """float ``[len(seqs), F]`` of melodies (tokens relative to the tonic) played in ``contexts``
        (objects with ``key``, ``scale``, ``chords``, ``time_signature``; None: C major, default chords)."""
        ...


def descriptors(seq: Sequence[int] | np.ndarray, steps_per_bar: int) -> np.ndarray:
    """float64 ``[len(DESCRIPTORS)]`` of one melody (token sequence relative to the tonic)."""
    s = np.asarray(seq, np.int64)
    notes = metrics.notes_of(s)
    if not notes:
        return np.zeros(len(DESCRIPTORS))
    pitches = np.array([p for p, _ in notes], np.float64)
    lengths = np.array([n for _, n in notes], np.float64)
    iv = np.abs(np.diff(pitches))
    onsets = np.flatnonzero(s >= 2)
    bars = max(len(s) / max(steps_per_bar, 1), 1.0)
    return np.array([pitches.mean() / 35.0,
                     float(((iv >= 1) & (iv <= 2)).mean()) if len(iv) else 0.0,
                     min(lengths.mean(), 16.0) / 16.0,
                     float((onsets % 4 != 0).mean()) if len(onsets) else 0.0,
                     len(onsets) / bars / 16.0])


def descriptor_matrix(seqs: Sequence[Sequence[int] | np.ndarray], steps_per_bar: int | Sequence[int]) -> np.ndarray:
    """float64 ``[len(seqs), len(DESCRIPTORS)]``."""
    spbs = ([int(steps_per_bar)] * len(seqs) if isinstance(steps_per_bar, (int, np.integer))
            else [int(x) for x in steps_per_bar])
    return np.array([descriptors(s, b) for s, b in zip(seqs, spbs)]).reshape(len(seqs), len(DESCRIPTORS))


def taste_features(seqs: Sequence[Sequence[int] | np.ndarray], steps_per_bar: int | Sequence[int]) -> np.ndarray:
    """float64 ``[len(seqs), F]``: the two-sample test's features
    (:func:`engine.evaluation.twosample.features`) followed by :data:`DESCRIPTORS`."""
    if not len(seqs):
        return np.zeros((0, len(twosample.feature_names()) + len(DESCRIPTORS)))
    return np.concatenate([twosample.feature_matrix(seqs, steps_per_bar), descriptor_matrix(seqs, steps_per_bar)],
                          axis=1)


def taste_feature_names() -> list[str]:
    return twosample.feature_names() + [name for name, _ in DESCRIPTORS]


#: The clip representations a reward model may read (validation picks one): name ->
#: ``(seqs, steps_per_bar) -> float [N, F]``. ``descriptors`` are 5 columns a taste is
#: likely to be about (few verdicts go a long way); ``features`` adds the two-sample test's
#: 148 (any taste in intervals, lengths, metric positions and structure, at a cost in verdicts).
REPRESENTATIONS: dict[str, Callable[[Sequence[Sequence[int] | np.ndarray], int | Sequence[int]], np.ndarray]] = {
    "descriptors": descriptor_matrix,
    "features": taste_features,
}


def representations_of(seqs: Sequence[Sequence[int] | np.ndarray], steps_per_bar: int | Sequence[int],
                       embedder: Embedder | None = None, contexts: Sequence[Any] | None = None) -> dict[str, np.ndarray]:
    """Every representation of :data:`REPRESENTATIONS` of ``seqs`` and, given ``embedder``, the
    ``embedding`` of them played in ``contexts`` (what :func:`fit_reward_model` chooses from)."""
    out = {name: fn(seqs, steps_per_bar) for name, fn in REPRESENTATIONS.items()}
    if embedder is not None:
        out[EMBEDDING] = np.asarray(embedder(seqs, steps_per_bar, contexts), np.float64)
    return out


@dataclass
class RewardModel:
    """A fitted logistic reward model: ``log-odds(keep) = w . (x - mean) / scale + b``."""

    representation: str
    """Which representation it reads: a name of :data:`REPRESENTATIONS`, or a caller's own."""
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    c: float
    """The inverse L2 strength picked by validation."""
    n_verdicts: int
    n_keep: int
    heldout_auc: float
    """ROC AUC on the held-out verdicts of the model fitted without them (0.5: no better than chance)."""
    n_heldout: int
    calibration: list[dict[str, float]] = field(default_factory=list)
    """Held-out bins: ``lo``, ``hi`` (predicted keep probability), ``n``, ``predicted`` (mean), ``observed`` (keep rate)."""
    validation: dict[str, dict[str, float]] = field(default_factory=dict)
    """Each representation tried, at its best strength: cross-validated ``cv_auc`` and ``cv_log_loss``
    on the fitting part (the lowest log-loss is picked)."""
    embedding: dict[str, Any] | None = None
    """For a model reading ``embedding``: the :attr:`Embedder.source` of its network (saved with it)."""
    embedder: Embedder | None = field(default=None, repr=False, compare=False)
    """The network that computes ``embedding`` (not saved: attach it with :meth:`with_embedder`)."""

    def log_odds(self, x: np.ndarray) -> np.ndarray:
        """float64 ``[N]`` for rows ``x`` ``[N, F]`` of this model's representation."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.coef):
            raise TasteError(f"reward model reads {len(self.coef)} {self.representation} columns, got shape "
                             f"{x.shape}: give rows of the representation it was fitted on")
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept

    def keep_probability(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.log_odds(x)))

    def with_embedder(self, embedder: Embedder) -> RewardModel:
        """This model scoring through ``embedder``; TasteError when it is not the network the model
        was fitted on (another :attr:`Embedder.source` digest)."""
        if self.representation != EMBEDDING:
            raise TasteError(f"reward model reads {self.representation!r}, not {EMBEDDING!r}: it needs no embedder")
        want = (self.embedding or {}).get("digest")
        got = embedder.source.get("digest")
        if want != got:
            raise TasteError(f"the embedder's network (digest {str(got)[:12]}) is not the one this reward model was "
                             f"fitted on ({str(want)[:12]}, base model {(self.embedding or {}).get('base_model')!r}): "
                             "attach that network, or refit the taste model")
        return replace(self, embedder=embedder)

    def score(self, seqs: Sequence[Sequence[int] | np.ndarray], steps_per_bar: int | Sequence[int],
              contexts: Sequence[Any] | None = None) -> np.ndarray:
        """Log-odds of a keep of melodies (tokens relative to the tonic), float64 ``[len(seqs)]``, for a
        model reading one of :data:`REPRESENTATIONS` or ``embedding`` with its embedder attached.
        ``contexts`` (see :class:`Embedder`) are read by ``embedding`` only."""
        if self.representation == EMBEDDING:
            if self.embedder is None:
                src = self.embedding or {}
                raise TasteError(f"reward model reads the {EMBEDDING} of base model {src.get('base_model')!r} "
                                 f"({src.get('weights')!r}), and no network is attached: load it with "
                                 "engine.learn.personal.load_reward_model(NAME.taste.json), which finds that network")
            return self.log_odds(self.embedder(seqs, steps_per_bar, contexts))
        if self.representation not in REPRESENTATIONS:
            raise TasteError(f"reward model reads {self.representation!r}, which only its caller can compute: "
                             f"use log_odds() on rows of it (known here: {', '.join(REPRESENTATIONS)})")
        return self.log_odds(REPRESENTATIONS[self.representation](seqs, steps_per_bar))

    def to_dict(self) -> dict[str, Any]:
        return {"representation": self.representation, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept, "c": self.c, "n_verdicts": self.n_verdicts,
                "n_keep": self.n_keep, "heldout_auc": self.heldout_auc, "n_heldout": self.n_heldout,
                "calibration": self.calibration, "validation": self.validation,
                **({"embedding": self.embedding} if self.embedding is not None else {})}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RewardModel:
        return cls(representation=str(d["representation"]), mean=np.asarray(d["mean"], np.float64),
                   scale=np.asarray(d["scale"], np.float64), coef=np.asarray(d["coef"], np.float64),
                   intercept=float(d["intercept"]), c=float(d["c"]), n_verdicts=int(d["n_verdicts"]),
                   n_keep=int(d["n_keep"]), heldout_auc=float(d["heldout_auc"]), n_heldout=int(d["n_heldout"]),
                   calibration=list(d.get("calibration", [])), validation=dict(d.get("validation", {})),
                   embedding=dict(d["embedding"]) if d.get("embedding") is not None else None)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def summary(self) -> str:
        """``held-out AUC 0.81 on 50 verdicts (features, C=0.1)``."""
        return (f"held-out AUC {self.heldout_auc:.3f} on {self.n_heldout} verdicts never fitted "
                f"({self.n_verdicts} verdicts, {self.n_keep} kept; {self.representation}, C={self.c:g})")


def check_verdict_counts(labels: Sequence[int] | np.ndarray) -> None:
    """TasteError unless there are enough verdicts of both kinds to fit a reward model."""
    y = np.asarray(labels, np.int64)
    n, keep = len(y), int(y.sum())
    if n < MIN_VERDICTS:
        raise TasteError(f"only {n} verdict{'s' if n != 1 else ''} recorded: a taste model needs at least "
                         f"{MIN_VERDICTS}, so {MIN_VERDICTS - n} more (qriff keep / qriff discard, or the device's "
                         "buttons)")
    for what, count in (("kept", keep), ("discarded", n - keep)):
        if count < MIN_PER_CLASS:
            raise TasteError(f"only {count} of {n} verdicts are {what}: a taste model needs at least "
                             f"{MIN_PER_CLASS} of each, so {MIN_PER_CLASS - count} more {what} clips")


def _pipeline(c: float) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))


def _cv_scores(x: np.ndarray, y: np.ndarray, c: float, seed: int) -> tuple[float, float]:
    """Cross-validated (AUC, log-loss) of the pipeline with strength ``c``."""
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    folds = int(min(5, np.bincount(y, minlength=2).min()))
    if folds < 2:
        return float("nan"), float("nan")
    aucs, losses = [], []
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        if len(np.unique(y[tr])) < 2 or len(np.unique(y[te])) < 2:
            continue
        z = _pipeline(c).fit(x[tr], y[tr]).decision_function(x[te])
        aucs.append(roc_auc_score(y[te], z))
        losses.append(log_loss(y[te], 1.0 / (1.0 + np.exp(-z)), labels=[0, 1]))
    return (float(np.mean(aucs)), float(np.mean(losses))) if aucs else (float("nan"), float("nan"))


def calibration_bins(prob: np.ndarray, y: np.ndarray, bins: int = 5) -> list[dict[str, float]]:
    """Predicted keep probability against the observed keep rate in ``bins`` equal-width bins (empty ones left out)."""
    out = []
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
                        "predicted": float(prob[m].mean()), "observed": float(y[m].mean())})
    return out


def fit_reward_model(representations: Mapping[str, np.ndarray], labels: Sequence[int] | np.ndarray,
                     seed: int = 0, embedder: Embedder | None = None) -> RewardModel:
    """Fit the reward model on ``labels`` (1 keep, 0 discard; ``[N]``) over each representation
    (``name -> float [N, F]``, rows aligned with ``labels``); see the module doc for the protocol.
    ``embedder``: the network that computed ``representations["embedding"]``, recorded with (and
    attached to) the model when validation picks that representation."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    y = np.asarray(labels, np.int64)
    check_verdict_counts(y)
    if not representations:
        raise TasteError("no clip representation given: pass at least the taste features")
    for name, x in representations.items():
        if len(x) != len(y):
            raise TasteError(f"representation {name!r} has {len(x)} rows for {len(y)} verdicts")
    idx = np.arange(len(y))
    fit_idx, held_idx = train_test_split(idx, test_size=HOLDOUT_SHARE, stratify=y, random_state=seed)
    scores: dict[tuple[str, float], tuple[float, float]] = {}
    for name, x in representations.items():
        x = np.asarray(x, np.float64)
        for c in C_GRID:
            scores[(name, c)] = _cv_scores(x[fit_idx], y[fit_idx], c, seed)
    # picked by log-loss, a proper score: the tuner is rewarded with the log-odds themselves, so
    # their scale matters, and an over-confident fit (wide log-odds at the same AUC) loses
    valid = {k: v for k, v in scores.items() if not math.isnan(v[1])}
    name, c = min(valid, key=lambda k: valid[k][1]) if valid else (next(iter(representations)), 0.1)
    x = np.asarray(representations[name], np.float64)
    held = _pipeline(c).fit(x[fit_idx], y[fit_idx])
    held_scores = held.decision_function(x[held_idx])
    auc = float(roc_auc_score(y[held_idx], held_scores)) if len(np.unique(y[held_idx])) == 2 else float("nan")
    prob = 1.0 / (1.0 + np.exp(-held_scores))
    full = _pipeline(c).fit(x, y)
    scaler, lr = full[0], full[-1]
    per_rep = {n: min((v for (rn, _), v in valid.items() if rn == n), key=lambda v: v[1], default=(math.nan,) * 2)
               for n in representations}
    on_net = name == EMBEDDING and embedder is not None
    return RewardModel(representation=name, mean=scaler.mean_.astype(np.float64),
                       scale=scaler.scale_.astype(np.float64), coef=lr.coef_[0].astype(np.float64),
                       intercept=float(lr.intercept_[0]), c=float(c), n_verdicts=len(y), n_keep=int(y.sum()),
                       heldout_auc=auc, n_heldout=len(held_idx), calibration=calibration_bins(prob, y[held_idx]),
                       validation={k: {"cv_auc": round(v[0], 4), "cv_log_loss": round(v[1], 4)}
                                   for k, v in per_rep.items()},
                       embedding=dict(embedder.source) if on_net and embedder is not None else None,
                       embedder=embedder if on_net else None)


def plot_calibration(model: RewardModel, path: Any) -> None:
    """A calibration plot (predicted keep probability against the observed keep rate of the
    held-out verdicts) as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, label="perfectly calibrated")
    cal = model.calibration
    if cal:
        ax.plot([b["predicted"] for b in cal], [b["observed"] for b in cal], "o-", label="held-out verdicts")
        for b in cal:
            ax.annotate(str(b["n"]), (b["predicted"], b["observed"]), textcoords="offset points", xytext=(4, -10),
                        fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted keep probability")
    ax.set_ylabel("observed keep rate")
    ax.set_title(f"taste model: held-out AUC {model.heldout_auc:.2f}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


__all__ = ["DESCRIPTORS", "EMBEDDING", "Embedder", "MIN_PER_CLASS", "MIN_VERDICTS", "REPRESENTATIONS", "RewardModel",
           "representations_of", "TasteError", "calibration_bins",
           "check_verdict_counts", "descriptor_matrix", "descriptors", "fit_reward_model", "plot_calibration",
           "taste_features", "taste_feature_names"]
