"""A simulated musician: a hidden taste over clip descriptors, for tests and the taste bench.

The musician keeps a clip with probability ``sigmoid(bias + sum_i w_i (d_i - mu_i) / sd_i)``
over :data:`FEATURES`: the five clip descriptors of :mod:`engine.evaluation.taste`
(register, stepwise motion, note length, off-beat onsets, notes per bar) and five more
that the reward model is *not* given by name (leaps, repeated notes, range, rests, ending
on the tonic). ``mu`` and ``sd`` standardise the features on a reference set of clips
(the shipped model's), and ``bias`` is set so that the musician keeps
:attr:`Musician.base_rate` of that reference set: every taste starts from the same keep
rate, so gains are comparable across tastes.

:data:`TASTES` holds the three tastes of the issue's bench (the evaluation tastes);
:data:`DEV_TASTES` holds three others, over features the reward model's descriptors do
not name, on which qriff's tuning defaults are chosen, so that the evaluation tastes are
never used to pick them. :meth:`Musician.opposite` flips a taste's weights (the bench's
control: the opposite musician should gain nothing from the first one's model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engine.base.errors import EngineError
from engine.evaluation import metrics
from engine.evaluation.taste import DESCRIPTORS, descriptor_matrix
from engine.music import tokens

#: Features a musician's taste may weigh beyond the reward model's descriptors: (name, meaning).
HIDDEN: tuple[tuple[str, str], ...] = (
    ("leap_share", "share of intervals of five semitones or more"),
    ("repeat_share", "share of intervals of zero (the same pitch again)"),
    ("range", "highest minus lowest pitch, in semitones, divided by 24"),
    ("rest_share", "share of steps that sound nothing"),
    ("tonic_end", "1 when the last note is the tonic (any octave), else 0"),
)
#: Everything a taste may weigh: the descriptors, then :data:`HIDDEN`.
FEATURES: tuple[tuple[str, str], ...] = DESCRIPTORS + HIDDEN

#: The evaluation tastes (the issue's three): feature -> weight (per standard deviation of the reference clips).
TASTES: dict[str, dict[str, float]] = {
    "stepwise-long": {"step_share": 1.2, "mean_length": 1.2, "notes_per_bar": -0.4},
    "syncopated-riff": {"offbeat_share": 1.5, "notes_per_bar": 0.6},
    "high-register": {"register": 1.8},
}
#: Development tastes: qriff's tuning defaults are chosen on these, never on :data:`TASTES`.
#: The first three lean on features the reward model's descriptors do not name (hard to learn);
#: the last three on the descriptors alone, as the evaluation tastes do (easy to learn, so a
#: default that pushes too hard shows there).
DEV_TASTES: dict[str, dict[str, float]] = {
    "leapy-wide": {"leap_share": 1.2, "range": 1.0},
    "sparse-cadence": {"rest_share": 1.2, "tonic_end": 1.0, "notes_per_bar": -0.4},
    "low-repeated": {"register": -1.2, "repeat_share": 1.0},
    "low-sparse": {"register": -1.2, "notes_per_bar": -1.0},
    "busy-on-beat": {"notes_per_bar": 1.2, "offbeat_share": -1.0},
    "short-leapy": {"mean_length": -1.2, "step_share": -1.0},
}
#: Every taste by name.
ALL_TASTES: dict[str, dict[str, float]] = {**TASTES, **DEV_TASTES}


def hidden_features(seq: Sequence[int] | np.ndarray) -> np.ndarray:
    """float64 ``[len(HIDDEN)]`` of one melody (token sequence relative to the tonic)."""
    s = np.asarray(seq, np.int64)
    notes = metrics.notes_of(s)
    if not notes:
        return np.array([0.0, 0.0, 0.0, 1.0, 0.0])
    pitches = np.array([p for p, _ in notes], np.float64)
    iv = np.abs(np.diff(pitches))
    sounding = 0
    on = False
    for tok in s.tolist():  # a step sounds when it is an onset or a hold of a sounding note
        on = tok >= tokens.FIRST_PITCH or (tok == tokens.HOLD and on)
        sounding += on
    return np.array([float((iv >= 5).mean()) if len(iv) else 0.0,
                     float((iv == 0).mean()) if len(iv) else 0.0,
                     float(pitches.max() - pitches.min()) / 24.0,
                     1.0 - sounding / max(len(s), 1),
                     float((notes[-1][0] - tokens.TONIC_TOKEN) % 12 == 0)])


def feature_matrix(seqs: Sequence[Sequence[int] | np.ndarray], steps_per_bar: int | Sequence[int]) -> np.ndarray:
    """float64 ``[len(seqs), len(FEATURES)]``: what a musician's taste reads."""
    d = descriptor_matrix(seqs, steps_per_bar)
    h = np.array([hidden_features(s) for s in seqs]).reshape(len(seqs), len(HIDDEN))
    return np.concatenate([d, h], axis=1)


