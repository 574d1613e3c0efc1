"""engine.music.midi: the one MIDI writer holds the same music as the pretty_midi writer it replaced."""

from __future__ import annotations

import pretty_midi
import pytest

from engine import Policy
from engine.base.errors import ClipError
from engine.music import theory
from engine.music.clip import Clip, Note, Track
from engine.music.midi import midi_bytes, read_midi, write_midi


def pretty_midi_reference(clip: Clip, path) -> None:
    """The file ``Clip.write_midi`` wrote before (through pretty_midi), as the reference."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=float(clip.tempo))
    seconds_per_beat = 60.0 / clip.tempo
    pm.time_signature_changes.append(pretty_midi.TimeSignature(*clip.time_signature, 0.0))
    tonic = theory.parse_key(clip.key)
    pm.key_signature_changes.append(pretty_midi.KeySignature(tonic + (12 if theory.is_minor_scale(clip.scale) else 0),
                                                             0.0))
    for t in clip.tracks:
        inst = pretty_midi.Instrument(program=int(t.program) % 128, is_drum=t.role == "drums", name=t.role)
        inst.notes = [pretty_midi.Note(velocity=int(n.velocity), pitch=int(n.pitch), start=n.start * seconds_per_beat,
                                       end=(n.start + n.duration) * seconds_per_beat) for n in t.notes]
        pm.instruments.append(inst)
    pm.write(str(path))


def read_back(path):
    pm = pretty_midi.PrettyMIDI(str(path))
    tracks = [(i.name, i.program, i.is_drum, [(n.pitch, n.velocity, round(n.start, 4), round(n.end, 4))
                                             for n in sorted(i.notes, key=lambda n: (n.start, n.pitch))])
              for i in pm.instruments]
    _, tempi = pm.get_tempo_changes()
    return (tracks, [round(float(t), 3) for t in tempi], [(t.numerator, t.denominator) for t in pm.time_signature_changes],
            [k.key_number for k in pm.key_signature_changes])


@pytest.fixture(scope="module")
def policy():
    return Policy.load()


CASES = [(k, s, ts, tempo, roles) for k, s, ts, tempo, roles in [
    ("C", "major", (4, 4), 120.0, ("lead",)),
    ("F#", "dorian", (3, 4), 97.5, ("lead", "bass")),
    ("Bb", "natural_minor", (6, 8), 60.0, ("bass",)),
    ("Gb", "major", (2, 4), 200.0, ("lead",)),
    ("Eb", "harmonic_minor", (4, 4), 33.3, ("lead", "bass")),
    ("B", "blues", (4, 4), 140.0, ("lead",)),
    ("D", "minor_pentatonic", (3, 4), 20.0, ("lead",)),
    ("Ab", "locrian", (4, 4), 300.0, ("lead", "bass")),
]]


@pytest.mark.parametrize("key,scale,ts,tempo,roles", CASES)
def test_same_music_as_the_pretty_midi_writer(tmp_path, policy, key, scale, ts, tempo, roles):
    clip = policy.generate(key=key, scale=scale, bars=3, seed=4, roles=roles, tempo=tempo, time_signature=ts)[0]
    pretty_midi_reference(clip, tmp_path / "ref.mid")
    write_midi(clip, tmp_path / "new.mid")
    ref, new = read_back(tmp_path / "ref.mid"), read_back(tmp_path / "new.mid")
    assert new[1:] == ref[1:], "tempo, metre and key"
    assert [t[:3] for t in new[0]] == [t[:3] for t in ref[0]], "track names, programs, drum flags"
    for (*_, notes_new), (*_, notes_ref) in zip(new[0], ref[0]):
        assert [n[:2] for n in notes_new] == [n[:2] for n in notes_ref], "pitches and velocities"
        # 480 ticks a beat here, 220 in pretty_midi's files: times agree to within a tick.
        for a, b in zip(notes_new, notes_ref):
            assert a[2:] == pytest.approx(b[2:], abs=60.0 / tempo / 220)
    assert read_midi(tmp_path / "new.mid").tracks[0].notes == read_midi(tmp_path / "ref.mid").tracks[0].notes


def test_repeated_notes_and_drums_survive(tmp_path):
    clip = Clip(tracks=[Track("lead", 5, [Note(60, 0.0, 0.5, 90), Note(60, 0.5, 0.5, 91), Note(62, 1.0, 0.25, 1)]),
                        Track("drums", 0, [Note(36, 0.0, 0.25, 100)])])
    tracks, *_ = read_back(write_midi(clip, tmp_path / "x.mid"))
    assert tracks[0][3] == [(60, 90, 0.0, 0.25), (60, 91, 0.25, 0.5), (62, 1, 0.5, 0.625)]
    assert tracks[1][2] is True


def test_header_and_chunks():
    data = midi_bytes(Clip(tracks=[Track("lead", 0, [Note(60, 0.0, 1.0, 96)])]))
    assert data[:4] == b"MThd" and data[8:10] == b"\x00\x01" and data[10:12] == b"\x00\x02"
    assert data[12:14] == (480).to_bytes(2, "big")
    assert data.count(b"MTrk") == 2 and data.endswith(b"\xff\x2f\x00")


def test_read_midi_reads_what_another_writer_wrote(tmp_path):
    """A file written by pretty_midi (another writer): tempo, metre, minor key, named parts, drums left out."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=90.0)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(3, 4, 0.0))
    pm.key_signature_changes.append(pretty_midi.KeySignature(pretty_midi.key_name_to_key_number("A minor"), 0.0))
    beat = 60.0 / 90.0
    lead = pretty_midi.Instrument(program=81, name="lead")
    lead.notes += [pretty_midi.Note(100, 69, 0.0, beat), pretty_midi.Note(80, 72, beat, 2.5 * beat)]
    bass = pretty_midi.Instrument(program=33, name="Bass")
    bass.notes += [pretty_midi.Note(90, 45, 0.0, 3 * beat), pretty_midi.Note(90, 40, 3 * beat, 5 * beat)]
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
    drums.notes += [pretty_midi.Note(110, 36, 0.0, 0.1)]
    pm.instruments += [bass, drums, lead]
    pm.write(str(tmp_path / "other.mid"))
    clip = read_midi(tmp_path / "other.mid")
    assert (clip.key, clip.scale, clip.time_signature, clip.tempo) == ("A", "natural_minor", (3, 4), pytest.approx(90.0, abs=1e-3))  # tempo: whole µs a beat
    assert [t.role for t in clip.tracks] == ["lead", "bass"] and [t.program for t in clip.tracks] == [81, 33]
    lead_notes = [(n.pitch, n.start, n.duration, n.velocity) for n in clip.tracks[0].notes]
    assert lead_notes == [(69, 0.0, pytest.approx(1.0, abs=0.01), 100), (72, pytest.approx(1.0, abs=0.01),
                                                                           pytest.approx(1.5, abs=0.01), 80)]
    assert clip.bars == 2  # 5 beats of 3/4


def test_read_midi_refuses_what_is_not_a_melody(tmp_path):
    (tmp_path / "junk.mid").write_bytes(b"MThd junk")
    with pytest.raises(ClipError, match="is not a readable MIDI file"):
        read_midi(tmp_path / "junk.mid")
    pm = pretty_midi.PrettyMIDI()
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes.append(pretty_midi.Note(100, 36, 0.0, 0.5))
    pm.instruments.append(drums)
    pm.write(str(tmp_path / "drums.mid"))
    with pytest.raises(ClipError, match="holds no pitched notes"):
        read_midi(tmp_path / "drums.mid")
