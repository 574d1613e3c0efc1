"""The clip: what qriff generates, writes as JSON (and, through :mod:`engine.music.midi`,
as MIDI), renders and sends over OSC.

Times are in beats (quarter notes) from the clip start; pitches are MIDI numbers. The
JSON layout (``"qriff_clip": 1``) is described in ``docs/clip-json.md``. Conversions between
notes and the 16th-note token grid live here too, so the evaluation suite and the
policy agree on them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.base.errors import ClipError
from engine.base.files import atomic_write
from engine.music import limits, theory, tokens

CLIP_FORMAT = 1


@dataclass
class Note:
    """One note. ``start`` and ``duration`` in beats, ``pitch`` MIDI 0-127, ``velocity`` 1-127."""

    pitch: int
    start: float
    duration: float
    velocity: int = 96


@dataclass
class Track:
    """A monophonic or polyphonic part with a role (``lead``, ``bass``, ``pad``...) and GM program."""

    role: str
    program: int = 0
    notes: list[Note] = field(default_factory=list)

    @property
    def end_beat(self) -> float:
        """Beat at which the last note of the track ends (0 for an empty track)."""
        return max((n.start + n.duration for n in self.notes), default=0.0)


@dataclass
class Clip:
    """A generated (or imported) clip with its musical context.

    ``bars`` counts bars of ``time_signature``; ``chords`` holds one symbol per bar of
    the looping progression; ``style`` maps style term names to weights.
    """

    key: str = limits.DEFAULT_KEY
    scale: str = limits.DEFAULT_SCALE
    tempo: float = limits.DEFAULT_TEMPO
    time_signature: tuple[int, int] = limits.DEFAULT_TIME_SIGNATURE
    bars: int = 2
    steps_per_beat: int = 4
    seed: int | None = None
    model: str = ""
    style: dict[str, float] = field(default_factory=dict)
    chords: list[str] = field(default_factory=list)
    tracks: list[Track] = field(default_factory=list)

    # ------------------------------------------------------------------ geometry
    @property
    def beats_per_bar(self) -> float:
        """Quarter-note beats in one bar (3.0 for 6/8)."""
        num, den = self.time_signature
        return num * 4.0 / den

    @property
    def length_beats(self) -> float:
        """Clip length in beats."""
        return self.bars * self.beats_per_bar

    @property
    def length_seconds(self) -> float:
        """Clip length in seconds at the clip's tempo."""
        return self.length_beats * 60.0 / self.tempo

    def progression(self) -> list[theory.Chord]:
        """The clip's chords, one per bar, looping.

        A clip stored without chords gets its scale's default progression in its key
        (:func:`engine.music.theory.default_progression`): the one the policy generates
        against when no chords are asked for, for every scale.
        """
        if self.chords:
            return theory.parse_progression(list(self.chords), self.key, self.scale)
        return theory.default_progression(self.scale, self.key)

    def track(self, role: str) -> Track:
        """The first track with ``role``; ClipError if there is none."""
        for t in self.tracks:
            if t.role == role:
                return t
        raise ClipError(f"clip has no track with role {role!r}: it has {', '.join(t.role for t in self.tracks) or 'none'}")

    # ---------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """The clip JSON object (``docs/clip-json.md``)."""
        return {
            "qriff_clip": CLIP_FORMAT, "key": self.key, "scale": self.scale, "tempo": float(self.tempo),
            "time_signature": list(self.time_signature), "bars": int(self.bars),
            "steps_per_beat": int(self.steps_per_beat), "seed": self.seed, "model": self.model,
            "style": dict(self.style), "chords": list(self.chords),
            # A literal per note: dataclasses.asdict deep-copies and costs ~10x more, which
            # the OSC bridge pays on every clip it writes.
            "tracks": [{"role": t.role, "program": int(t.program),
                        "notes": [{"pitch": n.pitch, "start": n.start, "duration": n.duration, "velocity": n.velocity}
                                  for n in t.notes]} for t in self.tracks],
        }

    def to_json(self, indent: int | None = 1) -> str:
        """Serialize to the clip JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "clip") -> Clip:
        """Build a clip from its JSON object; ClipError naming the field on bad data."""
        if not isinstance(data, dict) or data.get("qriff_clip") != CLIP_FORMAT:
            raise ClipError(f"{source} is not a qriff clip: expected a JSON object with \"qriff_clip\": {CLIP_FORMAT}")
        try:
            ts = tuple(int(x) for x in data.get("time_signature", (4, 4)))
            theory.parse_time_signature(ts)
            tracks = []
            for t in data.get("tracks", []):
                notes = [Note(pitch=int(n["pitch"]), start=float(n["start"]), duration=float(n["duration"]),
                              velocity=int(n.get("velocity", 96))) for n in t.get("notes", [])]
                for n in notes:
                    if not (0 <= n.pitch <= 127 and n.duration > 0 and n.start >= 0 and 1 <= n.velocity <= 127):
                        raise ClipError(f"{source}: note {asdict(n)} is out of range (pitch 0-127, start >= 0, "
                                        "duration > 0, velocity 1-127)")
                tracks.append(Track(role=str(t["role"]), program=int(t.get("program", 0)), notes=notes))
            clip = cls(key=str(data.get("key", "C")), scale=str(data.get("scale", "major")),
                       tempo=float(data.get("tempo", 120.0)), time_signature=ts,  # type: ignore[arg-type]
                       bars=int(data.get("bars", 1)), steps_per_beat=int(data.get("steps_per_beat", 4)),
                       seed=data.get("seed"), model=str(data.get("model", "")),
                       style={str(k): float(v) for k, v in dict(data.get("style", {})).items()},
                       chords=[str(c) for c in data.get("chords", [])], tracks=tracks)
        except ClipError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ClipError(f"{source} has a malformed field: {exc}") from None
        theory.parse_key(clip.key)
        theory.parse_scale(clip.scale)
        if not (limits.MIN_FILE_TEMPO <= clip.tempo <= limits.MAX_FILE_TEMPO):
            raise ClipError(f"{source}: tempo {clip.tempo} is out of range "
                            f"{limits.MIN_FILE_TEMPO:g}-{limits.MAX_FILE_TEMPO:g} bpm")
        return clip

    @classmethod
    def from_json(cls, text: str, source: str = "clip") -> Clip:
        """Parse clip JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ClipError(f"{source} is not valid JSON: {exc}") from None
        return cls.from_dict(data, source)

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the clip JSON atomically; returns the path."""
        return atomic_write(path, self.to_json() + "\n")


# Krumhansl-Kessler key profiles, for MIDI files without a key signature.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(notes: list[Note]) -> tuple[str, str]:
    """Estimate (key, scale) from duration-weighted pitch classes (Krumhansl-Schmuckler)."""
    hist = np.zeros(12)
    for n in notes:
        hist[n.pitch % 12] += n.duration
    if hist.sum() == 0:
        return "C", "major"
    best = (-2.0, 0, "major")
    for tonic in range(12):
        rolled = np.roll(hist, -tonic)
        for profile, name in ((_KK_MAJOR, "major"), (_KK_MINOR, "natural_minor")):
            r = float(np.corrcoef(rolled, profile)[0, 1])
            if r > best[0]:
                best = (r, tonic, name)
    return theory.PC_NAMES[best[1]], best[2]


# ------------------------------------------------------------ token <-> notes

def tokens_to_notes(seq: np.ndarray | list[int], tonic_pc: int, role: str = "lead", steps_per_beat: int = 4,
                    velocity: int | np.ndarray = 96, offset_beats: float = 0.0) -> list[Note]:
    """Notes of a token sequence. A pitch token starts a note that holds through HOLD tokens.

    A HOLD before any note, or after a rest, is silence. ``velocity`` may be an array
    with one value per step (the velocity of the step a note starts on is used).
    """
    step = 1.0 / steps_per_beat
    notes: list[Note] = []
    cur: list[int] | None = None  # [pitch, start_step, length, velocity]
    vel = np.broadcast_to(np.asarray(velocity), (len(seq),))
    for i, tok in enumerate(seq):
        tok = int(tok)
        if tok == tokens.HOLD and cur is not None:
            cur[2] += 1
            continue
        if cur is not None:
            notes.append(Note(cur[0], offset_beats + cur[1] * step, cur[2] * step, cur[3]))
            cur = None
        if tok >= tokens.FIRST_PITCH:
            cur = [int(tokens.token_to_midi(tok, tonic_pc, role)), i, 1, int(vel[i])]
    if cur is not None:
        notes.append(Note(cur[0], offset_beats + cur[1] * step, cur[2] * step, cur[3]))
    return notes


def notes_to_tokens(notes: list[Note], n_steps: int, tonic_pc: int, role: str = "lead",
                    steps_per_beat: int = 4) -> np.ndarray:
    """Quantize notes to the 16th-note grid as tokens (int64 array of ``n_steps``).

    Polyphony is reduced to the highest note starting on a step (skyline). A note's
    pitch is folded by octaves into the role's 36-token range.
    """
    seq = np.full(n_steps, tokens.REST, dtype=np.int64)
    owner = np.full(n_steps, -1, dtype=np.int64)
    for idx, n in sorted(enumerate(notes), key=lambda x: (x[1].start, -x[1].pitch)):
        s = int(round(n.start * steps_per_beat))
        e = max(s + 1, int(round((n.start + n.duration) * steps_per_beat)))
        if s >= n_steps:
            continue
        if owner[s] != -1 and seq[s] >= tokens.FIRST_PITCH and notes[owner[s]].pitch >= n.pitch \
                and abs(notes[owner[s]].start * steps_per_beat - s) < 0.5:
            continue  # a higher note already starts here
        seq[s] = tokens.midi_to_token(n.pitch, tonic_pc, role)
        owner[s] = idx
        for j in range(s + 1, min(e, n_steps)):
            if owner[j] != -1 and seq[j] >= tokens.FIRST_PITCH:
                break
            seq[j] = tokens.HOLD
            owner[j] = idx
    return seq