@dataclass(frozen=True)
class Musician:
    """A hidden logistic taste, calibrated on reference clips (see the module doc)."""

    name: str
    weights: np.ndarray
    """float64 ``[len(FEATURES)]``: weight per standardised feature."""
    mu: np.ndarray
    sd: np.ndarray
    bias: float
    base_rate: float

    @classmethod
    def calibrated(cls, name: str, taste: Mapping[str, float], reference: Sequence[Sequence[int] | np.ndarray],
                   steps_per_bar: int | Sequence[int] = 16, base_rate: float = 0.3) -> Musician:
        """A musician with ``taste`` (feature -> weight) who keeps ``base_rate`` of ``reference`` on average."""
        names = [n for n, _ in FEATURES]
        unknown = sorted(set(taste) - set(names))
        if unknown:
            raise EngineError(f"taste features {unknown} are not known: allowed are {', '.join(names)}")
        if not 0.0 < base_rate < 1.0:
            raise EngineError(f"base keep rate {base_rate} is out of range (allowed: 0 < rate < 1)")
        d = feature_matrix(reference, steps_per_bar)
        if len(d) < 10:
            raise EngineError(f"a musician is calibrated on at least 10 reference clips, got {len(d)}")
        mu, sd = d.mean(axis=0), d.std(axis=0) + 1e-9
        w = np.array([float(taste.get(n, 0.0)) for n in names])
        z = ((d - mu) / sd) @ w
        lo, hi = -20.0, 20.0
        for _ in range(60):  # the bias whose mean keep probability on the reference is base_rate
            mid = (lo + hi) / 2
            if np.mean(1.0 / (1.0 + np.exp(-(z + mid)))) < base_rate:
                lo = mid
            else:
                hi = mid
        return cls(name, w, mu, sd, (lo + hi) / 2, base_rate)

    def opposite(self, reference: Sequence[Sequence[int] | np.ndarray],
                 steps_per_bar: int | Sequence[int] = 16) -> Musician:
        """The musician with every weight flipped, calibrated on ``reference`` (the clips this
        one was calibrated on) to the same base keep rate."""
        names = [n for n, _ in FEATURES]
        taste = {n: -float(w) for n, w in zip(names, self.weights)}
        return Musician.calibrated(f"opposite of {self.name}", taste, reference, steps_per_bar, self.base_rate)

    def keep_probability(self, seqs: Sequence[Sequence[int] | np.ndarray],
                         steps_per_bar: int | Sequence[int] = 16) -> np.ndarray:
        """float64 ``[len(seqs)]``: the probability this musician keeps each melody."""
        z = ((feature_matrix(seqs, steps_per_bar) - self.mu) / self.sd) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def judge(self, seqs: Sequence[Sequence[int] | np.ndarray], rng: np.random.Generator,
              steps_per_bar: int | Sequence[int] = 16) -> np.ndarray:
        """int64 ``[len(seqs)]``: 1 keep, 0 discard, drawn from :meth:`keep_probability`."""
        return (rng.random(len(seqs)) < self.keep_probability(seqs, steps_per_bar)).astype(np.int64)


__all__ = ["ALL_TASTES", "DEV_TASTES", "FEATURES", "HIDDEN", "TASTES", "Musician", "feature_matrix", "hidden_features"]
