"""Melody metrics: RL Tuner's composition statistics, corpus likeness and diversity.

All functions take token sequences in qriff's lead vocabulary relative to C (token 0
rest, 1 hold, 2..37 = MIDI 48..83 once transposed to C, 14 = C4): for a lead these
are exactly RL Tuner's 38 classes.

**RL Tuner** (Jaques et al. 2017, as computed by ``rl_tuner_eval_metrics.py`` in Magenta's
RL Tuner), restated below.
Each per-step statistic is computed for step ``t`` from the composition *before* its
token is appended plus that token, and divided by the number of steps (RL Tuner's
``32 * N`` for its 32-step compositions; here the sum of the sequence lengths):

* ``not_in_key``: the token is a pitch outside the scale (rests and holds are in key).
* ``repeated``: RL Tuner's ``detect_repeating_notes``: walking back from ``t - 1`` while
  the tokens equal the new token or are rests/holds, count the copies of the new token;
  flag a rest with more than 1 earlier copy, and any other token (a pitch, and also a
  hold, as in RL Tuner's code, so long notes count) with more than 4 copies when no
  rest/hold lay between them, more than 6 when one did.
* ``in_motif``: the last 8 tokens (the new one included) hold at least 3 distinct
  pitches (impossible before step 7: the ceiling for 32 steps is 25/32).
* ``in_repeated_motif``: that 8-token window is a motif and occurs, token for token,
  entirely before the window.

Per composition (divided by the number of compositions ``N``): ``starts_with_tonic``
(step 0 is exactly token 14), ``unique_max`` (the largest token occurs once; rests and
holds included, as in RL Tuner), ``unique_min`` (the smallest pitch token occurs once).
``leaps_resolved`` = resolved / (resolved + doubled) over all compositions, with the
leap bookkeeping of :func:`leap_outcomes`. ``autocorr_1..3``: RL Tuner's
``autocorrelate`` of the raw token values, ``sum(x[t+lag] x[t]) / n / var(x)`` with x
mean-centred, averaged over compositions (constant compositions, whose variance is
0, are left out of the mean).

**Corpus likeness** (Yang & Lerch 2020): the overlapping area ``sum_b min(p_b, q_b)``
of the normalised histograms of a set of melodies and of reference (held-out corpus)
tunes: pitch class of note onsets (12 bins), melodic interval between successive notes
in semitones clipped to -12..+12 (25 bins), and note length in 16th steps (onset plus
holds, 1..16, longer ones in the last bin). 1.0 means identical distributions.

**Diversity**: share of distinct sequences and of distinct token 4-grams.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from engine.base.errors import EngineError
from engine.music import theory, tokens

#: Window of RL Tuner's motif statistics, in steps.
MOTIF_STEPS = 8
#: A leap is an interval of at least this many semitones (RL Tuner: a fifth).
LEAP = 7
#: Leaping back resolves a leap only when more than this many steps lie between the two
#: leaps (RL Tuner's ``steps_between_leaps``: leaps at steps 1 and 9 resolve, 1 and 8 not).
LEAP_BACK_STEPS = 6
#: Histogram widths: pitch class, interval (-12..+12), note length (1..16 steps).
N_PC, N_INTERVAL, N_LENGTH = 12, 25, 16

#: Per-step RL Tuner statistics (share of all steps).
STEP_METRICS = ("repeated", "not_in_key", "in_motif", "in_repeated_motif")
#: Per-composition RL Tuner statistics (share of compositions).
COMPOSITION_METRICS = ("starts_with_tonic", "unique_max", "unique_min")


def _as_seq(seq: Sequence[int] | np.ndarray) -> np.ndarray:
    a = np.asarray(seq)
    if a.ndim != 1 or a.size == 0:
        raise EngineError(f"a melody must be a non-empty 1-D token sequence, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise EngineError(f"melody tokens must be integers 0-37, got dtype {a.dtype}")
    if a.min() < 0 or a.max() >= tokens.N_ACTIONS:
        raise EngineError(f"melody token {int(a.min() if a.min() < 0 else a.max())} is out of range: tokens are "
                          f"0 (rest), 1 (hold) and 2-{tokens.N_ACTIONS - 1} (pitches)")
    return a.astype(np.int64)


# --------------------------------------------------------------- per step

def repeated_flags(seq: Sequence[int] | np.ndarray) -> np.ndarray:
    """bool ``[T]``: RL Tuner's "excessively repeated" flag of every step (see module doc)."""
    s = _as_seq(seq)
    out = np.zeros(len(s), bool)
    for t in range(len(s)):
        new = s[t]
        copies, gaps = 0, False
        for i in range(t - 1, -1, -1):
            if s[i] == new:
                copies += 1
            elif s[i] in (tokens.REST, tokens.HOLD):
                gaps = True
            else:
                break
        if new == tokens.REST:
            out[t] = copies > 1
        else:
            out[t] = copies > (6 if gaps else 4)
    return out


