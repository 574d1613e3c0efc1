"""Music theory: keys, scales, chords, roman numerals, progressions, metre, and every
malformed symbol rejected with a message that names it."""

from __future__ import annotations

import pytest

from engine.base.errors import EngineError, TheoryError
from engine.music import theory

# --------------------------------------------------------------------------- keys

@pytest.mark.parametrize("name,pc", [
    ("C", 0), ("c", 0), ("C#", 1), ("Db", 1), ("D♭", 1), ("C♯", 1), ("D", 2), ("Eb", 3), ("E", 4), ("E#", 5),
    ("Fb", 4), ("F", 5), ("F#", 6), ("Gb", 6), ("G", 7), ("Ab", 8), ("A", 9), ("Bb", 10), ("bb", 10), ("B", 11),
    ("Cb", 11), ("B#", 0), ("F##", 7), ("Bbb", 9), (" G ", 7),
])
def test_parse_key(name, pc):
    assert theory.parse_key(name) == pc


@pytest.mark.parametrize("name,match", [
    ("", "key '' is empty"),
    ("H", "key 'H' is not valid"),
    ("Cm", "key 'Cm' is not valid.*give the mode with --scale"),
    ("C major", "key 'C major' is not valid"),
    ("C#b", "key 'C#b' is not valid"),
    ("1", "key '1' is not valid"),
    ("#C", "key '#C' is not valid"),
])
def test_bad_key(name, match):
    with pytest.raises(TheoryError, match=match):
        theory.parse_key(name)


def test_key_name_round_trip():
    assert [theory.key_name(pc) for pc in range(12)] == list(theory.PC_NAMES)
    for pc in range(12):
        assert theory.parse_key(theory.key_name(pc)) == pc
    assert theory.key_name(13) == "Db"


# ------------------------------------------------------------------------- scales

@pytest.mark.parametrize("name,canonical", [
    ("major", "major"), ("Major", "major"), ("ionian", "major"), ("minor", "natural_minor"),
    ("aeolian", "natural_minor"), ("harmonic minor", "harmonic_minor"), ("harmonic-minor", "harmonic_minor"),
    ("melodic", "melodic_minor"), ("Dorian", "dorian"), ("mixolydian", "mixolydian"),
    ("pentatonic", "major_pentatonic"), ("minor_pent", "minor_pentatonic"), ("blues", "blues"),
])
def test_parse_scale(name, canonical):
    assert theory.parse_scale(name) == canonical


@pytest.mark.parametrize("name", ["", "klezmer", "majr", "minor pentatonic blues", "7"])
def test_bad_scale(name):
    with pytest.raises(TheoryError, match=f"scale {name!r} is not known: allowed are major, natural_minor"):
        theory.parse_scale(name)


def test_scale_masks_and_minor():
    assert theory.scale_mask("major") == (1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1)
    assert theory.scale_mask("blues") == (1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 0)
    assert theory.scale_mask("minor_pentatonic") == (1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 0)
    for name, steps in theory.SCALES.items():
        assert sum(theory.scale_mask(name)) == len(steps)
    minors = {s for s in theory.SCALE_NAMES if theory.is_minor_scale(s)}
    assert minors == {"natural_minor", "harmonic_minor", "melodic_minor", "dorian", "phrygian", "locrian",
                      "minor_pentatonic", "blues"}


# ------------------------------------------------------------------------- chords

@pytest.mark.parametrize("symbol,root,pcs", [
    ("C", 0, (0, 4, 7)), ("Am", 9, (9, 0, 4)), ("F#m7", 6, (6, 9, 1, 4)), ("Bbmaj7", 10, (10, 2, 5, 9)),
    ("Bdim", 11, (11, 2, 5)), ("G7sus4", 7, (7, 0, 2, 5)), ("Caug", 0, (0, 4, 8)), ("D5", 2, (2, 9)),
    ("Ebm7b5", 3, (3, 6, 9, 1)), ("C-7", 0, (0, 3, 7, 10)), ("Cø7", 0, (0, 3, 6, 10)), ("E♭", 3, (3, 7, 10)),
    ("Dm9", 2, (2, 5, 9, 0, 4)), ("Cadd9", 0, (0, 4, 7, 2)), ("C/E", 0, (0, 4, 7)), ("Am/G", 9, (9, 0, 4, 7)),
])
def test_parse_chord(symbol, root, pcs):
    chord = theory.parse_chord(symbol)
    assert chord.root == root and chord.pitch_classes == pcs and chord.symbol == symbol


