"""Every metric pinned on small hand-made melodies; the expected values are worked out in comments.

Tokens: 0 rest, 1 hold, 14 = C4, 16 = D4, 18 = E4, 21 = G4 (token = MIDI - 46 in C).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.base.errors import EngineError
from engine.evaluation import metrics

R, H = 0, 1
C4, CS4, D4, EB4, E4, F4, FS4, G4, A4, B4, C5 = 14, 15, 16, 17, 18, 19, 20, 21, 23, 25, 26


# ---------------------------------------------------------------- repetition

@pytest.mark.parametrize("seq, expected", [
    # six C4 in a row: before step t there are t copies, flagged when more than 4 -> only t=5
    ([C4] * 6, [0, 0, 0, 0, 0, 1]),
    # C4 and rests alternating: the last C4 sees 7 earlier copies with rests between (> 6) -> flagged;
    # the C4 at t=12 sees 6 (not > 6); a rest looks back, meets C4 at once and stops (0 copies)
    ([C4, R] * 7 + [C4], [0] * 14 + [1]),
    # rests: the third rest has 2 earlier rests (> 1)
    ([R, R, R], [0, 0, 1]),
    # a held note: the hold at t=6 has 5 earlier holds and no rest between (> 4); RL Tuner counts holds too
    ([C4] + [H] * 6, [0] * 6 + [1]),
    # holds after a rest: walking back crosses the rest (a gap) so the limit is 6; at t=7 there are 6
    ([R] + [H] * 7, [0] * 8),
    # a different pitch stops the walk back
    ([C4, C4, C4, D4, C4, C4, C4], [0] * 7),
])
def test_repeated_flags(seq, expected):
    assert metrics.repeated_flags(seq).astype(int).tolist() == expected


# ---------------------------------------------------------------------- key

@pytest.mark.parametrize("scale, expected", [
    # C#4 and F#4 are outside C major; rests and holds are in key
    ("major", [0, 1, 0, 0, 0, 1, 0]),
    # C natural minor: C D Eb F G Ab Bb -> C#, F# and E are out
    ("natural_minor", [0, 1, 0, 0, 0, 1, 1]),
])
def test_not_in_key(scale, expected):
    seq = [C4, CS4, R, H, D4, FS4, E4]
    assert metrics.not_in_key_flags(seq, scale).astype(int).tolist() == expected


# -------------------------------------------------------------------- motifs

def test_motif_single_window():
    # 8 steps with 3 distinct pitches: only the last step (t = 7) closes an 8-step window
    in_motif, repeated = metrics.motif_flags([C4, D4, E4, H, H, H, H, H])
    assert in_motif.astype(int).tolist() == [0] * 7 + [1]
    assert not repeated.any()


def test_motif_two_distinct_pitches_is_not_a_motif():
    in_motif, _ = metrics.motif_flags([C4, D4, C4, D4, H, H, H, H, C4])
    assert not in_motif.any()


def test_repeated_motif():
    # the 8-step figure played twice: every window t = 7..15 holds C, D and E (9 motif steps); the window
    # ending at t = 15 equals steps 0..7, which lie entirely before it; t = 14's window [H C D E H H H H]
    # would need an earlier copy inside steps 0..6 (only 7 tokens): none
    seq = [C4, D4, E4, H, H, H, H, H] * 2
    in_motif, repeated = metrics.motif_flags(seq)
    assert in_motif.sum() == 9 and in_motif[7:].all()
    assert repeated.astype(int).tolist() == [0] * 15 + [1]


# --------------------------------------------------------------------- leaps

@pytest.mark.parametrize("seq, expected", [
    # leap up C4->G4 at t=1, leap back down at t=9: 7 steps lie between (> 6) -> resolved
    ([C4, G4, H, H, H, H, H, H, H, C4], (1, 0)),
    # notes count as steps between too (G4 -> A4 is no leap; A4 -> C4 leaps back)
    ([C4, G4, H, A4, H, H, A4, H, H, C4], (1, 0)),
    ([C4, G4, A4, H, H, A4, H, H, C4], (0, 0)),
    # the same leap back at t=8 (6 steps between, as the old off-by-one accepted) only clears the leap
    ([C4, G4, H, H, H, H, H, H, C4], (0, 0)),
    ([C4, G4, H, H, H, H, H, C4], (0, 0)),
    # two leaps up in a row -> doubled
    ([C4, G4, 28], (0, 1)),
    # leap up from C4, then steps down to C4 (at or past the pitch it left) -> resolved
    ([C4, G4, 19, D4, C4], (1, 0)),
    # rests and holds are skipped when taking the interval: C4 ... G4 is a leap, then G4 -> 28 (+7) doubles it
    ([C4, R, R, G4, H, 28], (0, 1)),
    # steps only: no leap
    ([C4, D4, E4, D4, C4], (0, 0)),
])
def test_leap_outcomes(seq, expected):
    assert metrics.leap_outcomes(seq) == expected


# ----------------------------------------------------------- autocorrelation

def test_autocorrelation_alternating():
    # x = [-1, 1, -1, 1] around the mean 15, var 1, n 4:
    # lag 1: (-1 -1 -1) / 4 = -0.75; lag 2: (1 + 1) / 4 = 0.5; lag 3: (-1) / 4 = -0.25
    seq = [C4, D4, C4, D4]
    assert metrics.autocorrelation(seq, 1) == pytest.approx(-0.75)
    assert metrics.autocorrelation(seq, 2) == pytest.approx(0.5)
    assert metrics.autocorrelation(seq, 3) == pytest.approx(-0.25)


def test_autocorrelation_constant_is_nan():
    assert math.isnan(metrics.autocorrelation([C4] * 8, 1))


# ---------------------------------------------------------------- extremes

@pytest.mark.parametrize("seq, expected", [
    ([C4, G4, D4, R, H], (True, True)),      # G4 once, C4 once
    ([C4, G4, C4, G4], (False, False)),      # both twice
    ([R, H, H], (False, False)),              # largest token is the hold (twice); no pitch
    ([R, H], (True, False)),                  # RL Tuner takes the max over all tokens: one hold
])
def test_unique_extremes(seq, expected):
    assert metrics.unique_extremes(seq) == expected


# ---------------------------------------------------------- the whole table

def test_rl_tuner_stats_denominators():
    # A: 8 steps [C D E H H H H H]: motif at t=7 (1), starts with C4, no leap, all in key
    # B: 8 steps [G C# H H H H H H]: C# out of key (1), hold at t=7 has 5 earlier holds -> repeated (1)
    #    G4 -> C#4 is -6 semitones: not a leap
    a = [C4, D4, E4, H, H, H, H, H]
    b = [G4, CS4, H, H, H, H, H, H]
    s = metrics.rl_tuner_stats([a, b])
    assert s["n"] == 2 and s["steps"] == 16
    assert s["not_in_key"] == pytest.approx(1 / 16)
    assert s["repeated"] == pytest.approx(1 / 16)
    assert s["in_motif"] == pytest.approx(1 / 16)
    assert s["in_repeated_motif"] == 0
    assert s["starts_with_tonic"] == pytest.approx(1 / 2)
    # A: max token E4 once, min C4 once; B: max G4 once, min C#4 once
    assert s["unique_max"] == 1 and s["unique_min"] == 1
    assert math.isnan(s["leaps_resolved"])


def test_leaps_resolved_pooled_over_compositions():
    # one resolved leap in the first, one doubled in the second -> 1 / (1 + 1)
    s = metrics.rl_tuner_stats([[C4, G4, H, H, H, H, H, H, H, C4], [C4, G4, 28, H, H, H, H, H, H]])
    assert s["leaps_resolved"] == pytest.approx(0.5)
    assert (s["leaps_resolved_count"], s["leaps_doubled_count"]) == (1, 1)


# ------------------------------------------------------ corpus likeness

def test_notes_and_histograms():
    # C4 held 2 steps, D4 1 step (the rest ends it; the hold after the rest is silence), E4 held 3 steps
    seq = [C4, H, D4, R, H, E4, H, H]
    assert metrics.notes_of(seq) == [(C4, 2), (D4, 1), (E4, 3)]
    h = metrics.Histograms.of([seq])
    assert h.pitch_class.tolist() == [1, 0, 1, 0, 1] + [0] * 7
    assert np.flatnonzero(h.interval).tolist() == [14] and h.interval[14] == 2  # +2 twice
    assert h.length[:3].tolist() == [1, 1, 1] and h.length.sum() == 3


@pytest.mark.parametrize("p, q, expected", [
    ([1, 1, 0, 0], [0, 1, 1, 0], 0.5),       # min(.5, 0) + min(.5, .5) + min(0, .5) = 0.5
    ([2, 0, 0], [5, 0, 0], 1.0),             # same shape after normalising
    ([1, 0], [0, 1], 0.0),
])
def test_overlapping_area(p, q, expected):
    assert metrics.overlapping_area(np.array(p), np.array(q)) == pytest.approx(expected)


def test_overlapping_area_empty_is_nan_and_widths_must_match():
    assert math.isnan(metrics.overlapping_area(np.zeros(3), np.ones(3)))
    with pytest.raises(EngineError, match="different widths"):
        metrics.overlapping_area(np.ones(3), np.ones(4))


# --------------------------------------------------------------- diversity

def test_diversity():
    # a twice and b: 2 distinct of 3 clips; 4-grams: a has 2, b has 2 (one shared with a) -> 3 distinct of 6
    a = [C4, D4, E4, F4, G4]
    b = [C4, D4, E4, F4, H]
    d = metrics.diversity([a, a, b])
    assert d["distinct_clips"] == pytest.approx(2 / 3)
    assert d["distinct_4grams"] == pytest.approx(3 / 6)


def test_token_shares():
    s = metrics.token_shares([[C4, H, H, R]])
    assert (s["onset_share"], s["hold_share"], s["rest_share"]) == (0.25, 0.5, 0.25)


@pytest.mark.parametrize("bad, match", [([], "non-empty"), ([14, 38], "out of range"), ([[14]], "1-D"),
                                        ([14.0, 15.0], "integers")])
def test_bad_sequences_are_refused(bad, match):
    with pytest.raises(EngineError, match=match):
        metrics.rl_tuner_stats([np.asarray(bad)])
