"""Music theory as pure functions: keys, scales, chords, progressions, metre.

Everything here works on pitch classes (0 = C ... 11 = B) and semitone intervals so
the rest of the engine can stay transposition invariant. Parsing functions raise
:class:`~engine.base.errors.TheoryError` naming the symbol that failed and what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from engine.base.errors import TheoryError

# --------------------------------------------------------------------------- keys

_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTALS = {"#": 1, "♯": 1, "s": 1, "b": -1, "♭": -1, "": 0}
#: Spelling used when printing a pitch class (flats where a key signature would).
PC_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_NOTE_RE = re.compile(r"^([A-Ga-g])(##|bb|[#♯b♭]?)")


def _note_prefix(text: str) -> tuple[int, int]:
    """Parse a note name at the start of ``text``: (pitch class, characters used)."""
    m = _NOTE_RE.match(text)
    if not m:
        raise TheoryError(f"note name {text!r} is not valid: expected a letter A-G, optionally followed by # or b")
    letter, acc = m.group(1).upper(), m.group(2)
    shift = sum(_ACCIDENTALS[c] for c in acc)
    return (_LETTER_PC[letter] + shift) % 12, m.end()


def parse_key(name: str) -> int:
    """Pitch class (0-11) of a key's tonic: ``"C"``, ``"F#"``, ``"Bb"``, ``"c#"``, ``"E♭"``.

    A trailing ``m``/``min``/``minor``/``maj``/``major`` is not accepted here: the mode is
    the scale's job (see :func:`parse_scale`).
    """
    text = str(name).strip()
    if not text:
        raise TheoryError("key '' is empty: expected one of C, C#/Db, D, ..., B")
    try:
        pc, used = _note_prefix(text)
    except TheoryError:
        raise TheoryError(f"key {name!r} is not valid: expected a tonic A-G with optional # or b, e.g. C, F#, Bb") from None
    if used != len(text):
        raise TheoryError(f"key {name!r} is not valid: expected a tonic A-G with optional # or b, e.g. C, F#, Bb "
                          "(give the mode with --scale)")
    return pc


def key_name(pc: int) -> str:
    """Printable name of a pitch class (flat spelling for black keys except F#)."""
    return PC_NAMES[int(pc) % 12]


# ------------------------------------------------------------------------- scales

#: Scales and modes as semitone offsets from the tonic.
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "natural_minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "melodic_minor": (0, 2, 3, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
    "major_pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}
SCALE_ALIASES = {
    "ionian": "major", "maj": "major",
    "minor": "natural_minor", "min": "natural_minor", "aeolian": "natural_minor",
    "harmonic": "harmonic_minor", "melodic": "melodic_minor",
    "pentatonic": "major_pentatonic", "major_pent": "major_pentatonic", "minor_pent": "minor_pentatonic",
}
#: Fixed order of scales; the index is what the observation and ONNX metadata use.
SCALE_NAMES: tuple[str, ...] = tuple(SCALES)


def parse_scale(name: str) -> str:
    """Canonical scale name for ``name`` (case, spaces and dashes ignored; aliases accepted)."""
    norm = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    norm = SCALE_ALIASES.get(norm, norm)
    if norm not in SCALES:
        raise TheoryError(f"scale {name!r} is not known: allowed are {', '.join(SCALE_NAMES)} "
                          f"(aliases: {', '.join(sorted(SCALE_ALIASES))})")
    return norm


def scale_mask(scale: str) -> tuple[int, ...]:
    """12 flags, 1 where the pitch class (relative to the tonic) belongs to the scale."""
    steps = set(SCALES[parse_scale(scale)])
    return tuple(1 if i in steps else 0 for i in range(12))


def is_minor_scale(scale: str) -> bool:
    """True when the scale has a minor third above the tonic."""
    return 3 in SCALES[parse_scale(scale)] and 4 not in SCALES[parse_scale(scale)]


# ------------------------------------------------------------------------- chords

#: Chord qualities: suffix -> intervals above the root. Longest suffixes match first.
CHORD_QUALITIES: dict[str, tuple[int, ...]] = {
    "": (0, 4, 7), "maj": (0, 4, 7), "M": (0, 4, 7),
    "m": (0, 3, 7), "min": (0, 3, 7), "-": (0, 3, 7),
    "dim": (0, 3, 6), "°": (0, 3, 6), "o": (0, 3, 6),
    "aug": (0, 4, 8), "+": (0, 4, 8),
    "5": (0, 7),
    "sus2": (0, 2, 7), "sus4": (0, 5, 7), "sus": (0, 5, 7),
    "6": (0, 4, 7, 9), "m6": (0, 3, 7, 9),
    "7": (0, 4, 7, 10), "dom7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11), "M7": (0, 4, 7, 11), "Δ": (0, 4, 7, 11), "Δ7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10), "min7": (0, 3, 7, 10), "-7": (0, 3, 7, 10),
    "mmaj7": (0, 3, 7, 11), "mM7": (0, 3, 7, 11),
    "m7b5": (0, 3, 6, 10), "ø": (0, 3, 6, 10), "ø7": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9), "°7": (0, 3, 6, 9), "o7": (0, 3, 6, 9),
    "7sus4": (0, 5, 7, 10),
    "9": (0, 4, 7, 10, 2), "maj9": (0, 4, 7, 11, 2), "m9": (0, 3, 7, 10, 2),
    "add9": (0, 4, 7, 2), "madd9": (0, 3, 7, 2),
}
_QUALITY_KEYS = sorted(CHORD_QUALITIES, key=len, reverse=True)


