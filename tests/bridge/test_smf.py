"""The server's direct MIDI writer holds the same music as ``Clip.write_midi`` (pretty_midi)."""

from __future__ import annotations

import pretty_midi
import pytest

from bridge.clipfiles import atomic_bytes, write_clip_json
from bridge.smf import smf_bytes, write_smf
from engine.music.clip import Clip, Note, Track
from tests.bridge.support import WalkSource


def _read(path):
    pm = pretty_midi.PrettyMIDI(str(path))
    insts = [(i.name, i.program, i.is_drum, [(n.pitch, n.velocity, round(n.start, 4), round(n.end, 4))
                                            for n in sorted(i.notes, key=lambda n: (n.start, n.pitch))])
             for i in pm.instruments]
    _, tempi = pm.get_tempo_changes()
    ts = [(t.numerator, t.denominator) for t in pm.time_signature_changes]
    keys = [k.key_number for k in pm.key_signature_changes]
    return insts, [round(float(t), 3) for t in tempi], ts, keys


@pytest.mark.parametrize("key,scale,ts,tempo,roles", [
    ("C", "major", (4, 4), 120.0, ("lead",)),
    ("F#", "dorian", (3, 4), 97.5, ("lead", "bass")),
    ("Bb", "natural_minor", (6, 8), 60.0, ("bass",)),
    ("Gb", "major", (2, 4), 200.0, ("lead",)),
    ("Eb", "harmonic_minor", (4, 4), 33.3, ("lead", "bass")),
    ("B", "blues", (4, 4), 140.0, ("lead",)),
    ("D", "minor_pentatonic", (3, 4), 120.0, ("lead",)),
])
def test_same_music_as_pretty_midi(tmp_path, key, scale, ts, tempo, roles):
    clip = WalkSource().generate(key=key, scale=scale, bars=3, seed=4, roles=roles, tempo=tempo, time_signature=ts)[0]
    clip.write_midi(tmp_path / "ref.mid")
    write_smf(clip, tmp_path / "fast.mid")
    ref, fast = _read(tmp_path / "ref.mid"), _read(tmp_path / "fast.mid")
    assert fast[1:] == ref[1:]
    assert len(fast[0]) == len(ref[0])
    for (n1, p1, d1, notes1), (n2, p2, d2, notes2) in zip(fast[0], ref[0]):
        assert (n1, p1, d1) == (n2, p2, d2)
        assert [n[:2] for n in notes1] == [n[:2] for n in notes2]
        for a, b in zip(notes1, notes2):
            assert a[2:] == pytest.approx(b[2:], abs=2e-3)
    assert Clip.from_midi(tmp_path / "fast.mid").tracks[0].notes[0].pitch == clip.tracks[0].notes[0].pitch


def test_repeated_notes_and_drums_survive(tmp_path):
    clip = Clip(tracks=[Track("lead", 5, [Note(60, 0.0, 0.5, 90), Note(60, 0.5, 0.5, 91), Note(62, 1.0, 0.25, 1)]),
                        Track("drums", 0, [Note(36, 0.0, 0.25, 100)])])
    write_smf(clip, tmp_path / "x.mid")
    insts, *_ = _read(tmp_path / "x.mid")
    assert insts[0][3] == [(60, 90, 0.0, 0.25), (60, 91, 0.25, 0.5), (62, 1, 0.5, 0.625)]
    assert insts[1][2] is True


def test_header_and_bytes():
    data = smf_bytes(Clip(tracks=[Track("lead", 0, [Note(60, 0.0, 1.0, 96)])]))
    assert data[:4] == b"MThd" and data[8:10] == b"\x00\x01" and data[10:12] == b"\x00\x02"
    assert data.count(b"MTrk") == 2 and data.endswith(b"\xff\x2f\x00")


@pytest.mark.parametrize("roles", [("lead",), ("lead", "bass")])
def test_fast_json_is_the_clip_contract(tmp_path, roles):
    import json

    clip = WalkSource().generate(key="Eb", scale="dorian", bars=2, seed=9, roles=roles, chords="Cm F7")[0]
    from dataclasses import asdict

    assert [t["notes"] for t in clip.to_dict()["tracks"]] == [[asdict(n) for n in t.notes] for t in clip.tracks]
    path = write_clip_json(clip, tmp_path / "c.json")
    assert json.loads(path.read_text()) == clip.to_dict()
    assert Clip.from_json(path.read_text()).tracks == clip.tracks


def test_atomic_bytes_leaves_only_the_final_file(tmp_path):
    path = atomic_bytes(tmp_path / "sub" / "a.mid", b"MThd")  # a missing folder is made
    assert path.read_bytes() == b"MThd" and [p.name for p in path.parent.iterdir()] == ["a.mid"]
    atomic_bytes(path, b"new")
    assert path.read_bytes() == b"new" and len(list(path.parent.iterdir())) == 1


def test_atomic_bytes_failure_leaves_nothing(tmp_path, monkeypatch):
    import os

    def broken(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", broken)
    with pytest.raises(OSError, match="No space"):
        atomic_bytes(tmp_path / "b.json", b"{}")
    assert list(tmp_path.iterdir()) == []
