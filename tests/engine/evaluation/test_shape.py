"""Shape measures and the per-scale-family degree shares."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from engine.base.errors import EngineError
from engine.evaluation import evaluate as ev
from engine.evaluation import scales, shape

H, R = 1, 0
C4, D4, E4, F4, G4, B3, B4, C5 = 14, 16, 18, 19, 21, 13, 25, 26
# one 4/4 bar: C4 half note, E4 16th, rest 16th (+ 2 silent holds), G4 8th, B4 quarter... = 16 steps
BAR = [C4, H, H, H, H, H, H, H, E4, R, H, H, G4, H, B4, H]


def test_one_bar_by_hand():
    r = shape.shape_stats([BAR], shape.Frame.of((4, 4), "C"))
    assert r["notes_per_bar"] == 4 and r["pitch_range"] == B4 - C4
    assert r["silent_share"] == 3 / 16                   # the rest and the two holds after it
    assert r["long_note_share"] == 1 / 4                 # the C4 half note
    assert r["sixteenth_share"] == 1 / 4                 # E4 (its rest ends it)
    assert r["stepwise_share"] == 0                      # 4, 3, 4 semitones
    assert r["leading_tone_share"] == 1 / 4 and r["first_on_tonic"] == 1.0
    # strong beats of 4/4: steps 0 (C4 struck) and 8 (E4 struck): both in C major's triad
    assert r["chord_tones_strong"] == 1.0
    assert math.isnan(r["near_repeat"]) and math.isnan(r["phrase_return"])


def test_chord_tones_follow_the_bar_and_held_notes_count():
    # bar 1 over C: C4 held through beat 3; bar 2 over G: C4 on beat 1 (not in G), D4 on beat 3
    two = [C4] + [H] * 15 + [C4] + [H] * 7 + [D4] + [H] * 7
    r = shape.shape_stats([two], shape.Frame.of((4, 4), "C G"))
    assert r["chord_tones_strong"] == 3 / 4
    # silence on a strong beat is left out, and the progression loops
    quiet = [R] * 16 + [C4] + [H] * 15
    assert shape.chord_tone_counts(quiet, shape.Frame.of((4, 4), "G")) == (0, 2)
    assert shape.chord_tone_counts(quiet, shape.Frame.of((4, 4), "C G C")) == (0, 2)
    assert shape.chord_tone_counts(quiet, shape.Frame(chord_pcs=())) == (0, 0)


def test_chords_in_another_key_are_moved_to_the_tonic():
    # tokens are relative to the tonic: in D major, chord D is the tonic triad
    f = shape.Frame.of((4, 4), "D A", key=2)
    assert f.chord_pcs[0] == frozenset({0, 4, 7}) and f.chord_pcs[1] == frozenset({7, 11, 2})
    assert shape.Frame.of((4, 4), None, scale="major").chord_pcs == shape.Frame.of((4, 4), "C G Am F").chord_pcs


@pytest.mark.parametrize("ts, steps", [((4, 4), [0, 8]), ((3, 4), [0]), ((2, 4), [0]), ((6, 8), [0, 6])])
def test_strong_steps(ts, steps):
    assert shape.strong_steps(ts).tolist() == steps


def test_stepwise_counts_unisons_as_intervals_not_steps():
    seq = [C4, H, D4, H, D4, H, F4, H] * 2          # 2, 0, 3, -5, 2, 0, 3 ... in a 4/4 bar
    r = shape.shape_stats([seq], shape.Frame.of((4, 4), "C"))
    iv = np.abs(np.diff([p for p in seq if p > 1]))
    assert r["stepwise_share"] == pytest.approx(((iv == 1) | (iv == 2)).sum() / len(iv))


def test_a_melody_of_rests_has_no_note_shares():
    r = shape.shape_stats([[R] * 16], shape.Frame.of((4, 4), "C"))
    assert r["silent_share"] == 1.0 and r["notes_per_bar"] == 0
    for k in ("long_note_share", "sixteenth_share", "stepwise_share", "leading_tone_share", "first_on_tonic",
              "chord_tones_strong", "pitch_range"):
        assert math.isnan(r[k])


def test_bad_input():
    with pytest.raises(EngineError, match="no melodies"):
        shape.shape_stats([], shape.Frame())
    with pytest.raises(EngineError, match="2 frames for 1 melodies"):
        shape.shape_stats([BAR], [shape.Frame()] * 2)
    with pytest.raises(EngineError, match="not a whole number of bars"):
        shape.shape_stats([BAR[:10]], shape.Frame.of((4, 4), "C"))


def test_ratio_and_band():
    assert shape.ratio(1.0, 2.0) == 0.5 and math.isnan(shape.ratio(1.0, 0.0)) and math.isnan(shape.ratio(math.nan, 1))
    assert shape.in_band(0.75) and shape.in_band(1.25) and not shape.in_band(1.26) and not shape.in_band(math.nan)


def test_evaluate_sequences_carries_the_shape_rows():
    r = ev.evaluate_sequences([BAR, BAR], chords="C")
    direct = shape.shape_stats([BAR, BAR], shape.Frame.of((4, 4), "C"))
    for k, _, _ in shape.SHAPE_ROWS:
        assert r[k] == pytest.approx(direct[k], nan_ok=True)
    assert r["characteristic_share"] == pytest.approx(1 / 4)          # B4 in C major
    table = ev.markdown_table({"x": r}, published=False)
    assert "| 16th notes | 25% |" in table and "| chord tones on strong beats | 100% |" in table


# ------------------------------------------------------------- scale families

def tune(seq, scale):
    return SimpleNamespace(tokens=np.asarray(seq), scale=scale)


def test_degree_share():
    assert scales.degree_share([BAR], 11) == 1 / 4
    assert scales.degree_share([BAR], (0, 4)) == 2 / 4
    assert math.isnan(scales.degree_share([[R] * 4], 11))


def test_corpus_shares_fall_back_in_order(monkeypatch):
    monkeypatch.setattr(scales, "MIN_TUNES", 2)
    minor_bar = [C4, H, 17, H, 23, H, 24, H, 22, H, C4, H, H, H, H, H]   # Eb, A (pc 9), Bb (10), Ab (8)
    heldout = [tune(BAR, "major")] * 3 + [tune(minor_bar, "natural_minor")] * 2 + [tune(minor_bar, "dorian")]
    every = heldout + [tune(minor_bar, "dorian")]
    got = scales.corpus_shares(heldout, every)
    assert got["major"].share == 1 / 4 and got["major"].n_tunes == 3 and "held-out major" in got["major"].basis
    assert got["natural_minor"].share == pytest.approx(1 / 6)        # Ab among 6 notes
    # dorian: 1 held out (< 2), 2 in all splits -> rule 2
    assert got["dorian"].n_tunes == 2 and "all splits" in got["dorian"].basis
    assert got["dorian"].share == pytest.approx(1 / 6)
    # harmonic minor has no tunes: the 7th degree (Bb or B) of the minor tunes
    assert "natural_minor" in got["harmonic_minor"].basis and got["harmonic_minor"].share == pytest.approx(1 / 6)
    # lydian: the 4th degree (F or F#) of major tunes: none in BAR
    assert got["lydian"].share == 0 and "0 lydian tunes" in got["lydian"].basis
    assert set(got) == set(scales.FAMILIES)


def test_every_family_is_a_scale_with_its_degree():
    from engine.music import theory

    for fam, (pc, _) in scales.CHARACTERISTIC.items():
        assert theory.scale_mask(fam)[pc] == 1
