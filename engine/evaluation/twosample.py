"""Can anyone tell? A classifier two-sample test between two sets of melodies.

Lopez-Paz & Oquab (2017, "Revisiting classifier two-sample tests"): train a simple
classifier to tell set A (say, a model's clips) from set B (held-out corpus openings of
the same length) and measure how well it does on clips it did not train on. A
cross-validated ROC AUC of 0.5 means the sets cannot be told apart; 1.0 means every
clip gives itself away. Running it on two halves of the corpus calibrates the number
(what "indistinguishable" reads at this sample size).

The classifier is a standardised, L2-regularised logistic regression (scikit-learn) on
one row of features per melody (:func:`features`):

* unigrams of the melodic interval (-12..+12 semitones) and bigrams of its direction
  and size class (:data:`INTERVAL_CLASSES`);
* unigrams of note length (1..16 sixteenths) and bigrams of its class (:data:`LENGTH_CLASSES`);
* the metric position of each onset (the step within the bar);
* the structure measures of :mod:`engine.evaluation.structure` (rhythm and near repeats, phrase
  return, last note on the tonic, notes per bar, pitch range).

N-gram counts are divided by the melody's number of notes (or intervals), so a row is a
profile of the melody, not of its length. :func:`two_sample_test` also names the
features that give set A away: the largest standardised coefficients of a fit on all
the data, with the mean of each feature in both sets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.base.errors import EngineError
from engine.base.extras import require
from engine.evaluation import metrics, structure

#: Interval size classes for bigrams: (label, lowest, highest) semitones, signed.
INTERVAL_CLASSES: tuple[tuple[str, int, int], ...] = (
    ("leap down", -99, -5), ("third down", -4, -3), ("step down", -2, -1), ("unison", 0, 0),
    ("step up", 1, 2), ("third up", 3, 4), ("leap up", 5, 99),
)
#: Note length classes for bigrams: (label, shortest, longest) in 16th steps.
LENGTH_CLASSES: tuple[tuple[str, int, int], ...] = (
    ("16th", 1, 1), ("8th", 2, 2), ("dotted 8th", 3, 3), ("quarter", 4, 4), ("5-7 steps", 5, 7),
    ("half or longer", 8, 999),
)
_IV_CLASS = np.array([next(i for i, (_, lo, hi) in enumerate(INTERVAL_CLASSES) if lo <= v <= hi)
                      for v in range(-12, 13)])
_LEN_CLASS = np.array([next(i for i, (_, lo, hi) in enumerate(LENGTH_CLASSES) if lo <= v <= hi)
                       for v in range(1, 17)])
_MAX_POS = 16


def feature_names() -> list[str]:
    """Names of the columns of :func:`features`, in order."""
    names = [f"interval {v:+d}" for v in range(-12, 13)]
    names += [f"interval pair: {a} then {b}" for a, _, _ in INTERVAL_CLASSES for b, _, _ in INTERVAL_CLASSES]
    names += [f"note length {v}{'+' if v == 16 else ''} sixteenths" for v in range(1, 17)]
    names += [f"length pair: {a} then {b}" for a, _, _ in LENGTH_CLASSES for b, _, _ in LENGTH_CLASSES]
    names += [f"onset on step {p + 1} of the bar" for p in range(_MAX_POS)]
    names += [label for _, label, _ in structure.STRUCTURE_ROWS]
    return names


def features(seq: Sequence[int] | np.ndarray, steps_per_bar: int) -> np.ndarray:
    """float64 ``[len(feature_names())]``: the feature row of one melody (see the module doc)."""
    s = np.asarray(seq, np.int64)
    notes = metrics.notes_of(s)
    n_iv, n_ivc = 25, len(INTERVAL_CLASSES)
    n_len, n_lc = 16, len(LENGTH_CLASSES)
    out: list[np.ndarray] = []
    pitches = np.array([p for p, _ in notes], np.int64)
    lengths = np.minimum(np.array([n for _, n in notes], np.int64), 16)
    iv = np.clip(np.diff(pitches), -12, 12) if len(pitches) > 1 else np.zeros(0, np.int64)
    out.append(np.bincount(iv + 12, minlength=n_iv) / max(len(iv), 1))
    cls = _IV_CLASS[iv + 12]
    pairs = cls[:-1] * n_ivc + cls[1:] if len(cls) > 1 else np.zeros(0, np.int64)
    out.append(np.bincount(pairs, minlength=n_ivc * n_ivc) / max(len(pairs), 1))
    out.append(np.bincount(lengths - 1, minlength=n_len) / max(len(lengths), 1) if len(lengths) else np.zeros(n_len))
    lc = _LEN_CLASS[lengths - 1] if len(lengths) else np.zeros(0, np.int64)
    lpairs = lc[:-1] * n_lc + lc[1:] if len(lc) > 1 else np.zeros(0, np.int64)
    out.append(np.bincount(lpairs, minlength=n_lc * n_lc) / max(len(lpairs), 1))
    onset_steps = np.flatnonzero(s >= 2) % steps_per_bar
    out.append(np.bincount(np.minimum(onset_steps, _MAX_POS - 1), minlength=_MAX_POS) / max(len(onset_steps), 1))
    st = structure.per_melody(s, steps_per_bar)
    out.append(np.array([0.0 if math.isnan(st[k]) else st[k] for k, _, _ in structure.STRUCTURE_ROWS]))
    return np.concatenate(out).astype(np.float64)


@dataclass
class TwoSampleResult:
    """What :func:`two_sample_test` found."""

    auc: float
    """Cross-validated ROC AUC of telling A from B (0.5: indistinguishable)."""
    auc_folds: list[float]
    """AUC of each fold."""
    n_per_set: int
    """Melodies used from each set (the smaller set's size, the larger subsampled)."""
    give_away: list[dict[str, float | str]] = field(default_factory=list)
    """Features that tell A from B most, strongest first: ``feature``, ``weight`` (standardised
    coefficient, > 0: more typical of A), ``mean_a``, ``mean_b``."""

    def summary(self, top: int = 3) -> str:
        """``0.93 (5-fold); gives away: onset on step 2 of the bar (0.12 vs 0.03), ...``."""
        parts = [f"{g['feature']} ({g['mean_a']:.3g} vs {g['mean_b']:.3g})" for g in self.give_away[:top]]
        return f"{self.auc:.3f}" + (f"; gives it away: {', '.join(parts)}" if parts else "")


def feature_matrix(seqs: Sequence[Sequence[int] | np.ndarray], steps_per_bar: int | Sequence[int]) -> np.ndarray:
    """float64 ``[len(seqs), n_features]``: :func:`features` of every melody."""
    spbs = [int(steps_per_bar)] * len(seqs) if isinstance(steps_per_bar, int | np.integer) \
        else [int(x) for x in steps_per_bar]
    return np.stack([features(s, spb) for s, spb in zip(seqs, spbs)]) if len(seqs) else np.zeros((0, 0))


def two_sample_test(a: np.ndarray, b: np.ndarray, *, folds: int = 5, seed: int = 0, top: int = 5,
                    c: float = 0.1) -> TwoSampleResult:
    """Classifier two-sample test on feature matrices ``a`` and ``b`` (rows: melodies).

    The larger set is subsampled to the smaller one's size (``seed``), so 0.5 is chance.
    ``c`` is the inverse L2 strength of the logistic regression; ``folds`` the stratified
    cross-validation folds (shuffled with ``seed``).
    """
    require("sklearn", "eval", "the classifier two-sample test")
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n = min(len(a), len(b))
    if n < 2 * folds:
        raise EngineError(f"a two-sample test with {folds} folds needs at least {2 * folds} melodies in each set, "
                          f"got {len(a)} and {len(b)}")
    if a.shape[1] != b.shape[1]:
        raise EngineError(f"feature widths differ: {a.shape[1]} and {b.shape[1]}")
    rng = np.random.default_rng(seed)
    a = a[np.sort(rng.choice(len(a), n, replace=False))]
    b = b[np.sort(rng.choice(len(b), n, replace=False))]
    x = np.concatenate([a, b])
    y = np.concatenate([np.ones(n, np.int64), np.zeros(n, np.int64)])

    def model() -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))

    aucs = []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        clf = model().fit(x[train], y[train])
        aucs.append(float(roc_auc_score(y[test], clf.decision_function(x[test]))))
    full = model().fit(x, y)
    coef = full[-1].coef_[0]
    names = feature_names()
    order = np.argsort(-np.abs(coef))[:top]
    give = [{"feature": names[i] if i < len(names) else f"feature {i}", "weight": float(coef[i]),
             "mean_a": float(a[:, i].mean()), "mean_b": float(b[:, i].mean())} for i in order if coef[i] != 0]
    return TwoSampleResult(auc=float(np.mean(aucs)), auc_folds=aucs, n_per_set=n, give_away=give)


def calibration(b: np.ndarray, *, folds: int = 5, seed: int = 0, c: float = 0.1) -> TwoSampleResult:
    """The same test between two random halves of one set: what "indistinguishable" reads."""
    b = np.asarray(b, np.float64)
    perm = np.random.default_rng(seed + 1).permutation(len(b))
    half = len(b) // 2
    return two_sample_test(b[perm[:half]], b[perm[half:2 * half]], folds=folds, seed=seed, c=c)
