"""The melody corpus: monophonic tunes from music21's installed corpus, as qriff tokens.

Sources (see :data:`SOURCES`): the Essen folk song collection, O'Neill's 1850 tunes,
Ryan's Mammoth collection, Aird's airs (ABC files) and the soprano lines of the Bach
chorales (MusicXML). Every tune becomes a :class:`CorpusMelody`:

* **key**: the tonic the file declares (ABC ``K:`` field, MusicXML key signature plus
  the bass's final note for the chorales). music21's ``analyze('key')`` costs about
  80 ms a tune, so it runs only where the file declares nothing usable. Essen's ``K:``
  gives the tonic (accidentals are written out), so its mode is read from the third
  above the tonic; ABC modes that are declared (``K:Ador``, ``K:E Minor``) are kept.
* **metre**: 4/4, 3/4, 2/4 and 6/8 as they are; 2/2 is read as 4/4 (same 16 steps a
  bar), and 4/2, 3/2 and 6/4 are renotated at half the note values as 4/4, 3/4 and 6/8.
  Other metres, metre changes and free metre are skipped.
* **tokens**: 16th-note steps (:mod:`engine.music.tokens`), relative to the tonic and moved
  to C by whole octaves so that as many notes as possible fall in RL Tuner's range
  (MIDI 48-83 after transposition, token 14 = C4). A pickup (anacrusis) is dropped so
  that step 0 is the first downbeat, as in a generated clip.
* **chords**: one per bar, the diatonic triad that best fits the bar's melody
  (:func:`estimate_chords`), written relative to C.
* **split**: train / valid / test (80/10/10) from a hash of source, file and tune
  number, so it never changes between runs or machines.

Skipped tunes are kept in the :class:`CorpusReport` with their reason; exact duplicates
(reprints, a chorale melody harmonised twice) keep only their first copy, so no copy of
a held-out tune is trained on. Extraction runs
once per source (in 2 processes for the big sources) and is cached as ``.npz`` in
``platformdirs.user_cache_dir("qriff")`` (``QRIFF_CACHE_DIR`` overrides it); later
loads read the cache in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.base.errors import CorpusError
from engine.base.extras import require
from engine.base.files import atomic_write
from engine.music import theory, tokens
from engine.music.clip import Note, notes_to_tokens

log = logging.getLogger(__name__)

#: Bump when extraction changes: old cache files are then ignored.
CORPUS_VERSION = 2
#: Source name -> folder inside music21's corpus.
SOURCES: dict[str, str] = {
    "essen": "essenFolksong",
    "oneill": "oneills1850",
    "ryans": "ryansMammoth",
    "aird": "airdsAirs",
    "bach": "bach",
}
SPLITS = ("train", "valid", "test")
#: Shares of the train and valid splits; the rest is test.
SPLIT_SHARES = (0.8, 0.1)

#: Skip reasons (stable keys used in the report).
SKIP_REASONS = {
    "parse_error": "music21 could not parse it",
    "polyphonic": "more than one voice or many chords",
    "unsupported_metre": "metre not 4/4, 3/4, 2/4 or 6/8 (or renotatable as one)",
    "metre_change": "time signature changes or irregular bars (e.g. split endings) inside the tune",
    "no_key": "no key declared and none could be estimated",
    "off_grid": "rhythm off the 16th-note grid (triplets, grace runs)",
    "too_short": "under 2 bars or under 6 notes",
    "duplicate": "the same melody as an earlier tune of the source",
}
#: Metres as music21 prints them -> (supported metre, factor applied to note values).
_METRES: dict[str, tuple[tuple[int, int], float]] = {
    "4/4": ((4, 4), 1.0), "2/2": ((4, 4), 1.0), "3/4": ((3, 4), 1.0), "2/4": ((2, 4), 1.0),
    "6/8": ((6, 8), 1.0), "4/2": ((4, 4), 0.5), "3/2": ((3, 4), 0.5), "6/4": ((6, 8), 0.5),
}
_MODES = {"major": "major", "ionian": "major", "minor": "natural_minor", "aeolian": "natural_minor",
          "dorian": "dorian", "mixolydian": "mixolydian", "phrygian": "phrygian", "lydian": "lydian",
          "locrian": "locrian"}
_MIN_BARS = 2
_MIN_NOTES = 6
_POOL_MIN_JOBS = 300


@dataclass
class CorpusMelody:
    """One extracted tune, transposed to C.

    Attributes:
        tokens: int64 ``[bars * steps_per_bar]`` lead tokens (0 rest, 1 hold, 2..37 pitch,
            14 = C4 = the tonic).
        time_signature: ``(numerator, denominator)``, one of :data:`engine.music.theory.TIME_SIGNATURES`.
        scale: canonical scale name (``major``, ``natural_minor`` or a declared mode).
        chords: one chord symbol per bar, relative to C (``"C"``, ``"G"``, ``"Am"``, ``"Bdim"``).
        source: key of :data:`SOURCES`.
        name: ``folder/file#tune-number title``.
        split: ``train``, ``valid`` or ``test``.
        key: the tonic as written in the file (``"G"``, ``"Bb"``).
        transpose: semitones added to every pitch to move the tune to C.
    """

    tokens: np.ndarray
    time_signature: tuple[int, int]
    scale: str
    chords: list[str]
    source: str
    name: str
    split: str
    key: str = "C"
    transpose: int = 0

    @property
    def steps_per_bar(self) -> int:
        """16th-note steps in one bar."""
        return theory.steps_per_bar(self.time_signature)

    @property
    def bars(self) -> int:
        """Number of whole bars (the token count is a multiple of the bar length)."""
        return len(self.tokens) // self.steps_per_bar

    def segment(self, start_bar: int, bars: int) -> CorpusMelody:
        """The melody's bars ``start_bar .. start_bar + bars - 1`` (clipped to the tune)."""
        steps_per_bar = self.steps_per_bar
        end = min(self.bars, start_bar + bars)
        return CorpusMelody(tokens=self.tokens[start_bar * steps_per_bar:end * steps_per_bar].copy(), time_signature=self.time_signature,
                            scale=self.scale, chords=self.chords[start_bar:end], source=self.source,
                            name=f"{self.name} [bars {start_bar + 1}-{end}]", split=self.split, key=self.key,
                            transpose=self.transpose)