@dataclass(frozen=True)
class Chord:
    """A chord: root pitch class, intervals above the root, and the symbol it came from.

    ``bass`` is the pitch class of a slash chord's bass note (``None`` for root position).
    """

    root: int
    intervals: tuple[int, ...]
    symbol: str
    bass: int | None = None

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        """Absolute pitch classes of the chord tones, root first."""
        pcs = [(self.root + i) % 12 for i in self.intervals]
        if self.bass is not None and self.bass not in pcs:
            pcs.append(self.bass)
        return tuple(pcs)

    def mask(self, tonic: int = 0) -> tuple[int, ...]:
        """12 flags of chord tones relative to ``tonic`` (index 0 = the tonic)."""
        rel = {(pc - tonic) % 12 for pc in self.pitch_classes}
        return tuple(1 if i in rel else 0 for i in range(12))


def chord_symbol(chord: Chord) -> str:
    """A chord's letter symbol (``Am``, ``G7``), also for chords written as roman numerals.

    A chord parsed from a letter symbol keeps it; otherwise the root's name and the
    first suffix of :data:`CHORD_QUALITIES` with the chord's intervals.
    """
    if chord.symbol[:1] in "ABCDEFG":
        return chord.symbol
    suffix = next((s for s, iv in CHORD_QUALITIES.items() if tuple(iv) == tuple(chord.intervals)), "")
    return key_name(chord.root) + suffix


def parse_chord(symbol: str) -> Chord:
    """Parse a chord symbol: ``C``, ``Am``, ``F#m7``, ``Bbmaj7``, ``Bdim``, ``G7sus4``, ``C/E``."""
    text = str(symbol).strip()
    allowed = "a root A-G with optional # or b, then a quality such as m, 7, maj7, m7, dim, aug, sus4, 6, 9, and an optional /bass"
    if not text:
        raise TheoryError(f"chord symbol '' is empty: expected {allowed}")
    try:
        root, used = _note_prefix(text)
    except TheoryError:
        raise TheoryError(f"chord symbol {symbol!r} is not valid: expected {allowed}") from None
    if not text[0].isupper():
        raise TheoryError(f"chord symbol {symbol!r} is not valid: the root must be an upper-case letter A-G "
                          "(lower case is read as a roman numeral only for i..vii)")
    rest, bass = text[used:], None
    if "/" in rest:
        rest, bass_text = rest.split("/", 1)
        try:
            bass, bused = _note_prefix(bass_text)
        except TheoryError:
            raise TheoryError(f"chord symbol {symbol!r} has a bad bass note {bass_text!r}: expected {allowed}") from None
        if bused != len(bass_text):
            raise TheoryError(f"chord symbol {symbol!r} has a bad bass note {bass_text!r}: expected {allowed}")
    if rest not in CHORD_QUALITIES:
        raise TheoryError(f"chord symbol {symbol!r} has an unknown quality {rest!r}: allowed are "
                          f"{', '.join(repr(q) for q in CHORD_QUALITIES if q)} (or none for major)")
    return Chord(root=root, intervals=CHORD_QUALITIES[rest], symbol=text, bass=bass)