def test_chord_mask_relative_to_tonic():
    assert theory.parse_chord("Am").mask(9) == (1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0)
    assert theory.parse_chord("G").mask(0) == (0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1)
    assert theory.parse_chord("C/E").bass == 4


@pytest.mark.parametrize("symbol,match", [
    ("", "chord symbol '' is empty"),
    ("Hm", "chord symbol 'Hm' is not valid"),
    ("am", "chord symbol 'am' is not valid: the root must be an upper-case letter"),
    ("Cxyz", "chord symbol 'Cxyz' has an unknown quality 'xyz'"),
    ("Cm7b9", "chord symbol 'Cm7b9' has an unknown quality 'm7b9'"),
    ("C/", "chord symbol 'C/' has a bad bass note ''"),
    ("C/Q", "chord symbol 'C/Q' has a bad bass note 'Q'"),
    ("C/Ebm", "chord symbol 'C/Ebm' has a bad bass note 'Ebm'"),
    ("7", "chord symbol '7' is not valid"),
])
def test_bad_chord(symbol, match):
    with pytest.raises(TheoryError, match=match):
        theory.parse_chord(symbol)


# ------------------------------------------------------------------ roman numerals

@pytest.mark.parametrize("numeral,key,scale,root,intervals", [
    ("I", "C", "major", 0, (0, 4, 7)), ("vi", "C", "major", 9, (0, 3, 7)), ("V7", "C", "major", 7, (0, 4, 7, 10)),
    ("ii7", "C", "major", 2, (0, 3, 7, 10)), ("bVII", "C", "major", 10, (0, 4, 7)), ("vii°", "C", "major", 11, (0, 3, 6)),
    ("viiø7", "C", "major", 11, (0, 3, 6, 10)), ("IV", "G", "major", 0, (0, 4, 7)), ("i", "A", "minor", 9, (0, 3, 7)),
    ("VI", "A", "minor", 5, (0, 4, 7)), ("V", "A", "harmonic_minor", 4, (0, 4, 7)), ("#iv°", "C", "major", 6, (0, 3, 6)),
    ("III+", "C", "harmonic_minor", 3, (0, 4, 8)), ("iimaj7", "C", "major", 2, (0, 3, 7, 11)),
    ("vi6", "C", "major", 9, (0, 3, 7, 9)), ("Isus4", "D", "major", 2, (0, 5, 7)),
    ("iv", "C", "minor_pentatonic", 5, (0, 3, 7)), ("IV", "C", "major_pentatonic", 5, (0, 4, 7)),
])
def test_parse_roman(numeral, key, scale, root, intervals):
    chord = theory.parse_roman(numeral, key, scale)
    assert (chord.root, chord.intervals) == (root, intervals)


@pytest.mark.parametrize("numeral,match", [
    ("", "roman numeral '' is not valid"),
    ("VIII", "roman numeral 'VIII' is not valid: degrees run from I to VII"),
    ("IX", "roman numeral 'IX' is not valid"),
    ("IVx", "roman numeral 'IVx' has an unknown suffix 'x'"),
    ("bbII", "roman numeral 'bbII' is not valid"),
    ("Vm", "roman numeral 'Vm' has an unknown suffix 'm'"),
    ("X", "roman numeral 'X' is not valid"),
])
def test_bad_roman(numeral, match):
    with pytest.raises(TheoryError, match=match):
        theory.parse_roman(numeral)


def test_roman_in_bad_key_or_scale():
    with pytest.raises(TheoryError, match="key 'H' is not valid"):
        theory.parse_roman("I", "H")
    with pytest.raises(TheoryError, match="scale 'nope' is not known"):
        theory.parse_roman("I", "C", "nope")


# -------------------------------------------------------------------- progressions

@pytest.mark.parametrize("text,roots", [
    ("C G Am F", [0, 7, 9, 5]), ("Dm7 G7 Cmaj7", [2, 7, 0]), ("I V vi IV", [0, 7, 9, 5]),
    ("ii7-V7-Imaj7", [2, 7, 0]), ("C | G, Am  F", [0, 7, 9, 5]), ("C-7 F", [0, 5]), ("Bb bVII", [10, 10]),
    (["C", "vi"], [0, 9]), (("I",), [0]),
])
def test_parse_progression(text, roots):
    assert [c.root for c in theory.parse_progression(text)] == roots