@dataclass
class SourceReport:
    """What extraction of one source produced.

    ``tunes`` counts tunes seen, ``kept`` those extracted; ``splits`` the kept tunes
    per split; ``skipped`` counts per reason (keys of :data:`SKIP_REASONS`); ``notes``
    counts facts worth knowing (renotated metres, keys analysed, chords reduced to their
    top note); ``seconds`` is the extraction wall time (0 when loaded from the cache).
    """

    source: str
    tunes: int = 0
    kept: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: ``(name, reason, detail)`` of every skipped tune.
    skipped_tunes: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class CorpusReport:
    """Per-source extraction reports plus where the cache lives and how long loading took."""

    sources: dict[str, SourceReport]
    cache_dir: str
    load_seconds: float = 0.0

    @property
    def kept(self) -> int:
        """Tunes kept over all sources."""
        return sum(r.kept for r in self.sources.values())

    def table(self) -> str:
        """Markdown table: tunes, kept, per split and skip reasons per source."""
        reasons = sorted({k for r in self.sources.values() for k in r.skipped})
        head = ["source", "tunes", "kept", *SPLITS, *reasons, "extract s"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        total: Counter[str] = Counter()
        for r in self.sources.values():
            row = [r.tunes, r.kept, *(r.splits.get(s, 0) for s in SPLITS), *(r.skipped.get(k, 0) for k in reasons)]
            total.update(dict(zip(head[1:], row)))
            lines.append("| " + " | ".join([r.source, *map(str, row), f"{r.seconds:.1f}"]) + " |")
        lines.append("| **all** | " + " | ".join(str(total[h]) for h in head[1:-1]) +
                     f" | {sum(r.seconds for r in self.sources.values()):.1f} |")
        return "\n".join(lines)


# ----------------------------------------------------------------- public API

def cache_dir() -> Path:
    """Folder of the corpus cache: ``$QRIFF_CACHE_DIR/corpus`` or the user cache dir."""
    base = os.environ.get("QRIFF_CACHE_DIR")
    if not base:
        import platformdirs

        base = platformdirs.user_cache_dir("qriff")
    return Path(base) / "corpus"


def load_corpus(split: str = "train", sources: Sequence[str] | None = None, limit: int | None = None,
                progress: bool = True) -> list[CorpusMelody]:
    """Melodies of one split (``train``, ``valid``, ``test``, ``heldout`` = valid + test, or ``all``).

    ``sources`` picks sources by name (default: all of :data:`SOURCES`); ``limit`` takes
    only the first ``limit`` tunes of each source (for tests and quick looks). The
    first call per source extracts and caches (with a progress bar on a terminal when
    ``progress``); later calls load the cache.
    """
    melodies, _ = load_corpus_with_report(split, sources, limit, progress)
    return melodies


def load_corpus_with_report(split: str = "all", sources: Sequence[str] | None = None, limit: int | None = None,
                            progress: bool = True) -> tuple[list[CorpusMelody], CorpusReport]:
    """Like :func:`load_corpus`, also returning the :class:`CorpusReport`."""
    if split not in (*SPLITS, "heldout", "all"):
        raise CorpusError(f"split {split!r} is not known: allowed are {', '.join(SPLITS)}, heldout (valid + test), all")
    names = check_sources(sources)
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise CorpusError(f"limit {limit!r} is not valid: give a positive number of tunes per source, or None for all")
    t0 = time.perf_counter()
    out: list[CorpusMelody] = []
    reports: dict[str, SourceReport] = {}
    for name in names:
        mels, rep = _load_source(name, limit, progress)
        reports[name] = rep
        out.extend(m for m in mels if split == "all" or m.split == split or (split == "heldout" and m.split != "train"))
    return out, CorpusReport(sources=reports, cache_dir=str(cache_dir()), load_seconds=time.perf_counter() - t0)


def split_of(source: str, key: str) -> str:
    """The fixed split of a tune identified by ``source`` and ``key`` (file and tune number)."""
    h = int.from_bytes(hashlib.sha1(f"{source}:{key}".encode()).digest()[:8], "big") / 2.0 ** 64
    if h < SPLIT_SHARES[0]:
        return "train"
    return "valid" if h < SPLIT_SHARES[0] + SPLIT_SHARES[1] else "test"


def diatonic_triads(scale: str) -> list[tuple[int, tuple[int, ...], str]]:
    """The seven triads built on the degrees of a 7-note scale, relative to C = tonic.

    Returns ``(root pitch class, intervals, symbol)`` in degree order (I first). Scales
    with other than seven notes use natural minor or major, like roman numerals do.
    """
    steps = theory.SCALES[theory.parse_scale(scale)]
    if len(steps) != 7:
        steps = theory.SCALES["natural_minor" if theory.is_minor_scale(scale) else "major"]
    out: list[tuple[int, tuple[int, ...], str]] = []
    for d in range(7):
        root = steps[d]
        third = (steps[(d + 2) % 7] - root) % 12
        fifth = (steps[(d + 4) % 7] - root) % 12
        suffix = {(4, 7): "", (3, 7): "m", (3, 6): "dim", (4, 8): "aug"}[(third, fifth)]
        out.append((root, (0, third, fifth), theory.PC_NAMES[root] + suffix))
    return out


# Preference among equally good triads: I, V, IV, vi, ii, iii, vii (by degree index).
_DEGREE_PREFERENCE = (0, 4, 3, 5, 1, 2, 6)


def estimate_chords(seq: np.ndarray, scale: str, time_signature: tuple[int, int]) -> list[str]:
    """One chord symbol per bar: the diatonic triad of ``scale`` that best fits the melody.

    ``seq`` holds tokens relative to C = the tonic (int ``[bars * steps_per_bar]``). Each
    sounding 16th step votes with its metrical weight (downbeat 2, strong beat 1.75,
    beat 1.5, off-beat 1): +1 when its pitch class is a chord tone, +0.5 more for the
    root, -0.5 when it is not. Ties go to I, V, IV, vi, ii, iii, vii in that order; an
    empty bar keeps the previous chord (I at the start).
    """
    steps_per_bar = theory.steps_per_bar(time_signature)
    seq = np.asarray(seq, np.int64)
    triads = diatonic_triads(scale)
    n_bars = len(seq) // steps_per_bar
    # pitch class sounding at every step (-1 = silence): onsets, carried through holds
    is_pitch = seq >= tokens.FIRST_PITCH
    idx = np.where(is_pitch | (seq == tokens.REST), np.arange(len(seq)), -1)
    last = np.maximum.accumulate(idx) if len(seq) else idx
    src = seq[np.maximum(last, 0)]
    sounding = np.where((last >= 0) & (src >= tokens.FIRST_PITCH), (src - tokens.TONIC_TOKEN) % 12, -1)
    weight = np.array([(1.0, 1.5, 1.75, 2.0)[theory.beat_strength(s, time_signature)] for s in range(steps_per_bar)])
    # per bar: metrical weight sounding on each pitch class, [bars, 12]
    pcs = sounding[:n_bars * steps_per_bar].reshape(n_bars, steps_per_bar)
    w = np.zeros((n_bars, 12))
    rows, cols = np.nonzero(pcs >= 0)
    np.add.at(w, (rows, pcs[rows, cols]), weight[cols])
    member = np.zeros((12, 7))
    root = np.zeros((12, 7))
    for j, d in enumerate(_DEGREE_PREFERENCE):
        r, ivs, _ = triads[d]
        member[[(r + i) % 12 for i in ivs], j] = 1.0
        root[r, j] = 1.0
    # member steps +1, others -0.5, root +0.5 more (all multiples of 1/4: exact in floating point)
    scores = w @ (1.5 * member - 0.5) + 0.5 * (w @ root)
    chords: list[str] = []
    for bar in range(n_bars):
        if w[bar].sum() == 0:
            chords.append(chords[-1] if chords else triads[0][2])
        else:
            chords.append(triads[_DEGREE_PREFERENCE[int(np.argmax(scores[bar]))]][2])
    return chords


# ------------------------------------------------------------------ extraction

@dataclass
class _Job:
    source: str
    key: str       # folder/file#X, the identity used for the split
    title: str
    text: str | None  # ABC text of one tune, or None for a MusicXML file
    path: str


def check_sources(sources: Sequence[str] | str | None) -> list[str]:
    """Source names (``None``: all; a string may list several, comma or space separated),
    each once; CorpusError naming an unknown one."""
    if sources is None:
        return list(SOURCES)
    if isinstance(sources, str):
        sources = [s for s in re.split(r"[\s,]+", sources) if s]
    bad = [s for s in sources if s not in SOURCES]
    if bad or not sources:
        raise CorpusError(f"corpus source {', '.join(map(repr, bad)) or 'list (empty)'} is not known: "
                          f"allowed are {', '.join(SOURCES)}")
    return list(dict.fromkeys(sources))


def _corpus_root() -> Path:
    music21 = require("music21", "train", "the melody corpus (music21's installed collections)")
    return Path(str(music21.__file__)).parent / "corpus"


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _jobs(source: str, limit: int | None) -> list[_Job]:
    """Tunes of one source, in a fixed order; ABC files are split into single tunes here."""
    root = _corpus_root()
    folder = root / SOURCES[source]
    if not folder.is_dir():
        raise CorpusError(f"music21 corpus folder {str(folder)!r} for source {source!r} is missing: "
                          "reinstall music21 (pip install --force-reinstall music21)")
    jobs: list[_Job] = []
    if source == "bach":
        for path in sorted(folder.glob("bwv*.mxl")):
            jobs.append(_Job(source, f"{SOURCES[source]}/{path.name}", path.stem, None, str(path)))
            if limit and len(jobs) >= limit:
                break
        return jobs
    for path in sorted(folder.glob("*.abc")):
        text = _read_text(path)
        header, *tunes = re.split(r"(?m)^(?=X:)", text)
        for tune in tunes:
            first = tune.split("\n", 1)[0]
            number = first[2:].strip()
            title_m = re.search(r"(?m)^T:\s*(.*)$", tune)
            title = title_m.group(1).strip() if title_m else ""
            # keep header fields (default L:, M:, K:) that apply to every tune of the file
            jobs.append(_Job(source, f"{SOURCES[source]}/{path.name}#{number}", title, header + tune, str(path)))
            if limit and len(jobs) >= limit:
                return jobs
    return jobs


class _Skip(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _extract(job: _Job) -> tuple[str, Any, list[str]]:
    """Worker: ``("ok", melody dict, notes)`` or ``("skip", (reason, detail), [])``."""
    import warnings

    notes_log: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                score = _parse(job)
            except _Skip:
                raise
            except Exception as exc:  # music21 raises many kinds on malformed input
                raise _Skip("parse_error", f"{type(exc).__name__}: {exc}"[:200]) from None
            mel = _melody_from_score(score, job, notes_log)
    except _Skip as skip:
        return "skip", (skip.reason, skip.detail), []
    return "ok", mel, notes_log


def _parse(job: _Job) -> Any:
    if job.text is None:
        from music21 import converter

        return converter.parse(job.path)
    from music21 import abcFormat, stream
    from music21.abcFormat import translate

    handler = abcFormat.ABCHandler()
    handler.process(job.text)
    # Beaming is notation only and takes ~40% of music21's ABC import: skip it here.
    make_beams = stream.Stream.makeBeams
    stream.Stream.makeBeams = lambda self, *args, **kwargs: None  # type: ignore[method-assign]
    try:
        return translate.abcToStreamScore(handler)
    finally:
        stream.Stream.makeBeams = make_beams  # type: ignore[method-assign]


def _melody_from_score(score: Any, job: _Job, notes_log: list[str]) -> dict[str, Any]:
    from music21 import chord, harmony, key, meter, note, stream

    parts = [p for p in score.parts if any(True for _ in p.recurse().notes)] if score.parts else [score]
    if job.source == "bach":
        if len(parts) < 4:
            raise _Skip("polyphonic", f"{len(parts)} parts: not a four-part chorale")
        named = [p for p in parts if "soprano" in str(p.partName or "").lower()]
        melody_part, bass_part = (named[0] if named else parts[0]), parts[-1]
    else:
        if len(parts) != 1:
            raise _Skip("polyphonic", f"{len(parts)} voices")
        melody_part, bass_part = parts[0], None

    measures = list(melody_part.getElementsByClass(stream.Measure))
    ratio = _main_metre(melody_part, measures, meter)
    if ratio not in _METRES:
        raise _Skip("unsupported_metre", ratio)
    ts, factor = _METRES[ratio]
    if factor != 1.0 or ratio == "2/2":
        notes_log.append(f"renotated {ratio} as {ts[0]}/{ts[1]}")
    bar_beats = ts[0] * 4.0 / ts[1]
    if job.text is not None:
        _carry_accidentals(measures)

    bar_q = bar_beats / factor  # bar length in the file's quarter notes
    placed, padded, dropped = _lay_out_bars(measures, bar_q)
    # a short bar now and then is a split bar or a section's pickup; many mean the metre changes
    if padded + dropped > max(1, 0.1 * len(measures)):
        raise _Skip("metre_change", f"{padded + dropped} of {len(measures)} bars are not {ratio} bars")
    if dropped:
        notes_log.append("section pickups dropped")
    # collect (pitch, start, duration) in quarter notes, ties merged, chords reduced to the top note
    events: list[list[float]] = []
    n_chords = n_events = off_grid = 0
    for m, at in placed:
        for el in m.flatten().notes:
            if isinstance(el, harmony.ChordSymbol):
                continue
            ql = float(el.quarterLength)
            if ql <= 0:
                continue  # grace note
            n_events += 1
            if isinstance(el, chord.Chord):
                if not el.pitches:
                    continue
                n_chords += 1
                midi = max(p.midi for p in el.pitches)
            elif isinstance(el, note.Note):
                midi = el.pitch.midi
            else:
                continue
            off = at + float(el.offset)
            tie = getattr(el, "tie", None)
            if tie is not None and tie.type in ("stop", "continue") and events and events[-1][0] == midi \
                    and abs(events[-1][1] + events[-1][2] - off) < 1e-3:
                events[-1][2] += ql
                continue
            events.append([midi, off, ql])
    if n_events and n_chords / n_events > 0.1:
        raise _Skip("polyphonic", f"{n_chords} of {n_events} events are chords")
    if n_chords:
        notes_log.append("chords reduced to top note")
    if len(events) < _MIN_NOTES:
        raise _Skip("too_short", f"{len(events)} notes")
    for ev in events:
        ev[1] *= factor
        ev[2] *= factor
        if abs(ev[1] * 4 - round(ev[1] * 4)) > 0.05:
            off_grid += 1
    if off_grid / len(events) > 0.2:
        raise _Skip("off_grid", f"{off_grid} of {len(events)} onsets off the 16th grid")

    tonic, mode = _key_of(score, melody_part, bass_part, job, events, notes_log, key)
    scale = _MODES.get(mode, "major")
    if job.source == "essen" or mode not in _MODES:
        scale = _mode_by_third(events, tonic)
    end = max(ev[1] + ev[2] for ev in events)
    bars = int(np.ceil(end / bar_beats - 1e-6))
    if bars < _MIN_BARS:
        raise _Skip("too_short", f"{bars} bar(s)")
    rel = np.array([ev[0] - tonic for ev in events])
    shift = _octave_shift(rel)
    notes = [Note(pitch=int(ev[0] - tonic + shift), start=ev[1], duration=ev[2]) for ev in events]
    steps_per_bar = theory.steps_per_bar(ts)
    seq = notes_to_tokens(notes, bars * steps_per_bar, tonic_pc=0, role="lead")
    chords = estimate_chords(seq, scale, ts)
    return {"tokens": seq.astype(np.int8), "time_signature": ts, "scale": scale, "chords": chords,
            "source": job.source, "name": f"{job.key} {job.title}".strip(), "split": split_of(job.source, job.key),
            "key": theory.PC_NAMES[tonic], "transpose": int(shift - tonic)}


def _main_metre(part: Any, measures: list[Any], meter: Any) -> str:
    """The metre governing most complete bars, as music21 prints it (``"3/4"``).

    music21 gives a bar split by a repeat or section end its own short time signature
    (``1/16`` for a one-note pickup), so counting distinct signatures would call most
    reels "metre changes"; :func:`_check_bar_grid` catches real changes instead.
    """
    full: Counter[str] = Counter()
    current = None
    for m in measures:
        if m.timeSignature is not None:
            current = m.timeSignature
        if current is not None and abs(float(m.duration.quarterLength) - float(current.barDuration.quarterLength)) < 1e-6:
            full[current.ratioString] += 1
    if not measures:
        sigs = list(part.recurse().getElementsByClass(meter.TimeSignature))
        if sigs:
            full[sigs[0].ratioString] = 2
    if not full or full.most_common(1)[0][1] < 2:
        raise _Skip("unsupported_metre", "no time signature (free metre)" if current is None else
                    f"no complete bars of {current.ratioString}")
    return full.most_common(1)[0][0]


def _lay_out_bars(measures: list[Any], bar: float) -> tuple[list[tuple[Any, float]], int, int]:
    """Place music21 measures on a regular bar grid: ``([(measure, start)], padded, dropped)``.

    ABC splits bars at repeats and section ends, and music21 keeps the pieces as short
    measures. Two pieces that add up to a bar are joined; a short measure before a
    full one is a pickup and is dropped (the tune then starts on a downbeat, and a
    section's pickup does not shift every later bar; ``dropped`` counts those after the
    first bar); any other short measure is padded with rest to a full bar (``padded``
    counts those, not the final bar). Positions are in the file's quarter notes from the
    first kept downbeat.
    """
    placed: list[tuple[Any, float]] = []
    padded = dropped = 0
    pos = 0.0
    i, n = 0, len(measures)
    durs = [float(m.duration.quarterLength) for m in measures]
    while i < n:
        d = durs[i]
        if abs(d - bar) < 1e-6 or d > bar:
            placed.append((measures[i], pos))
            pos += max(d, bar) if d <= bar else bar * np.ceil(d / bar - 1e-6)
            if d > bar + 1e-6:
                padded += 1
            i += 1
            continue
        if i + 1 < n and abs(d + durs[i + 1] - bar) < 1e-6:
            placed.append((measures[i], pos))
            placed.append((measures[i + 1], pos + d))
            pos += bar
            i += 2
            continue
        if d < 1e-6:
            i += 1
            continue
        if i + 1 < n and abs(durs[i + 1] - bar) < 1e-6:
            dropped += i > 0  # a pickup: the tune's own is expected, a section's is counted
            i += 1
            continue
        placed.append((measures[i], pos))
        pos += bar
        if i != n - 1:
            padded += 1
        i += 1
    return placed, padded, dropped


def _carry_accidentals(measures: list[Any]) -> None:
    """Apply ABC's rule that music21 leaves out: an accidental holds for the same pitch to the bar's end."""
    from music21 import pitch as m21pitch

    for m in measures:
        carried: dict[tuple[str, int | None], float] = {}
        for n in m.recurse().notes:
            for p in getattr(n, "pitches", ()):
                k = (p.step, p.octave)
                if p.accidental is not None and p.accidental.displayStatus:
                    carried[k] = float(p.accidental.alter)
                elif k in carried:
                    p.accidental = m21pitch.Accidental(carried[k])


def _key_of(score: Any, melody_part: Any, bass_part: Any, job: _Job, events: list[list[float]],
            notes_log: list[str], key_mod: Any) -> tuple[int, str]:
    """(tonic pitch class, music21 mode name) as declared; analysed only when missing."""
    declared = list(melody_part.recurse().getElementsByClass(key_mod.KeySignature))
    if job.source == "bach" and declared:
        ks = declared[0]
        major = ks.asKey("major").tonic.pitchClass
        minor = ks.asKey("minor").tonic.pitchClass
        bass_notes = list(bass_part.flatten().notes) if bass_part is not None else []
        final = bass_notes[-1].pitches[0].pitchClass if bass_notes else int(events[-1][0]) % 12
        if final == major:
            return major, "major"
        if final == minor:
            return minor, "minor"
        declared = []  # modal ending: let the analysis decide
    if declared and isinstance(declared[0], key_mod.Key):
        k = declared[0]
        return k.tonic.pitchClass, str(k.mode)
    if declared:  # a bare key signature: take its major reading, mode from the third
        return declared[0].asKey("major").tonic.pitchClass, "?"
    try:
        k = score.analyze("key")
    except Exception as exc:  # analysis fails on empty or odd streams
        raise _Skip("no_key", f"no key declared and analysis failed: {exc}") from None
    notes_log.append("key analysed")
    return k.tonic.pitchClass, str(k.mode)


def _mode_by_third(events: list[list[float]], tonic: int) -> str:
    """``natural_minor`` when the minor third above the tonic sounds longer than the major third."""
    minor = sum(ev[2] for ev in events if (ev[0] - tonic) % 12 == 3)
    major = sum(ev[2] for ev in events if (ev[0] - tonic) % 12 == 4)
    return "natural_minor" if minor > major else "major"


def _octave_shift(rel: np.ndarray) -> int:
    """Octave move (multiple of 12) putting most notes in MIDI 48-83, median nearest 65."""
    best, best_key = 0, None
    for k in range(-3, 4):
        p = rel + 12 * k
        key = (-int(((p >= 48) & (p <= 83)).sum()), abs(float(np.median(p)) - 65.0))
        if best_key is None or key < best_key:
            best, best_key = 12 * k, key
    return best


def _run_jobs(jobs: list[_Job], progress: bool, desc: str) -> list[tuple[str, Any, list[str]]]:
    from tqdm import tqdm

    show = progress and sys.stderr.isatty()
    bar = tqdm(total=len(jobs), desc=desc, unit="tune", disable=not show, leave=False)
    results: list[tuple[str, Any, list[str]]]
    try:
        if len(jobs) >= _POOL_MIN_JOBS and (os.cpu_count() or 1) > 1:
            import multiprocessing as mp

            results = [None] * len(jobs)  # type: ignore[list-item]
            # fork: workers need no re-import of the caller's __main__ and touch only music21
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            with mp.get_context(method).Pool(processes=min(2, os.cpu_count() or 1)) as pool:
                for i, res in pool.imap_unordered(_extract_indexed, list(enumerate(jobs)), chunksize=16):
                    results[i] = res
                    bar.update()
        else:
            results = []
            for job in jobs:
                results.append(_extract(job))
                bar.update()
    finally:
        bar.close()
    return results


def _extract_indexed(item: tuple[int, _Job]) -> tuple[int, tuple[str, Any, list[str]]]:
    return item[0], _extract(item[1])


def _cache_path(source: str, limit: int | None) -> Path:
    return cache_dir() / f"v{CORPUS_VERSION}-{source}-{limit or 'all'}.npz"


def _drop_duplicates(mels: list[CorpusMelody], rep: SourceReport) -> list[CorpusMelody]:
    """Keep the first of tunes with identical tokens (reprints, chorale melodies harmonised
    twice), so that no copy of a held-out tune sits in the train split; counted as skipped."""
    seen: dict[bytes, str] = {}
    kept = []
    for m in mels:
        key = m.tokens.tobytes() + repr(m.time_signature).encode()
        if key in seen:
            rep.skipped["duplicate"] = rep.skipped.get("duplicate", 0) + 1
            rep.skipped_tunes.append((m.name, "duplicate", f"same tokens as {seen[key]}"))
            continue
        seen[key] = m.name
        kept.append(m)
    if len(kept) != len(mels):
        rep.kept = len(kept)
        rep.splits = {s: sum(m.split == s for m in kept) for s in SPLITS}
    return kept


def _load_source(source: str, limit: int | None, progress: bool) -> tuple[list[CorpusMelody], SourceReport]:
    mels, rep = _load_or_extract(source, limit, progress)
    return _drop_duplicates(mels, rep), rep


def _load_or_extract(source: str, limit: int | None, progress: bool) -> tuple[list[CorpusMelody], SourceReport]:
    path = _cache_path(source, limit)
    if path.is_file():
        try:
            return _read_cache(path)
        except Exception as exc:  # a truncated or foreign file: rebuild it
            log.warning("corpus cache %s is unreadable (%s): extracting again", path, exc)
    t0 = time.perf_counter()
    jobs = _jobs(source, limit)
    results = _run_jobs(jobs, progress, f"corpus {source}")
    rep = SourceReport(source=source, tunes=len(jobs))
    mels: list[CorpusMelody] = []
    skipped: Counter[str] = Counter()
    noted: Counter[str] = Counter()
    for job, (status, payload, notes_log) in zip(jobs, results):
        if status == "skip":
            reason, detail = payload
            skipped[reason] += 1
            rep.skipped_tunes.append((f"{job.key} {job.title}".strip(), reason, detail))
            continue
        noted.update(notes_log)
        payload["tokens"] = payload["tokens"].astype(np.int64)
        mels.append(CorpusMelody(**payload))
    rep.kept = len(mels)
    rep.splits = {s: sum(m.split == s for m in mels) for s in SPLITS}
    rep.skipped = dict(sorted(skipped.items()))
    rep.notes = dict(sorted(noted.items()))
    rep.seconds = round(time.perf_counter() - t0, 2)
    log.info("corpus %s: %d of %d tunes kept in %.1f s", source, rep.kept, rep.tunes, rep.seconds)
    _write_cache(path, mels, rep)
    return mels, rep


def _codes(values: list[Any]) -> tuple[list[Any], np.ndarray]:
    """(vocabulary, int32 codes) of a list of hashable values."""
    vocab = list(dict.fromkeys(values))
    index = {v: i for i, v in enumerate(vocab)}
    return vocab, np.array([index[v] for v in values], np.int32)


def _write_cache(path: Path, mels: Iterable[CorpusMelody], rep: SourceReport) -> None:
    """One ``.npz``: column arrays (tokens, chords per bar as codes, metre, ...) and a small JSON."""
    mels = list(mels)
    lengths = np.array([len(m.tokens) for m in mels], np.int64)
    flat = np.concatenate([m.tokens for m in mels]).astype(np.int8) if mels else np.zeros(0, np.int8)
    chord_vocab, chord_codes = _codes([c for m in mels for c in m.chords])
    columns: dict[str, Any] = {}
    for name in ("scale", "split", "key", "source"):
        vocab, codes = _codes([getattr(m, name) for m in mels])
        columns[name] = vocab
        columns[name + "_codes"] = codes
    blob = json.dumps({"version": CORPUS_VERSION, "names": [m.name for m in mels], "chord_vocab": chord_vocab,
                       "vocab": {k: v for k, v in columns.items() if not k.endswith("_codes")},
                       "report": asdict(rep)}).encode()
    arrays: dict[str, Any] = {"tokens": flat, "lengths": lengths, "n_chords": np.array([len(m.chords) for m in mels], np.int32),
              "chords": chord_codes, "ts": np.array([m.time_signature for m in mels], np.int16).reshape(-1, 2),
              "transpose": np.array([m.transpose for m in mels], np.int16),
              **{k: v for k, v in columns.items() if k.endswith("_codes")}}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.frombuffer(blob, np.uint8), **arrays)

    atomic_write(path, write)


def _read_cache(path: Path) -> tuple[list[CorpusMelody], SourceReport]:
    with np.load(io.BytesIO(path.read_bytes())) as data:
        blob = json.loads(data["meta"].tobytes().decode())
        if blob.get("version") != CORPUS_VERSION:
            raise CorpusError(f"cache version {blob.get('version')} != {CORPUS_VERSION}")
        arrays = {k: data[k] for k in data.files if k != "meta"}
    flat = arrays["tokens"].astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(arrays["lengths"])])
    chord_offsets = np.concatenate([[0], np.cumsum(arrays["n_chords"])])
    chords = np.array(blob["chord_vocab"] or [""], dtype=object)[arrays["chords"]]
    vocab = blob["vocab"]
    cols = {k: [vocab[k][c] for c in arrays[k + "_codes"].tolist()] for k in ("scale", "split", "key", "source")}
    ts = [tuple(t) for t in arrays["ts"].tolist()]
    transpose = arrays["transpose"].tolist()
    mels = [CorpusMelody(tokens=flat[offsets[i]:offsets[i + 1]], time_signature=ts[i], scale=cols["scale"][i],
                         chords=chords[chord_offsets[i]:chord_offsets[i + 1]].tolist(), source=cols["source"][i],
                         name=name, split=cols["split"][i], key=cols["key"][i], transpose=transpose[i])
            for i, name in enumerate(blob["names"])]
    r = blob["report"]
    rep = SourceReport(source=r["source"], tunes=r["tunes"], kept=r["kept"], splits=r["splits"], skipped=r["skipped"],
                       notes=r["notes"], seconds=r["seconds"],
                       skipped_tunes=[tuple(x) for x in r["skipped_tunes"]])
    return mels, rep