_ROMAN_RE = re.compile(r"^(b|#|♭|♯)?(VII|III|VI|IV|II|V|I|vii|iii|vi|iv|ii|v|i)(.*)$")
_ROMAN_DEGREE = {"I": 0, "II": 1, "III": 2, "IV": 3, "V": 4, "VI": 5, "VII": 6}
_ROMAN_SUFFIX = {
    "": None, "7": "7", "maj7": "maj7", "M7": "maj7", "°": "dim", "o": "dim", "dim": "dim",
    "°7": "dim7", "o7": "dim7", "dim7": "dim7", "ø": "m7b5", "ø7": "m7b5", "+": "aug", "aug": "aug",
    "6": "6", "9": "9", "sus4": "sus4", "sus2": "sus2", "add9": "add9",
}


def parse_roman(numeral: str, key: int | str = 0, scale: str = "major") -> Chord:
    """Parse a roman numeral (``I``, ``vi``, ``V7``, ``ii7``, ``bVII``, ``vii°``) in a key.

    Degrees come from the scale when it has seven notes, else from the major scale
    (minor pentatonic and blues use natural minor). Upper case is a major triad, lower
    case minor; suffixes ``7``, ``maj7``, ``°``, ``ø7``, ``+``, ``6``, ``9``, ``sus4``.
    """
    text = str(numeral).strip()
    tonic = parse_key(key) if isinstance(key, str) else int(key) % 12
    m = _ROMAN_RE.match(text)
    if not m:
        raise TheoryError(f"roman numeral {numeral!r} is not valid: expected I-VII or i-vii, optionally "
                          "with b/# before and 7, maj7, °, ø7, +, 6, 9, sus4 after")
    acc, num, suffix = m.groups()
    if suffix[:1] in ("I", "V", "i", "v", "X"):
        raise TheoryError(f"roman numeral {numeral!r} is not valid: degrees run from I to VII (i to vii)")
    if suffix not in _ROMAN_SUFFIX:
        raise TheoryError(f"roman numeral {numeral!r} has an unknown suffix {suffix!r}: allowed are "
                          f"{', '.join(repr(s) for s in _ROMAN_SUFFIX if s)}")
    steps = SCALES[parse_scale(scale)]
    if len(steps) != 7:
        steps = SCALES["natural_minor"] if is_minor_scale(scale) else SCALES["major"]
    degree = _ROMAN_DEGREE[num.upper()]
    shift = {"b": -1, "♭": -1, "#": 1, "♯": 1, None: 0}[acc]
    root = (tonic + steps[degree] + shift) % 12
    lower = num.islower()
    quality = _ROMAN_SUFFIX[suffix]
    if quality is None:
        quality = "m" if lower else ""
    elif quality == "7" and lower:
        quality = "m7"
    elif quality == "6" and lower:
        quality = "m6"
    elif quality == "9" and lower:
        quality = "m9"
    elif quality == "maj7" and lower:
        quality = "mmaj7"
    elif quality == "add9" and lower:
        quality = "madd9"
    return Chord(root=root, intervals=CHORD_QUALITIES[quality], symbol=text)


def parse_progression(text: str | list[str] | tuple[str, ...], key: int | str = 0,
                      scale: str = "major") -> list[Chord]:
    """Parse a progression of chord symbols or roman numerals, one chord per bar.

    Accepts ``"C G Am F"``, ``"Dm7 G7 Cmaj7"``, ``"I V vi IV"``, ``"ii7-V7-Imaj7"`` (spaces,
    commas, ``-`` between roman numerals and ``|`` bar lines all separate chords).
    """
    if isinstance(text, str):
        tokens = [t for t in re.split(r"[\s,|]+", text.strip()) if t]
        # A dash separates roman numerals ("ii-V-I"); in a symbol it means minor ("C-7").
        expanded: list[str] = []
        for tok in tokens:
            parts = tok.split("-")
            if len(parts) > 1 and all(p and _ROMAN_RE.match(p) and p[0] not in "ABCDEFG" for p in parts):
                expanded.extend(parts)
            else:
                expanded.append(tok)
        tokens = expanded
    else:
        tokens = [str(t).strip() for t in text]
        for tok in tokens:
            if not tok:
                raise TheoryError(f"chord progression {list(text)!r} has an empty chord: give chord symbols like "
                                  "'C G Am F' or numerals like 'I V vi IV'")
    if not tokens:
        raise TheoryError("chord progression is empty: give chord symbols like 'C G Am F' or numerals like 'I V vi IV'")
    chords = []
    for tok in tokens:
        if tok[0] in "ABCDEFG" and not tok.startswith(("I", "V")):
            chords.append(parse_chord(tok))
        elif _ROMAN_RE.match(tok):
            chords.append(parse_roman(tok, key, scale))
        else:
            raise TheoryError(f"chord {tok!r} in progression {text!r} is neither a chord symbol (C, Am7, F#dim) "
                              "nor a roman numeral (I, vi, V7, bVII)")
    return chords