def not_in_key_flags(seq: Sequence[int] | np.ndarray, scale: str = "major") -> np.ndarray:
    """bool ``[T]``: the step is a pitch outside ``scale`` (relative to C = tonic)."""
    s = _as_seq(seq)
    mask = np.array(theory.scale_mask(scale), bool)
    return (s >= tokens.FIRST_PITCH) & ~mask[(s - tokens.TONIC_TOKEN) % 12]


def motif_flags(seq: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bool ``[T]`` twice: step ``t`` ends a motif; and that motif also occurred before its window."""
    s = _as_seq(seq)
    in_motif = np.zeros(len(s), bool)
    repeated = np.zeros(len(s), bool)
    raw = s.astype(np.uint8).tobytes()
    for t in range(MOTIF_STEPS - 1, len(s)):
        window = s[t - MOTIF_STEPS + 1:t + 1]
        pitches = window[window >= tokens.FIRST_PITCH]
        if len(set(pitches.tolist())) < 3:
            continue
        in_motif[t] = True
        start = t - MOTIF_STEPS + 1
        repeated[t] = raw.find(raw[start:t + 1], 0, start) >= 0
    return in_motif, repeated


# ------------------------------------------------------- per composition

def leap_outcomes(seq: Sequence[int] | np.ndarray) -> tuple[int, int]:
    """(resolved, doubled) leaps of one composition, RL Tuner's bookkeeping.

    Intervals are taken between successive pitches (rests and holds skipped). The first
    leap (>= :data:`LEAP` semitones) remembers its direction and the pitch it left. A
    further leap the same way counts *doubled* (the first stays pending); a leap back
    counts *resolved* when more than :data:`LEAP_BACK_STEPS` steps lie between it and
    the last leap (a quicker leap back just clears it); a non-leap note reaching or passing
    the pitch it left counts *resolved*.
    """
    s = _as_seq(seq)
    resolved = doubled = 0
    direction, leapt_from, leapt_at = 0, -1, 0
    last = -1
    for t, tok in enumerate(s.tolist()):
        if tok >= tokens.FIRST_PITCH and last >= 0:
            iv = tok - last
            sign = (iv > 0) - (iv < 0)
            if abs(iv) >= LEAP:
                if direction == 0:
                    direction, leapt_from = sign, last
                elif sign == direction:
                    doubled += 1
                else:
                    resolved += t - leapt_at - 1 > LEAP_BACK_STEPS
                    direction, leapt_from = 0, -1
                leapt_at = t
            elif (direction == 1 and tok <= leapt_from) or (direction == -1 and tok >= leapt_from):
                resolved += 1
                direction, leapt_from = 0, -1
        if tok >= tokens.FIRST_PITCH:
            last = tok
    return resolved, doubled


def autocorrelation(seq: Sequence[int] | np.ndarray, lag: int) -> float:
    """RL Tuner's ``autocorrelate``: ``sum(x[lag:] * x[:-lag]) / n / var`` (NaN when var is 0)."""
    s = _as_seq(seq).astype(np.float64)
    n = len(s)
    var = s.var()
    if var == 0 or lag >= n:
        return math.nan
    x = s - s.mean()
    return float((x[lag:] * x[:n - lag]).sum() / n / var)


def unique_extremes(seq: Sequence[int] | np.ndarray) -> tuple[bool, bool]:
    """(largest token occurs once, smallest pitch token occurs once), as RL Tuner counts them."""
    s = _as_seq(seq)
    high = int((s == s.max()).sum()) == 1
    pitches = s[s >= tokens.FIRST_PITCH]
    low = bool(len(pitches)) and int((s == pitches.min()).sum()) == 1
    return high, low


def rl_tuner_stats(seqs: Iterable[Sequence[int] | np.ndarray], scale: str = "major") -> dict[str, float]:
    """RL Tuner's table for a set of compositions (shares in 0..1; see the module doc).

    Returns ``repeated``, ``not_in_key``, ``in_motif``, ``in_repeated_motif`` (per step),
    ``starts_with_tonic``, ``unique_max``, ``unique_min`` (per composition),
    ``leaps_resolved`` (NaN when no leap was resolved or doubled), ``autocorr_1..3``, and
    the counts ``n``, ``steps``, ``leaps_resolved_count``, ``leaps_doubled_count``.
    """
    counts = dict.fromkeys(STEP_METRICS + COMPOSITION_METRICS, 0)
    steps = n = res = dbl = 0
    ac: list[list[float]] = [[], [], []]
    for seq in seqs:
        s = _as_seq(seq)
        n += 1
        steps += len(s)
        counts["repeated"] += int(repeated_flags(s).sum())
        counts["not_in_key"] += int(not_in_key_flags(s, scale).sum())
        m, rm = motif_flags(s)
        counts["in_motif"] += int(m.sum())
        counts["in_repeated_motif"] += int(rm.sum())
        counts["starts_with_tonic"] += int(s[0] == tokens.TONIC_TOKEN)
        hi, lo = unique_extremes(s)
        counts["unique_max"] += hi
        counts["unique_min"] += lo
        r, d = leap_outcomes(s)
        res += r
        dbl += d
        for lag in (1, 2, 3):
            ac[lag - 1].append(autocorrelation(s, lag))
    if n == 0:
        raise EngineError("no melodies to evaluate: give at least one token sequence")
    out: dict[str, float] = {k: counts[k] / steps for k in STEP_METRICS}
    out.update({k: counts[k] / n for k in COMPOSITION_METRICS})
    out["leaps_resolved"] = res / (res + dbl) if res + dbl else math.nan
    for lag in (1, 2, 3):
        vals = [v for v in ac[lag - 1] if not math.isnan(v)]
        out[f"autocorr_{lag}"] = float(np.mean(vals)) if vals else math.nan
    out.update({"n": n, "steps": steps, "leaps_resolved_count": res, "leaps_doubled_count": dbl})
    return out


# --------------------------------------------------------- corpus likeness

def notes_of(seq: Sequence[int] | np.ndarray) -> list[tuple[int, int]]:
    """(pitch token, length in steps) of every note: an onset and the holds that follow it."""
    s = _as_seq(seq)
    notes: list[list[int]] = []
    sounding = False
    for tok in s.tolist():
        if tok >= tokens.FIRST_PITCH:
            notes.append([tok, 1])
            sounding = True
        elif tok == tokens.HOLD and sounding:
            notes[-1][1] += 1
        elif tok == tokens.REST:
            sounding = False  # later holds are silence
    return [(p, n) for p, n in notes]


@dataclass
class Histograms:
    """Summed counts of the corpus-likeness features over a set of melodies.

    ``pitch_class`` ``[12]`` (onsets, 0 = C = tonic), ``interval`` ``[25]`` (-12..+12
    semitones between successive notes), ``length`` ``[16]`` (note lengths 1..16 steps,
    longer in the last bin); all float64 counts.
    """

    pitch_class: np.ndarray
    interval: np.ndarray
    length: np.ndarray

    @classmethod
    def of(cls, seqs: Iterable[Sequence[int] | np.ndarray]) -> Histograms:
        """Histograms of a set of token sequences."""
        pc = np.zeros(N_PC)
        iv = np.zeros(N_INTERVAL)
        ln = np.zeros(N_LENGTH)
        for seq in seqs:
            notes = notes_of(seq)
            if not notes:
                continue
            p = np.array([n[0] for n in notes])
            lengths = np.array([n[1] for n in notes])
            pc += np.bincount((p - tokens.TONIC_TOKEN) % 12, minlength=N_PC)
            if len(p) > 1:
                iv += np.bincount(np.clip(np.diff(p), -12, 12) + 12, minlength=N_INTERVAL)
            ln += np.bincount(np.minimum(lengths, N_LENGTH) - 1, minlength=N_LENGTH)
        return cls(pc, iv, ln)

    def overlap(self, other: Histograms) -> dict[str, float]:
        """Overlapping area per feature: ``sum(min(p, q))`` of the normalised histograms (NaN if one is empty)."""
        return {name: overlapping_area(getattr(self, name), getattr(other, name))
                for name in ("pitch_class", "interval", "length")}


def overlapping_area(p: np.ndarray, q: np.ndarray) -> float:
    """Sum of bin-wise minima of two histograms after normalising each to sum 1 (NaN if one is empty)."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    if p.shape != q.shape:
        raise EngineError(f"histograms of different widths {p.shape} and {q.shape} cannot be compared")
    if p.sum() <= 0 or q.sum() <= 0:
        return math.nan
    return float(np.minimum(p / p.sum(), q / q.sum()).sum())


# ---------------------------------------------------------------- diversity

def diversity(seqs: Sequence[Sequence[int] | np.ndarray], n: int = 4) -> dict[str, float]:
    """``distinct_clips``: distinct sequences / sequences; ``distinct_4grams``: distinct token n-grams / n-grams."""
    arrs = [_as_seq(s) for s in seqs]
    if not arrs:
        raise EngineError("no melodies to evaluate: give at least one token sequence")
    distinct = len({a.tobytes() for a in arrs}) / len(arrs)
    grams: set[bytes] = set()
    total = 0
    for a in arrs:
        b = a.astype(np.uint8).tobytes()
        for i in range(len(b) - n + 1):
            grams.add(b[i:i + n])
        total += max(len(b) - n + 1, 0)
    return {"distinct_clips": distinct, f"distinct_{n}grams": len(grams) / total if total else math.nan}


def token_shares(seqs: Iterable[Sequence[int] | np.ndarray]) -> dict[str, float]:
    """Share of steps that are rests, holds and note onsets."""
    c = np.zeros(3)
    for s in seqs:
        a = _as_seq(s)
        c += [(a == tokens.REST).sum(), (a == tokens.HOLD).sum(), (a >= tokens.FIRST_PITCH).sum()]
    total = c.sum() or 1.0
    return {"rest_share": c[0] / total, "hold_share": c[1] / total, "onset_share": c[2] / total}
