"""A direct Standard MIDI File writer for clips, for the server's hot path.

``Clip.write_midi`` goes through pretty_midi and mido, which costs milliseconds per
clip in pure Python: more than generating the clip. The server writes one .mid per
reply, so it uses this writer instead: the same content (format 1; a conductor track
with time signature, key signature and tempo; one named track per role with its
program and notes), encoded straight to bytes. tests/test_bridge_smf.py reads both
files back with pretty_midi and checks they hold the same music.
"""

from __future__ import annotations

import os
from pathlib import Path

from bridge.clipfiles import atomic_bytes
from engine.music import theory
from engine.music.clip import Clip

#: Ticks per quarter note.
TICKS_PER_BEAT = 480
_DRUM_CHANNEL = 9


def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _chunk(tag: bytes, body: bytes) -> bytes:
    return tag + len(body).to_bytes(4, "big") + body


def _track(events: list[tuple[int, int, bytes]]) -> bytes:
    """Events ``(tick, order, data)`` sorted and delta-encoded, then end of track."""
    events.sort(key=lambda e: (e[0], e[1]))
    body = bytearray()
    last = 0
    for tick, _, data in events:
        body += _vlq(tick - last)
        body += data
        last = tick
    body += b"\x00\xff\x2f\x00"
    return _chunk(b"MTrk", bytes(body))


def _meta(kind: int, data: bytes) -> bytes:
    return bytes((0xFF, kind)) + _vlq(len(data)) + data


def key_signature_bytes(key: str, scale: str) -> bytes:
    """``sf mi`` of the key signature meta event: sharps (+) or flats (-), and minor flag."""
    tonic = theory.parse_key(key)
    minor = theory.is_minor_scale(scale)
    major_pc = (tonic + 3) % 12 if minor else tonic
    sf = (major_pc * 7) % 12
    if sf > 6 or (sf == 6 and "b" in key[1:]):
        sf -= 12
    return bytes((sf & 0xFF, 1 if minor else 0))


def smf_bytes(clip: Clip) -> bytes:
    """The clip as a format-1 Standard MIDI File (bytes)."""
    num, den = clip.time_signature
    tempo_us = max(1, min(0xFFFFFF, round(60_000_000 / float(clip.tempo))))
    conductor = [
        (0, 0, _meta(0x58, bytes((num, den.bit_length() - 1, 24, 8)))),
        (0, 1, _meta(0x59, key_signature_bytes(clip.key, clip.scale))),
        (0, 2, _meta(0x51, tempo_us.to_bytes(3, "big"))),
    ]
    tracks = [_track(conductor)]
    channel = 0
    for part in clip.tracks:
        if part.role == "drums":
            ch = _DRUM_CHANNEL
        else:
            if channel == _DRUM_CHANNEL:
                channel += 1
            ch = channel % 16
            channel += 1
        events: list[tuple[int, int, bytes]] = [
            (0, 0, _meta(0x03, part.role.encode("utf-8"))),
            (0, 1, bytes((0xC0 | ch, int(part.program) % 128))),
        ]
        for n in part.notes:
            on = round(n.start * TICKS_PER_BEAT)
            off = max(on + 1, round((n.start + n.duration) * TICKS_PER_BEAT))
            pitch, vel = int(n.pitch) & 0x7F, max(1, min(127, int(n.velocity)))
            events.append((off, 2, bytes((0x80 | ch, pitch, 0))))  # offs first at a tick: repeated notes survive
            events.append((on, 3, bytes((0x90 | ch, pitch, vel))))
        tracks.append(_track(events))
    header = _chunk(b"MThd", (1).to_bytes(2, "big") + len(tracks).to_bytes(2, "big")
                    + TICKS_PER_BEAT.to_bytes(2, "big"))
    return header + b"".join(tracks)


def write_smf(clip: Clip, path: str | os.PathLike[str]) -> Path:
    """Write the clip as a Standard MIDI File, atomically (the folder must exist); returns the path."""
    return atomic_bytes(path, smf_bytes(clip))