#: One diatonic progression per scale (one chord per bar), used when none is given.
DEFAULT_PROGRESSIONS: dict[str, str] = {
    "major": "I V vi IV",
    "natural_minor": "i VI III VII",
    "harmonic_minor": "i iv V i",
    "melodic_minor": "i IV V i",
    "dorian": "i IV i VII",
    "phrygian": "i II vii i",
    "lydian": "I II V I",
    "mixolydian": "I VII IV I",
    "locrian": "i° II iv vii",
    "major_pentatonic": "I V vi IV",
    "minor_pentatonic": "i VI III VII",
    "blues": "I7 IV7 I7 V7",
}


def default_progression(scale: str, key: int | str = 0) -> list[Chord]:
    """The progression used when none is given, in ``key`` (see :data:`DEFAULT_PROGRESSIONS`).

    The policy generates against it and the renderer's pad plays it, for every scale.
    Its chords use only notes of the scale (pentatonic and blues scales borrow the
    chords of their seven-note parents).
    """
    return parse_progression(DEFAULT_PROGRESSIONS[parse_scale(scale)], key, scale)


# -------------------------------------------------------------------------- metre

#: Supported time signatures and their 16th-note steps per bar.
TIME_SIGNATURES: dict[tuple[int, int], int] = {(4, 4): 16, (3, 4): 12, (2, 4): 8, (6, 8): 12}
#: The largest number of 16th-note steps in one bar over all supported metres.
MAX_STEPS_PER_BAR = 16


def parse_time_signature(text: str | tuple[int, ...] | list[int]) -> tuple[int, int]:
    """Parse ``"4/4"``, ``"3/4"``, ``"2/4"``, ``"6/8"`` (or a pair) into ``(numerator, denominator)``."""
    allowed = ", ".join(f"{a}/{b}" for a, b in TIME_SIGNATURES)
    if isinstance(text, (tuple, list)):
        if len(text) != 2 or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in text):
            raise TheoryError(f"time signature {text!r} is not valid: expected a pair of whole numbers, one of {allowed}")
        pair = (int(text[0]), int(text[1]))
    else:
        m = re.match(r"^\s*(\d+)\s*/\s*(\d+)\s*$", str(text))
        if not m:
            raise TheoryError(f"time signature {text!r} is not valid: expected N/D, one of {allowed}")
        pair = (int(m.group(1)), int(m.group(2)))
    if pair not in TIME_SIGNATURES:
        raise TheoryError(f"time signature {text!r} is not supported: allowed are {allowed}")
    return pair


def steps_per_bar(time_signature: tuple[int, int]) -> int:
    """Number of 16th-note steps in one bar of ``time_signature``."""
    return TIME_SIGNATURES[parse_time_signature(time_signature)]


def beat_strength(step_in_bar: int, time_signature: tuple[int, int]) -> int:
    """Metrical weight of a 16th-note position: 3 downbeat, 2 strong beat, 1 beat, 0 off-beat."""
    num, den = parse_time_signature(time_signature)
    steps_in_bar = TIME_SIGNATURES[(num, den)]
    if not 0 <= step_in_bar < steps_in_bar:
        raise TheoryError(f"step {step_in_bar!r} is outside a bar of {num}/{den} (allowed: 0-{steps_in_bar - 1})")
    if step_in_bar == 0:
        return 3
    if den == 8:  # compound metre: beats are dotted quarters (6 steps)
        return 2 if step_in_bar % 6 == 0 else (1 if step_in_bar % 2 == 0 else 0)
    if step_in_bar % 4:
        return 0
    beat = step_in_bar // 4
    if num == 4 and beat == 2:
        return 2
    return 1