def test_progression_in_a_key():
    assert [c.root for c in theory.parse_progression("i iv V", "A", "harmonic_minor")] == [9, 2, 4]
    assert [c.root for c in theory.parse_progression("I IV", 7)] == [7, 0]


@pytest.mark.parametrize("text,match", [
    ("", "chord progression is empty"),
    (" | , ", "chord progression is empty"),
    ([], "chord progression is empty"),
    ("C Q", "chord 'Q' in progression 'C Q' is neither a chord symbol"),
    ("C Hm", "chord 'Hm' in progression"),
    ("I V vi VIII", "roman numeral 'VIII' is not valid"),
    ("C Gx", "chord symbol 'Gx' has an unknown quality 'x'"),
    (["C", ""], "has an empty chord"),
    ("I-", "roman numeral 'I-' has an unknown suffix '-'"),
])
def test_bad_progression(text, match):
    with pytest.raises(TheoryError, match=match):
        theory.parse_progression(text)


@pytest.mark.parametrize("scale", theory.SCALE_NAMES)
def test_default_progressions_are_diatonic(scale):
    prog = theory.default_progression(scale)
    assert len(prog) == 4
    mask = theory.scale_mask(scale)
    if scale in ("major_pentatonic", "minor_pentatonic", "blues"):
        parent = "natural_minor" if theory.is_minor_scale(scale) else "major"
        mask = theory.scale_mask(parent)
        if scale == "blues":  # dominant sevenths over the blues scale are idiomatic
            return
    for chord in prog:
        assert all(mask[pc] for pc in chord.pitch_classes), (scale, chord)


# -------------------------------------------------------------------------- metre

@pytest.mark.parametrize("text,pair,steps", [
    ("4/4", (4, 4), 16), (" 3 / 4 ", (3, 4), 12), ("2/4", (2, 4), 8), ("6/8", (6, 8), 12), ((3, 4), (3, 4), 12),
    ([4, 4], (4, 4), 16),
])
def test_time_signatures(text, pair, steps):
    assert theory.parse_time_signature(text) == pair
    assert theory.steps_per_bar(text) == steps


@pytest.mark.parametrize("text,match", [
    ("5/4", "time signature '5/4' is not supported: allowed are 4/4, 3/4, 2/4, 6/8"),
    ("4-4", "time signature '4-4' is not valid: expected N/D"),
    ("", "time signature '' is not valid"),
    ("four/four", "time signature 'four/four' is not valid"),
    ((4,), r"time signature \(4,\) is not valid: expected a pair of whole numbers"),
    (("4", "4"), r"time signature \('4', '4'\) is not valid"),
    ((4, 4, 4), r"time signature \(4, 4, 4\) is not valid"),
    ((7, 8), r"time signature \(7, 8\) is not supported"),
])
def test_bad_time_signature(text, match):
    with pytest.raises(TheoryError, match=match):
        theory.parse_time_signature(text)


@pytest.mark.parametrize("ts,strengths", [
    ((4, 4), [3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0]),
    ((3, 4), [3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]),
    ((2, 4), [3, 0, 0, 0, 1, 0, 0, 0]),
    ((6, 8), [3, 0, 1, 0, 1, 0, 2, 0, 1, 0, 1, 0]),
])
def test_beat_strength(ts, strengths):
    assert [theory.beat_strength(s, ts) for s in range(theory.steps_per_bar(ts))] == strengths


@pytest.mark.parametrize("step", [-1, 12])
def test_beat_strength_outside_the_bar(step):
    with pytest.raises(TheoryError, match=f"step {step} is outside a bar of 3/4 \\(allowed: 0-11\\)"):
        theory.beat_strength(step, (3, 4))


def test_theory_error_is_an_engine_error():
    assert issubclass(TheoryError, EngineError) and issubclass(TheoryError, ValueError)
    assert theory.MAX_STEPS_PER_BAR == max(theory.TIME_SIGNATURES.values())


def test_chord_symbol_names_roman_numerals_by_letter():
    assert theory.chord_symbol(theory.parse_chord("F#m7")) == "F#m7"
    assert theory.chord_symbol(theory.parse_roman("vi", "C")) == "Am"
    assert theory.chord_symbol(theory.parse_roman("V7", "G")) == "D7"
    assert [theory.chord_symbol(c) for c in theory.default_progression("locrian", "B")] == ["Bdim", "C", "Em", "Am"]
