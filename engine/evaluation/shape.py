"""Shape measures: how dense, how long, how wide, how stepwise a set of melodies is.

Computed by the same code for a model's clips and for real tunes (held-out Essen
openings of the same length), so a model value can be read as a ratio to Essen. Every
function takes token sequences relative to the tonic (as :mod:`engine.evaluation.metrics`)
with a :class:`Frame` per melody (bar length, and the chords for the chord-tone row).
Definitions (also ``docs/evaluation.md``); a "note" is an onset and the holds after it
(:func:`engine.evaluation.metrics.notes_of`):

* **notes a bar**: onsets per bar, over all bars of all melodies.
* **pitch range**: highest minus lowest pitch of a melody in semitones, mean over melodies.
* **rest steps**: share of all steps where nothing sounds (a rest, a hold after a rest,
  or a hold before the first note).
* **long notes**: share of notes lasting 8 sixteenths (a half note) or longer.
* **16ths**: share of notes lasting exactly one 16th step.
* **stepwise**: share of intervals between successive notes (rests skipped) of 1 or 2
  semitones; repeated pitches count as intervals (of 0) but not as steps.
* **near repeat**, **phrase return**: :mod:`engine.evaluation.structure`.
* **leading tone**: share of notes on pitch class 11 above the tonic (the 7th degree of
  major and harmonic minor, B in C).
* **first on tonic**: share of melodies whose first note is a tonic, any octave (RL
  Tuner's ``starts_with_tonic`` asks for exactly C4).
* **chord tones on strong beats**: over the strong beats of all bars (those of metrical
  weight 2 or 3 in :func:`engine.music.theory.beat_strength`: beats 1 and 3 of 4/4, the
  downbeat of 3/4 and 2/4, beats 1 and 4 of 6/8) where a note sounds (struck or held),
  the share whose pitch class belongs to that bar's chord. The progression loops when it
  is shorter than the melody.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.base.errors import EngineError
from engine.evaluation import metrics, structure
from engine.music import theory, tokens

#: A note this many 16th steps or longer counts as "a half note or longer".
LONG_NOTE_STEPS = 8
#: Pitch class (above the tonic) of the leading tone.
LEADING_TONE = 11
#: Beats of at least this metrical weight are strong (see :func:`engine.music.theory.beat_strength`).
STRONG_BEAT = 2

#: (key, label, kind) of the shape rows, in table order; kind "%" is a share, "f" a number.
SHAPE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("notes_per_bar", "notes a bar", "f"),
    ("pitch_range", "pitch range, semitones", "f"),
    ("silent_share", "rest steps (nothing sounds)", "%"),
    ("long_note_share", "notes a half note or longer", "%"),
    ("sixteenth_share", "16th notes", "%"),
    ("stepwise_share", "stepwise intervals (1-2 semitones)", "%"),
    ("near_repeat", "bars nearly repeating an earlier bar", "f"),
    ("phrase_return", "phrase return (bars 5-6 answer bars 1-2)", "f"),
    ("leading_tone_share", "leading tone (7th degree) among notes", "%"),
    ("first_on_tonic", "first note on the tonic (any octave)", "%"),
    ("chord_tones_strong", "chord tones on strong beats", "%"),
)
#: The shape rows the issue checks against Essen (0.75-1.25x): the first eight.
RATIO_KEYS: tuple[str, ...] = tuple(k for k, _, _ in SHAPE_ROWS[:8])
#: The band a shape measure must fall in, as a ratio to the Essen value.
RATIO_BAND = (0.75, 1.25)


@dataclass(frozen=True)
class Frame:
    """What a melody was written against: steps per bar, its metre and the chords (relative to the tonic).

    ``chord_pcs`` holds one set of pitch classes per bar of the progression (0 = tonic),
    looping; empty to leave the chord-tone row out for this melody.
    """

    time_signature: tuple[int, int] = (4, 4)
    chord_pcs: tuple[frozenset[int], ...] = ()

    @classmethod
    def of(cls, time_signature: tuple[int, int] | str = (4, 4), chords: str | Sequence[str] | None = None,
           key: int = 0, scale: str = "major") -> Frame:
        """A frame from chord symbols as written (absolute, in ``key``) or roman numerals; None for the
        default progression of ``scale``."""
        ts = theory.parse_time_signature(time_signature)
        if chords is None or (not isinstance(chords, str) and len(chords) == 0):
            prog = theory.default_progression(scale, key)
        else:
            prog = theory.parse_progression(chords if isinstance(chords, str) else list(chords), key, scale)
        return cls(ts, tuple(frozenset((pc - key) % 12 for pc in c.pitch_classes) for c in prog))

    @property
    def steps_per_bar(self) -> int:
        """16th steps in one bar."""
        return theory.steps_per_bar(self.time_signature)


def strong_steps(time_signature: tuple[int, int]) -> np.ndarray:
    """int64: the steps of a bar that are strong beats (weight >= :data:`STRONG_BEAT`)."""
    n = theory.steps_per_bar(time_signature)
    return np.array([i for i in range(n) if theory.beat_strength(i, time_signature) >= STRONG_BEAT], np.int64)


def chord_tone_counts(seq: Sequence[int] | np.ndarray, frame: Frame) -> tuple[int, int]:
    """(chord tones, sounding strong beats) of one melody; (0, 0) when ``frame`` has no chords."""
    if not frame.chord_pcs:
        return 0, 0
    spb = frame.steps_per_bar
    code = structure.sounding(seq)
    if len(code) % spb:
        raise EngineError(f"a melody of {len(code)} steps is not a whole number of bars of {spb} steps")
    hits = total = 0
    for bar in range(len(code) // spb):
        chord = frame.chord_pcs[bar % len(frame.chord_pcs)]
        for step in strong_steps(frame.time_signature):
            c = code[bar * spb + step]
            if c < 0:
                continue
            total += 1
            hits += ((c // 2) - tokens.TONIC_TOKEN) % 12 in chord
    return hits, total


def shape_stats(seqs: Sequence[Sequence[int] | np.ndarray], frames: Frame | Sequence[Frame]) -> dict[str, float]:
    """The shape measures of a set of melodies (see the module doc): one dict, keys of :data:`SHAPE_ROWS`.

    ``frames``: one :class:`Frame` for all melodies or one per melody. Shares of notes and
    intervals pool all notes of all melodies; rest steps pool all steps; range and first
    on tonic are per melody, averaged (melodies without notes are left out of both).
    ``chord_tones_strong`` is NaN when no frame has chords or no strong beat sounds.
    """
    seqs = [np.asarray(s, np.int64) for s in seqs]
    if not seqs:
        raise EngineError("no melodies to measure: give at least one token sequence")
    frames = [frames] * len(seqs) if isinstance(frames, Frame) else list(frames)
    if len(frames) != len(seqs):
        raise EngineError(f"got {len(frames)} frames for {len(seqs)} melodies: give one, or one each")
    n_notes = long = sixteenths = leading = 0
    n_iv = steps_iv = silent = total_steps = 0
    first: list[bool] = []
    hits = strong = 0
    for s, f in zip(seqs, frames):
        notes = metrics.notes_of(s)
        total_steps += len(s)
        silent += int((structure.sounding(s) < 0).sum())
        h, t = chord_tone_counts(s, f)
        hits += h
        strong += t
        if not notes:
            continue
        p = np.array([n[0] for n in notes], np.int64)
        ln = np.array([n[1] for n in notes], np.int64)
        n_notes += len(notes)
        long += int((ln >= LONG_NOTE_STEPS).sum())
        sixteenths += int((ln == 1).sum())
        leading += int(((p - tokens.TONIC_TOKEN) % 12 == LEADING_TONE).sum())
        iv = np.abs(np.diff(p))
        n_iv += len(iv)
        steps_iv += int(((iv == 1) | (iv == 2)).sum())
        first.append((int(p[0]) - tokens.TONIC_TOKEN) % 12 == 0)
    st = structure.structure_stats(seqs, [f.steps_per_bar for f in frames])
    return {
        "notes_per_bar": st["notes_per_bar"],
        "pitch_range": st["pitch_range"],
        "silent_share": silent / total_steps,
        "long_note_share": long / n_notes if n_notes else math.nan,
        "sixteenth_share": sixteenths / n_notes if n_notes else math.nan,
        "stepwise_share": steps_iv / n_iv if n_iv else math.nan,
        "near_repeat": st["near_repeat"],
        "phrase_return": st["phrase_return"],
        "leading_tone_share": leading / n_notes if n_notes else math.nan,
        "first_on_tonic": float(np.mean(first)) if first else math.nan,
        "chord_tones_strong": hits / strong if strong else math.nan,
    }


def ratio(value: float, reference: float) -> float:
    """``value / reference``; NaN when either is NaN or the reference is 0."""
    if value is None or reference is None or math.isnan(value) or math.isnan(reference) or reference == 0:
        return math.nan
    return value / reference


def in_band(r: float, band: tuple[float, float] = RATIO_BAND) -> bool:
    """The ratio lies within ``band`` (inclusive); False for NaN."""
    return not math.isnan(r) and band[0] <= r <= band[1]
