"""Pushing clips into Ableton Live, against a peer that behaves like AbletonOSC (tests/bridge/ableton_peer.py).

First the peer itself is held to facts read in AbletonOSC's source (errors, ticks,
ports, slots, indices, note appending, datagram size); then every push case the issue
names: a normal push with exact notes, a push right after an error, a missing track, an
audio track, a full track (with and without adding a scene), and a slot filled between
the check and the create. liblo's ``oscdump`` checks the types on the wire.
"""

from __future__ import annotations

import socket
import time

import pytest
from pythonosc.osc_message import OscMessage

from bridge.ableton import NOTES_PER_LIVE_MESSAGE, LiveClient, add_notes_messages, clip_name
from bridge.datagrams import decode
from bridge.errors import LiveError
from engine.music.clip import Clip, Note
from tests.bridge.ableton_peer import TICK, AbletonOSCPeer, LiveClip, LiveSet, wait_quiet
from tests.bridge.support import OscDump, Peer, WalkSource, free_udp_port, osc, parse_oscdump, running_server


class Listener:
    """A socket on the response port: where AbletonOSC's answers arrive."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def recv(self, timeout: float = 2.0) -> tuple[float, str, list]:
        self.sock.settimeout(timeout)
        data = self.sock.recvfrom(65536)[0]
        msg = OscMessage(data)
        return time.monotonic(), msg.address, list(msg.params)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener():
    sock = Listener()
    yield sock
    sock.close()


@pytest.fixture
def make_peer():
    peers = []

    def make(live_set: LiveSet, response_port: int, **kw) -> AbletonOSCPeer:
        peer = AbletonOSCPeer(live_set, response_port, **kw)
        peers.append(peer)
        return peer

    yield make
    for p in peers:
        p.close()


def sender() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


# ------------------------------------------------------------------ the peer against AbletonOSC's source

def test_peer_errors_are_one_string_to_the_last_senders_host_on_the_response_port(make_peer, listener):
    peer = make_peer(LiveSet(["midi"] * 3), listener.port)
    s = sender()
    s.sendto(osc("/live/clip_slot/get/has_clip", 7, 0), ("127.0.0.1", peer.port))
    _, address, params = listener.recv()
    assert (address, params) == ("/live/error", ["Error handling OSC message: list index out of range"])
    s.settimeout(3 * TICK)
    with pytest.raises(TimeoutError):  # nothing goes back to the sending port
        s.recvfrom(65536)
    s.close()


def test_peer_queued_messages_fail_one_per_tick_after_an_error(make_peer, listener):
    peer = make_peer(LiveSet(["midi", "audio"]), listener.port)
    s = sender()
    batch = [osc("/live/clip_slot/create_clip", 1, 0, 4.0), osc("/live/clip/add/notes", 1, 0, 60, 0.0, 1.0, 90, False),
             osc("/live/clip/set/name", 1, 0, "x"), osc("/live/clip/get/name", 1, 0)]
    for data in batch:
        s.sendto(data, ("127.0.0.1", peer.port))
    got = [listener.recv() for _ in range(4)]
    assert [a for _, a, _ in got] == ["/live/error"] * 4
    texts = [p[0] for _, _, p in got]
    assert all(t.startswith("Error handling OSC message: ") for t in texts)
    assert "MIDI" in texts[0]
    assert texts[1].endswith("'NoneType' object has no attribute 'add_new_notes'")
    assert texts[2].endswith("'NoneType' object has no attribute 'name'") and texts[3] == texts[2]
    ticks = [tick for tick, _ in peer.errors()]
    assert ticks == list(range(ticks[0], ticks[0] + 4))  # one per tick
    # 100 ms apart, on the peer's own clock (the listener's receive times bunch up when
    # the test process is starved of CPU, so they say nothing about the peer)
    starts = [peer.tick_started[tick] for tick in ticks]
    assert all(b - a >= 0.9 * TICK for a, b in zip(starts, starts[1:]))
    s.close()


def test_peer_slots_are_scenes_and_indices_go_through_int(make_peer, listener):
    peer = make_peer(LiveSet(["midi", "audio"], scenes=8), listener.port)
    s = sender()
    s.sendto(osc("/live/clip_slot/get/has_clip", 1.0, 7.0), ("127.0.0.1", peer.port))
    _, address, params = listener.recv()
    assert (address, params) == ("/live/clip_slot/get/has_clip", [1, 7, False])
    assert all(type(v) is int for v in params[:2])
    s.sendto(osc("/live/clip_slot/get/has_clip", 0, 8), ("127.0.0.1", peer.port))
    assert listener.recv()[1:] == ("/live/error", ["Error handling OSC message: list index out of range"])
    s.sendto(osc("/live/song/create_scene", -1), ("127.0.0.1", peer.port))
    s.sendto(osc("/live/song/get/num_scenes"), ("127.0.0.1", peer.port))
    assert listener.recv()[1:] == ("/live/song/get/num_scenes", [9])
    assert all(len(t.clip_slots) == 9 for t in peer.live.tracks)
    s.sendto(osc("/live/track/get/has_midi_input", 1), ("127.0.0.1", peer.port))
    assert listener.recv()[1:] == ("/live/track/get/has_midi_input", [1, False])
    s.close()


def test_peer_add_notes_appends_and_takes_381_notes_in_one_datagram(make_peer, listener):
    peer = make_peer(LiveSet(["midi"]), listener.port)
    s = sender()
    notes = [(p % 128, (p // 127) * 8.0 + 0.25 * (p % 16), 0.25, 1 + p % 127, False) for p in range(381)]
    flat = [v for n in notes for v in n]
    s.sendto(osc("/live/clip_slot/create_clip", 0, 0, 32.0), ("127.0.0.1", peer.port))
    big = osc("/live/clip/add/notes", 0, 0, *flat)
    assert len(big) > 8000
    s.sendto(big, ("127.0.0.1", peer.port))
    s.sendto(osc("/live/clip/add/notes", 0, 0, 60, 31.0, 1.0, 64, False), ("127.0.0.1", peer.port))
    s.sendto(osc("/live/clip/get/notes", 0, 0), ("127.0.0.1", peer.port))
    _, address, params = listener.recv()
    assert address == "/live/clip/get/notes" and params[:2] == [0, 0]
    assert (len(params) - 2) // 5 == 382
    s.close()


def test_peer_unknown_address_is_an_error_that_does_not_end_the_tick(make_peer, listener):
    peer = make_peer(LiveSet(["midi"] * 2), listener.port)
    s = sender()
    s.sendto(osc("/live/nothing", 1), ("127.0.0.1", peer.port))
    s.sendto(osc("/live/song/get/num_tracks"), ("127.0.0.1", peer.port))
    assert listener.recv()[1:] == ("/live/error", ["Unknown OSC address: /live/nothing"])
    assert listener.recv()[1:] == ("/live/song/get/num_tracks", [2])
    assert len({tick for tick, _, _ in peer.received}) == 1
    s.close()


# ------------------------------------------------------------------ pushes through qriff serve

def live_server(tmp_path, peer, **config):
    return running_server(tmp_path, live_port=peer.port, live_reply_port=peer.response_port, **config)


def notes_of(clip: Clip, role: str = "lead") -> list[tuple]:
    return [(n.pitch, pytest.approx(n.start), pytest.approx(n.duration), n.velocity, False)
            for n in clip.track(role).notes]


def test_push_writes_exactly_the_clip_into_the_next_empty_slot(tmp_path, make_peer, require_tool):
    dump = OscDump(require_tool("oscdump"))
    mine = LiveClip(8.0, "mine", notes=[(40, 0.0, 1.0, 100, False)])
    peer = make_peer(LiveSet(["midi"] * 3, scenes=4, clips={(2, 0): mine}), free_udp_port(), mirror=dump.port)
    try:
        with live_server(tmp_path, peer) as srv:
            client = Peer(srv.address)
            replies = client.request("/qriff/generate", 5, "bars", 16, "seed", 2, "variations", 2, "live_track", 2,
                                     "live_slot", 0, until="/qriff/live/pushed", count=2, timeout=20)
        lines = dump.lines(until="/live/clip/get/name", count=2)
    finally:
        dump.close()
    ends = [p for a, p in replies if a == "/qriff/clip/end"]
    pushed = [p for a, p in replies if a == "/qriff/live/pushed"]
    assert [p[2:4] for p in pushed] == [[2, 1], [2, 2]]  # the user's clip in slot 0 is skipped
    for v, (end, push) in enumerate(zip(ends, pushed)):
        clip = Clip.from_json(open(end[4]).read())
        got = peer.live.clip(2, 1 + v)
        assert got.notes == notes_of(clip)  # exact, in order, appended once
        assert got.name == clip_name(clip, v, 2) == push[4] and push[5] == len(clip.tracks[0].notes)
        assert got.length == pytest.approx(clip.length_beats) and got.looping and got.loop_end == got.length
    assert peer.live.clip(2, 0) is mine and mine.notes == [(40, 0.0, 1.0, 100, False)] and mine.name == "mine"
    assert peer.live.scenes == 4 and peer.errors() == []
    first = [a for _, a, _ in peer.received][:15]
    assert first == ["/live/song/get/num_tracks", "/live/song/get/num_scenes", "/live/track/get/has_midi_input",
                     "/live/test"] + ["/live/clip_slot/get/has_clip"] * 4 + ["/live/test",
                     "/live/clip_slot/create_clip", "/live/clip/get/length", "/live/test", "/live/clip/add/notes",
                     "/live/clip/set/name", "/live/clip/get/name"]
    # the types on the wire, as liblo reads them
    wire = {a: t for a, t, _ in (parse_oscdump(x) for x in lines)}
    assert wire["/live/clip_slot/create_clip"] == "iif" and wire["/live/clip/set/name"] == "iis"
    assert wire["/live/clip/add/notes"].startswith("iiiffiF") and wire["/live/test"] == ""


def test_push_right_after_errors_never_sees_a_stale_one(tmp_path, make_peer):
    peer = make_peer(LiveSet(["midi", "audio"], scenes=4), free_udp_port())
    with live_server(tmp_path, peer) as srv:
        client = Peer(srv.address)
        end = client.request("/qriff/generate", 1, "roles", "lead+bass", "bars", 2, "seed", 4,
                             until="/qriff/clip/end")[-1][1]
        name = end[4].rsplit("/", 1)[1]
        # lead goes to track 0; bass would land on the audio track 1
        replies = client.request("/qriff/live/push", 2, "clip", name, "track", 0, until="/qriff/error")
        assert [a for a, _ in replies] == ["/qriff/live/pushed", "/qriff/error"]
        assert replies[1][1][1] == "live" and "track 1 is not a MIDI track" in replies[1][1][2]
        # another AbletonOSC client on this machine fails: its errors trickle in, one per tick, on our port
        other = sender()
        for data in (osc("/live/clip_slot/create_clip", 1, 0, 4.0), osc("/live/clip/add/notes", 1, 0, 60, 0.0, 1.0, 9,
                                                                         False),
                     osc("/live/clip/set/name", 1, 0, "x"), osc("/live/clip/get/name", 1, 0)):
            other.sendto(data, ("127.0.0.1", peer.port))
        other.close()
        # ... and qriff pushes straight away
        lead = Clip.from_json((srv.out_dir / name).read_text())
        one = Clip(key=lead.key, scale=lead.scale, tempo=lead.tempo, bars=lead.bars, tracks=[lead.track("lead")])
        one.write_json(srv.out_dir / "lead-only.json")
        replies = client.request("/qriff/live/push", 3, "clip", "lead-only.json", "track", 0, "slot", 0,
                                 until="/qriff/live/pushed")
    assert [a for a, _ in replies] == ["/qriff/live/pushed"], replies
    assert replies[0][1][2:4] == [0, 1]
    assert peer.live.clip(0, 1).notes == notes_of(lead)
    assert len(peer.errors()) == 4  # the other client's errors did happen
    assert all(peer.live.clip(1, s) is None for s in range(4))


@pytest.mark.parametrize("tracks,track,fragment", [
    (["midi"] * 3, 7, "there is no track 7: the set has 3 tracks"),
    (["midi", "audio"], 1, "track 1 is not a MIDI track"),
])
def test_missing_or_audio_track_is_a_clear_error_and_nothing_is_created(tmp_path, make_peer, tracks, track,
                                                                        fragment):
    peer = make_peer(LiveSet(tracks, scenes=4), free_udp_port())
    with live_server(tmp_path, peer) as srv:
        client = Peer(srv.address)
        replies = client.request("/qriff/generate", 9, "bars", 1, "live_track", track, "live_slot", 2,
                                 until="/qriff/live/pushed")
    addr, params = replies[-1]
    assert addr == "/qriff/error" and params[:2] == [9, "live"]
    assert f"track {track} slot 2" in params[2] and fragment in params[2] and "nothing was created" in params[2]
    assert not [a for _, a, _ in peer.received if a.startswith(("/live/clip_slot/create", "/live/clip/"))]
    assert all(s.clip is None for t in peer.live.tracks for s in t.clip_slots)


def test_full_track_gets_a_new_scene(tmp_path, make_peer):
    clips = {(0, 0): LiveClip(4.0, "a"), (0, 1): LiveClip(4.0, "b")}
    peer = make_peer(LiveSet(["midi", "midi"], scenes=2, clips=clips), free_udp_port())
    with live_server(tmp_path, peer) as srv:
        replies = Peer(srv.address).request("/qriff/generate", 4, "bars", 1, "live_track", 0,
                                            until="/qriff/live/pushed")
    assert replies[-1][0] == "/qriff/live/pushed" and replies[-1][1][2:4] == [0, 2]
    assert peer.live.scenes == 3 and all(len(t.clip_slots) == 3 for t in peer.live.tracks)
    assert [peer.live.clip(0, s).name for s in (0, 1)] == ["a", "b"] and peer.live.clip(0, 2).notes


def test_full_track_without_scene_creation_is_a_clear_error(tmp_path, make_peer):
    clips = {(0, 0): LiveClip(4.0, "a"), (0, 1): LiveClip(4.0, "b")}
    peer = make_peer(LiveSet(["midi"], scenes=2, clips=clips), free_udp_port())
    with live_server(tmp_path, peer, live_create_scenes=False) as srv:
        client = Peer(srv.address)
        full = client.request("/qriff/generate", 4, "bars", 1, "live_track", 0, until="/qriff/live/pushed")
        past = client.request("/qriff/generate", 5, "bars", 1, "live_track", 0, "live_slot", 5,
                              until="/qriff/live/pushed")
    assert full[-1][0] == "/qriff/error" and "track 0 slot 0: no empty clip slot: slots 0-1 all hold clips" in \
        full[-1][1][2]
    assert past[-1][0] == "/qriff/error" and "slot 5 is past the last scene (the set has 2 scenes)" in past[-1][1][2]
    assert peer.live.scenes == 2 and [peer.live.clip(0, s).name for s in (0, 1)] == ["a", "b"]


def test_slot_filled_between_check_and_create_is_never_written(tmp_path, make_peer):
    peer = make_peer(LiveSet(["midi"], scenes=2), free_udp_port())
    users = LiveClip(4.0, "recorded", notes=[(64, 0.0, 0.5, 80, False)])

    def record(live: LiveSet) -> None:  # the user records into slot 0 just before qriff's create arrives
        live.tracks[0].clip_slots[0].clip = users

    peer.before["/live/clip_slot/create_clip"] = record
    with live_server(tmp_path, peer) as srv:
        client = Peer(srv.address)
        replies = client.request("/qriff/generate", 6, "bars", 2, "live_track", 0, until="/qriff/live/pushed")
        wait_quiet(peer)
        again = client.request("/qriff/generate", 7, "bars", 2, "seed", 1, "live_track", 0,
                               until="/qriff/live/pushed")
    addr, params = replies[-1]
    assert addr == "/qriff/error" and params[1] == "live"
    assert "track 0 slot 0: Live refused to create the clip" in params[2] and "nothing was written" in params[2]
    assert peer.live.clip(0, 0) is users and users.notes == [(64, 0.0, 0.5, 80, False)] and users.name == "recorded"
    assert again[-1][0] == "/qriff/live/pushed" and again[-1][1][2:4] == [0, 1]  # and the next push is fine


def test_silent_live_times_out_with_a_hint(tmp_path):
    nobody = free_udp_port()
    with running_server(tmp_path, live_port=nobody, live_reply_port=free_udp_port(), live_timeout=0.3) as srv:
        replies = Peer(srv.address).request("/qriff/generate", 3, "bars", 1, "live_track", 0,
                                            until="/qriff/live/pushed")
    addr, params = replies[-1]
    assert addr == "/qriff/error" and params[1] == "live"
    assert "did not answer" in params[2] and "Control Surface" in params[2]


def test_busy_reply_port_is_a_clear_error():
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    try:
        client = LiveClient(port=free_udp_port(), listen_port=holder.getsockname()[1], timeout=0.2)
        clip = WalkSource().generate(bars=1)[0]
        with pytest.raises(LiveError, match="AbletonOSC always answers on that port"):
            client.push(clip, 0, 0, "x")
    finally:
        holder.close()


@pytest.mark.parametrize("n", [0, 1, NOTES_PER_LIVE_MESSAGE, NOTES_PER_LIVE_MESSAGE + 1, 600])
def test_add_notes_messages(n):
    notes = [Note(60 + i % 12, 0.25 * i, 0.25, 90) for i in range(n)]
    msgs = add_notes_messages(1, 2, notes)
    assert len(msgs) == -(-n // NOTES_PER_LIVE_MESSAGE)
    back = [decode(m)[0] for m in msgs]
    assert all(m.args[:2] == (1, 2) and m.tags == "ii" + "iffiF" * ((len(m.args) - 2) // 5) for m in back)
    assert [tuple(m.args[2 + 5 * i:7 + 5 * i]) for m in back for i in range((len(m.args) - 2) // 5)] == \
        [(x.pitch, x.start, x.duration, x.velocity, False) for x in notes]
    assert all(len(m) < 65536 for m in msgs)


def test_trailing_errors_of_a_failed_push_stay_with_it(tmp_path, make_peer):
    """The clip vanishes while the notes go in: add/notes, set/name and get/name each fail on their own
    tick. All three errors belong to that push; the push sent straight after sees none of them."""
    peer = make_peer(LiveSet(["midi"], scenes=4), free_udp_port())

    def delete(live: LiveSet) -> None:  # the user deletes the new clip just before the notes arrive
        live.tracks[0].clip_slots[0].clip = None

    peer.before["/live/clip/add/notes"] = delete
    with live_server(tmp_path, peer) as srv:
        client = Peer(srv.address)
        failed = client.request("/qriff/generate", 1, "bars", 2, "seed", 1, "live_track", 0,
                                until="/qriff/live/pushed")
        ok = client.request("/qriff/generate", 2, "bars", 2, "seed", 2, "live_track", 0, until="/qriff/live/pushed")
    addr, params = failed[-1]
    assert addr == "/qriff/error" and "track 0 slot 0: Live reported an error while qriff wrote" in params[2]
    assert params[2].count("'NoneType' object has no attribute") == 3
    ticks = [tick for tick, _ in peer.errors()]
    assert len(ticks) == 3 and len(set(ticks)) == 3  # one per tick, as AbletonOSC sends them
    assert ok[0][0] == "/qriff/clip/begin" and ok[-1][0] == "/qriff/live/pushed"
    assert not [a for a, _ in ok if a == "/qriff/error"] and ok[-1][1][2:4] == [0, 0]
    end = next(p for a, p in ok if a == "/qriff/clip/end")
    assert peer.live.clip(0, 0).notes == notes_of(Clip.from_json(open(end[4]).read()))
