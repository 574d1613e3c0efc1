"""Pushing clips into Ableton Live: the AbletonOSC exchange checked message by message.

A fake AbletonOSC peer answers like the real control surface (getters reply
``track slot value`` to the sender's host on the reply port; failures come back on
``/live/error``) and forwards a copy of every datagram to liblo's ``oscdump``, so the
types on the wire are checked by a non-Python OSC implementation too.
"""

from __future__ import annotations

import socket
import threading

import pytest

from bridge.ableton import NOTES_PER_LIVE_CHUNK, LiveClient, add_notes_messages, clip_name
from bridge.datagrams import MAX_DATAGRAM, decode, encode
from engine.music.clip import Clip
from tests.bridge.support import OscDump, Peer, WalkSource, free_udp_port, parse_oscdump, running_server


class FakeAbletonOSC:
    """Just enough of AbletonOSC's clip and clip-slot API, on a free loopback port."""

    def __init__(self, reply_port: int, dump_port: int | None = None, occupied=(), fail_on: str | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply_port, self.dump_port, self.fail_on = reply_port, dump_port, fail_on
        self.clips: dict[tuple[int, int], dict] = {slot: {"name": "existing", "notes": []} for slot in occupied}
        self.received: list[tuple[str, tuple, str, int]] = []
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _reply(self, host, address, args, tags=None):
        self.sock.sendto(encode(address, args, tags), (host, self.reply_port))

    def _serve(self):
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                data, (host, _) = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            if self.dump_port:
                self.sock.sendto(data, ("127.0.0.1", self.dump_port))
            [msg] = decode(data)
            self.received.append((msg.address, msg.args, msg.tags, len(data)))
            a = msg.args
            if self.fail_on == msg.address:
                self._reply(host, "/live/error", ("log", f"Error handling OSC message: {msg.address} failed"))
                continue
            if msg.address == "/live/clip_slot/get/has_clip":
                self._reply(host, msg.address, (a[0], a[1], (a[0], a[1]) in self.clips))
            elif msg.address == "/live/clip_slot/create_clip":
                if (a[0], a[1]) in self.clips:
                    self._reply(host, "/live/error", ("log", "Clip slot already has a clip",))
                self.clips[(a[0], a[1])] = {"name": "", "notes": [], "length": a[2]}
            elif msg.address.startswith("/live/clip/") and (a[0], a[1]) not in self.clips:
                self._reply(host, "/live/error", ("log", f"Error handling OSC message: {msg.address}: no clip"))
            elif msg.address == "/live/clip/add/notes":
                body = a[2:]
                self.clips[(a[0], a[1])]["notes"] += [tuple(body[i:i + 5]) for i in range(0, len(body), 5)]
            elif msg.address == "/live/clip/set/name":
                self.clips[(a[0], a[1])]["name"] = a[2]
            elif msg.address == "/live/clip/get/name":
                self._reply(host, msg.address, (a[0], a[1], self.clips[(a[0], a[1])]["name"]))

    def close(self):
        self._stop = True
        self.thread.join()
        self.sock.close()


@pytest.fixture
def oscdump(require_tool):
    dump = OscDump(require_tool("oscdump"))
    yield dump
    dump.close()


def test_push_after_generate_matches_abletonosc_protocol(tmp_path, oscdump):
    reply_port = free_udp_port()
    live = FakeAbletonOSC(reply_port, oscdump.port, occupied=[(2, 0)])
    try:
        with running_server(tmp_path, live_port=live.port, live_reply_port=reply_port, live_timeout=2.0) as srv:
            peer = Peer(srv.address)
            replies = peer.request("/qriff/generate", 5, "bars", 16, "seed", 2, "live_track", 2, "live_slot", 0,
                                   until="/qriff/live/pushed", timeout=10)
    finally:
        live.close()
    end = next(p for a, p in replies if a == "/qriff/clip/end")
    clip = Clip.from_json(open(end[4]).read())
    name = clip_name(clip, 0, 1)
    assert replies[-1] == ("/qriff/live/pushed", [5, 0, 2, 1, name, len(clip.tracks[0].notes)])
    # message by message, in order
    addrs = [r[0] for r in live.received]
    n_chunks = -(-len(clip.tracks[0].notes) // NOTES_PER_LIVE_CHUNK)
    assert n_chunks >= 2
    assert addrs == (["/live/clip_slot/get/has_clip"] * 2 + ["/live/clip_slot/create_clip"]
                     + ["/live/clip/add/notes"] * n_chunks + ["/live/clip/set/name", "/live/clip/get/name"])
    assert live.received[0][1] == (2, 0) and live.received[1][1] == (2, 1)
    assert live.received[2][1:3] == ((2, 1, pytest.approx(clip.length_beats)), "iif")
    for _, args, tags, size in live.received[3:3 + n_chunks]:
        assert args[:2] == (2, 1) and size <= MAX_DATAGRAM
        assert tags == "ii" + "iffiF" * ((len(args) - 2) // 5) and (len(args) - 2) // 5 <= NOTES_PER_LIVE_CHUNK
    assert live.received[-2][1:3] == ((2, 1, name), "iis")
    got = live.clips[(2, 1)]
    assert got["name"] == name
    assert [(p, pytest.approx(s), pytest.approx(d), v, m) for p, s, d, v, m in got["notes"]] == \
        [(n.pitch, n.start, n.duration, n.velocity, False) for n in clip.tracks[0].notes]
    # the same exchange as liblo's oscdump saw it on the wire
    wire = [parse_oscdump(x) for x in oscdump.lines(until="/live/clip/get/name")]
    assert [(a, t) for a, t, _ in wire] == [(a, t) for a, _, t, _ in live.received]
    assert wire[2][2][:2] == ["2", "1"] and float(wire[2][2][2]) == clip.length_beats


def test_multi_role_clip_goes_to_consecutive_tracks(tmp_path):
    reply_port = free_udp_port()
    live = FakeAbletonOSC(reply_port)
    try:
        with running_server(tmp_path, live_port=live.port, live_reply_port=reply_port) as srv:
            peer = Peer(srv.address)
            end = peer.request("/qriff/generate", 1, "roles", "lead+bass", "bars", 2, until="/qriff/clip/end")[-1]
            name = end[1][4].rsplit("/", 1)[1]
            replies = peer.request("/qriff/live/push", 2, "clip", name, "track", 4, "slot", 3,
                                   until="/qriff/live/pushed", count=2)
    finally:
        live.close()
    pushed = [p for a, p in replies if a == "/qriff/live/pushed"]
    assert [(p[2], p[3]) for p in pushed] == [(4, 3), (5, 3)]
    assert pushed[1][4].endswith(" bass")
    assert set(live.clips) == {(4, 3), (5, 3)}


@pytest.mark.parametrize("fail_on", ["/live/clip/add/notes", "/live/clip_slot/create_clip"])
def test_live_error_is_reported_to_the_requester(tmp_path, fail_on):
    reply_port = free_udp_port()
    live = FakeAbletonOSC(reply_port, fail_on=fail_on)
    try:
        with running_server(tmp_path, live_port=live.port, live_reply_port=reply_port) as srv:
            peer = Peer(srv.address)
            replies = peer.request("/qriff/generate", 9, "live_track", 0, until="/qriff/live/pushed")
    finally:
        live.close()
    addr, params = replies[-1]
    assert addr == "/qriff/error" and params[:2] == [9, "live"]
    assert fail_on in params[2] and "Live reported an error" in params[2]


def test_silent_live_times_out_with_a_hint(tmp_path):
    nobody = free_udp_port()
    with running_server(tmp_path, live_port=nobody, live_reply_port=free_udp_port(), live_timeout=0.3) as srv:
        peer = Peer(srv.address)
        replies = peer.request("/qriff/generate", 3, "bars", 1, "live_track", 0, until="/qriff/live/pushed")
    addr, params = replies[-1]
    assert addr == "/qriff/error" and params[1] == "live"
    assert "did not answer" in params[2] and "AbletonOSC" in params[2]


def test_busy_reply_port_is_a_clear_error(tmp_path):
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    try:
        client = LiveClient(port=free_udp_port(), listen_port=holder.getsockname()[1], timeout=0.2)
        clip = WalkSource().generate(bars=1)[0]
        with pytest.raises(Exception, match="cannot listen on UDP port"):
            client.push(clip, 0, 0, "x")
    finally:
        holder.close()


@pytest.mark.parametrize("n", [0, 1, 32, 33, 200])
def test_add_notes_chunks(n):
    clip = WalkSource().generate(bars=16)[0]
    notes = (clip.tracks[0].notes * 10)[:n]
    msgs = add_notes_messages(1, 2, notes)
    assert len(msgs) == -(-n // NOTES_PER_LIVE_CHUNK)
    back = [decode(m)[0] for m in msgs]
    assert sum((len(m.args) - 2) // 5 for m in back) == n
    assert all(len(m) <= MAX_DATAGRAM for m in msgs)
