"""The clip files the server writes: the JSON contract, and the engine's MIDI writer through a real request."""

from __future__ import annotations

import json

import pretty_midi
import pytest

from bridge.clipfiles import write_clip_json
from engine import midi_bytes
from engine.music.clip import Clip
from tests.bridge.support import Peer, WalkSource, running_server


@pytest.mark.parametrize("roles", [("lead",), ("lead", "bass")])
def test_clip_json_is_the_contract(tmp_path, roles):
    clip = WalkSource().generate(key="Eb", scale="dorian", bars=2, seed=9, roles=roles, chords="Cm F7")[0]
    path = write_clip_json(clip, tmp_path / "c.json")
    assert json.loads(path.read_text()) == clip.to_dict()
    assert Clip.from_json(path.read_text()).tracks == clip.tracks
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]  # no temporary file left


def test_served_midi_is_the_engines_midi(tmp_path):
    with running_server(tmp_path) as srv:
        end = Peer(srv.address).request("/qriff/generate", 1, "bars", 2, "seed", 5, "roles", "lead+bass",
                                        until="/qriff/clip/end")[-1][1]
    midi_path, json_path = end[3], end[4]
    clip = Clip.from_json(open(json_path).read())
    assert open(midi_path, "rb").read() == midi_bytes(clip)
    pm = pretty_midi.PrettyMIDI(midi_path)
    assert [i.name for i in pm.instruments] == ["lead", "bass"]
    assert [n.pitch for n in sorted(pm.instruments[0].notes, key=lambda n: n.start)] == \
        [n.pitch for n in clip.track("lead").notes]
