"""Structure measures: does a melody return to its ideas the way real tunes do?

Every function takes token sequences relative to the tonic (as :mod:`engine.evaluation.metrics`)
and the number of 16th-note steps in a bar. Definitions (docs/evaluate.md, ``qriff evaluate``):

* **rhythm repeat**: share of bars after the first whose onset pattern (which steps
  start a note) equals that of an earlier bar of the same melody.
* **near repeat**: share of bars after the first where at least 75% of the steps sound
  the same as the same step of some earlier bar: the same pitch, struck or held alike
  (a held step matches only a held step of the same pitch), or silence (:func:`sounding`).
* **phrase return**: share of melodies of 6 bars or more whose bars 5-6 match bars
  1-2 on at least 75% of their steps, step matching as for near repeats.
* **last note on the tonic**: share of melodies whose last sounding pitch is a tonic
  (any octave).
* **notes per bar**: note onsets per bar, averaged over all bars of all melodies (with
  its 10th and 90th percentile over melodies).
* **pitch range**: highest minus lowest pitch of a melody, in semitones, averaged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from engine.base.errors import EngineError
from engine.music import tokens

#: Share of a bar's steps that must match an earlier bar for a near repeat / phrase return.
MATCH_SHARE = 0.75

#: (key, label, kind) of the structure rows; kind "%" is a share, "f" a number.
STRUCTURE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("rhythm_repeat", "bars repeating an earlier bar's rhythm", "f"),
    ("near_repeat", "bars nearly repeating an earlier bar", "f"),
    ("phrase_return", "phrase return (bars 5-6 answer bars 1-2)", "f"),
    ("last_on_tonic", "last note on the tonic", "f"),
    ("notes_per_bar", "notes per bar", "f"),
    ("pitch_range", "pitch range, semitones", "f"),
)


def _bars(seq: Sequence[int] | np.ndarray, steps_per_bar: int) -> np.ndarray:
    s = np.asarray(seq, np.int64)
    if steps_per_bar < 1 or len(s) % steps_per_bar or len(s) == 0:
        raise EngineError(f"a melody of {len(s)} steps is not a whole number of bars of {steps_per_bar} steps")
    return s.reshape(-1, steps_per_bar)


def sounding(seq: Sequence[int] | np.ndarray) -> np.ndarray:
    """int64 ``[T]``: what each step sounds, as one code: ``pitch token * 2 + 1`` on an
    onset, ``pitch token * 2`` while that pitch is held, -1 in silence (rests, and holds
    after a rest or before the first note)."""
    s = np.asarray(seq, np.int64)
    is_pitch = s >= tokens.FIRST_PITCH
    # index of the last onset or rest at or before each step
    marker = np.where(is_pitch | (s == tokens.REST), np.arange(len(s)), -1)
    last = np.maximum.accumulate(marker) if len(s) else marker
    src = s[np.maximum(last, 0)]
    held = np.where((last >= 0) & (src >= tokens.FIRST_PITCH), src * 2, -1)
    return np.where(is_pitch, s * 2 + 1, held)


def bar_repeats(seq: Sequence[int] | np.ndarray, steps_per_bar: int) -> tuple[np.ndarray, np.ndarray]:
    """bool ``[bars]`` twice: bar ``i`` repeats an earlier bar's rhythm; bar ``i`` nearly
    repeats an earlier bar (>= 75% of steps equal). Bar 0 is never a repeat."""
    raw = _bars(seq, steps_per_bar)
    onsets = raw >= tokens.FIRST_PITCH
    bars = sounding(seq).reshape(raw.shape)
    n = len(bars)
    rhythm = np.zeros(n, bool)
    near = np.zeros(n, bool)
    for i in range(1, n):
        rhythm[i] = bool((onsets[:i] == onsets[i]).all(axis=1).any())
        near[i] = bool(((bars[:i] == bars[i]).mean(axis=1) >= MATCH_SHARE).any())
    return rhythm, near


def phrase_return(seq: Sequence[int] | np.ndarray, steps_per_bar: int) -> bool | None:
    """Bars 5-6 match bars 1-2 on >= 75% of steps (None for melodies under 6 bars)."""
    bars = _bars(seq, steps_per_bar)
    if len(bars) < 6:
        return None
    bars = sounding(seq).reshape(bars.shape)
    return bool((bars[4:6] == bars[0:2]).mean() >= MATCH_SHARE)


def notes_per_bar(seq: Sequence[int] | np.ndarray, steps_per_bar: int) -> float:
    """Mean note onsets per bar of one melody."""
    bars = _bars(seq, steps_per_bar)
    return float((bars >= tokens.FIRST_PITCH).sum() / len(bars))


def last_on_tonic(seq: Sequence[int] | np.ndarray) -> bool:
    """The last sounding pitch is a tonic (False for a melody without pitches)."""
    s = np.asarray(seq, np.int64)
    p = s[s >= tokens.FIRST_PITCH]
    return bool(len(p)) and (int(p[-1]) - tokens.TONIC_TOKEN) % 12 == 0


def pitch_range(seq: Sequence[int] | np.ndarray) -> float:
    """Highest minus lowest pitch in semitones (NaN without pitches)."""
    s = np.asarray(seq, np.int64)
    p = s[s >= tokens.FIRST_PITCH]
    return float(p.max() - p.min()) if len(p) else math.nan


def per_melody(seq: Sequence[int] | np.ndarray, steps_per_bar: int) -> dict[str, float]:
    """The structure measures of one melody (phrase return NaN under 6 bars; repeats NaN for 1 bar)."""
    rhythm, near = bar_repeats(seq, steps_per_bar)
    ret = phrase_return(seq, steps_per_bar)
    later = len(rhythm) - 1
    return {
        "rhythm_repeat": float(rhythm[1:].mean()) if later else math.nan,
        "near_repeat": float(near[1:].mean()) if later else math.nan,
        "phrase_return": math.nan if ret is None else float(ret),
        "last_on_tonic": float(last_on_tonic(seq)),
        "notes_per_bar": notes_per_bar(seq, steps_per_bar),
        "pitch_range": pitch_range(seq),
    }


def structure_stats(seqs: Sequence[Sequence[int] | np.ndarray], steps_per_bar: int | Sequence[int]) -> dict[str, float]:
    """The structure measures of a set of melodies (see the module doc).

    ``steps_per_bar``: one value for all melodies or one per melody. Bar shares are
    pooled over all bars after the first; phrase return over melodies of 6+ bars (NaN
    when there are none). Also ``notes_per_bar_p10`` / ``_p90`` over melodies.
    """
    seqs = list(seqs)
    if not seqs:
        raise EngineError("no melodies to measure: give at least one token sequence")
    spbs = [int(steps_per_bar)] * len(seqs) if isinstance(steps_per_bar, int | np.integer) \
        else [int(x) for x in steps_per_bar]
    if len(spbs) != len(seqs):
        raise EngineError(f"got {len(spbs)} bar lengths for {len(seqs)} melodies: give one, or one each")
    rhythm = near = later = 0
    returns: list[bool] = []
    density, ranges, tonic = [], [], []
    for s, spb in zip(seqs, spbs):
        r, nr = bar_repeats(s, spb)
        rhythm += int(r.sum())
        near += int(nr.sum())
        later += len(r) - 1
        ret = phrase_return(s, spb)
        if ret is not None:
            returns.append(ret)
        density.append(notes_per_bar(s, spb))
        ranges.append(pitch_range(s))
        tonic.append(last_on_tonic(s))
    rng = [x for x in ranges if not math.isnan(x)]
    return {
        "rhythm_repeat": rhythm / later if later else math.nan,
        "near_repeat": near / later if later else math.nan,
        "phrase_return": float(np.mean(returns)) if returns else math.nan,
        "last_on_tonic": float(np.mean(tonic)),
        "notes_per_bar": float(np.mean(density)),
        "notes_per_bar_p10": float(np.percentile(density, 10)),
        "notes_per_bar_p90": float(np.percentile(density, 90)),
        "pitch_range": float(np.mean(rng)) if rng else math.nan,
    }
